//! 通話: the rules of one call that do not depend on which PBX reported it: the neutral facts
//! every PBX adapter reports ([`PbxEvent`]), how the ringing of an agent device ended, and
//! which outcome the call log records.
//!
//! Correlation words, from Asterisk but general: a *call* is keyed by its `call` id (AMI
//! Linkedid, a webhook's callId), a *channel* (one leg) by its `channel` id (AMI Uniqueid). A
//! channel's call id can change mid-call (bridges merge Linkedids), so every event carries both
//! and the tracker follows the channel.

use super::Outcome;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How an attempt to ring one agent device ended (AMI DialEnd `DialStatus`, SIP final codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DialStatus {
    Answer,
    Busy,
    NoAnswer,
    Cancel,
    Congestion,
    Unavailable,
    Other,
}

impl DialStatus {
    /// Asterisk's `DialStatus` words (`ANSWER`, `BUSY`, `NOANSWER`, `CANCEL`, `CONGESTION`,
    /// `CHANUNAVAIL`); anything else is `Other`.
    pub fn from_ami(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "ANSWER" => Self::Answer,
            "BUSY" => Self::Busy,
            "NOANSWER" => Self::NoAnswer,
            "CANCEL" => Self::Cancel,
            "CONGESTION" => Self::Congestion,
            "CHANUNAVAIL" => Self::Unavailable,
            _ => Self::Other,
        }
    }
}

/// One fact a PBX reported. `link` names the adapter instance (e.g. `ami`), so call ids from two
/// PBXes never collide; `at` is when madoguchi received it.
#[derive(Debug, Clone, PartialEq)]
pub enum PbxEvent {
    /// The link logged in (first time or after a reconnect). Live state follows as a `Resync`.
    LinkUp { link: String },
    /// The link dropped; calls in progress stay until resync tells what survived.
    LinkDown { link: String, reason: String },
    /// A channel (one leg) exists: created, renamed, or its caller ID became known.
    /// `caller_number` is the leg's CallerIDNum as written (may be `<unknown>`), `dialled` its Exten.
    Channel {
        link: String,
        call: String,
        channel: String,
        name: String,
        caller_number: String,
        caller_name: String,
        dialled: String,
        at: DateTime<Utc>,
    },
    /// The caller entered a queue (QueueCallerJoin).
    QueueJoin {
        link: String,
        call: String,
        channel: String,
        queue: String,
        at: DateTime<Utc>,
    },
    /// An agent device starts ringing for this call (AgentCalled, or DialBegin to the device).
    /// `device` is what the PBX calls the device (`SIP/777`, `PJSIP/201-0000000a`, `Local/201@…`);
    /// `agent_channel` is the ringing leg's id, when known.
    Offer {
        link: String,
        call: String,
        device: String,
        agent_channel: Option<String>,
        queue: Option<String>,
        at: DateTime<Utc>,
    },
    /// Ringing that device stopped (DialEnd); `Answer` means it picked up.
    OfferEnd {
        link: String,
        call: String,
        device: String,
        agent_channel: Option<String>,
        status: DialStatus,
        at: DateTime<Utc>,
    },
    /// An agent answered (AgentConnect). `hold_s` is how long the caller waited.
    Answer {
        link: String,
        call: String,
        device: String,
        queue: Option<String>,
        hold_s: Option<i64>,
        at: DateTime<Utc>,
    },
    /// The caller left a queue without an agent (QueueCallerAbandon). `timeout` when the queue
    /// gave up rather than the caller.
    Abandon {
        link: String,
        call: String,
        queue: String,
        hold_s: Option<i64>,
        at: DateTime<Utc>,
    },
    /// A leg hung up (Hangup). `cause` is Q.850 (16 normal, 17 busy, 19 no answer, 21 rejected).
    Hangup {
        link: String,
        call: String,
        channel: String,
        cause: Option<u16>,
        at: DateTime<Utc>,
    },
    /// The caller left a queue (QueueCallerLeave), answered or not. Unanswered and not
    /// abandoned, the queue gave up on them (its timeout).
    QueueLeave {
        link: String,
        call: String,
        channel: String,
        queue: String,
        at: DateTime<Utc>,
    },
    /// What the PBX says of a queue member (QueueMember in a QueueStatus listing,
    /// QueueMemberStatus, QueueMemberPause, QueueMemberAdded/Removed). `device` is the member's
    /// state interface (`PJSIP/201`, `Local/201@from-queue/n`); `status` Asterisk's device
    /// status number (1 not in use, 2 in use, 4 invalid, 5 unavailable, 6 ringing…).
    Member {
        link: String,
        queue: Option<String>,
        device: String,
        status: Option<u8>,
        paused: Option<bool>,
        reason: Option<String>,
        removed: bool,
        at: DateTime<Utc>,
    },
    /// A device changed state (DeviceStateChange): `NOT_INUSE`, `INUSE`, `RINGING`,
    /// `UNAVAILABLE`, `INVALID`….
    DeviceState {
        link: String,
        device: String,
        state: String,
        at: DateTime<Utc>,
    },
    /// Live state after a (re)connect (CoreShowChannels): the channels that exist now. Calls the
    /// tracker holds for this link whose channels are all absent ended while the link was down.
    Resync {
        link: String,
        channels: Vec<LiveChannel>,
        at: DateTime<Utc>,
    },
}

/// One channel in a resync listing (CoreShowChannel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChannel {
    pub call: String,
    pub channel: String,
    pub name: String,
    pub caller_number: String,
    pub caller_name: String,
    pub dialled: String,
    /// Up (answered) rather than ringing or dialling.
    pub up: bool,
}

impl PbxEvent {
    pub fn link(&self) -> &str {
        match self {
            PbxEvent::LinkUp { link }
            | PbxEvent::LinkDown { link, .. }
            | PbxEvent::Channel { link, .. }
            | PbxEvent::QueueJoin { link, .. }
            | PbxEvent::Offer { link, .. }
            | PbxEvent::OfferEnd { link, .. }
            | PbxEvent::Answer { link, .. }
            | PbxEvent::Abandon { link, .. }
            | PbxEvent::Hangup { link, .. }
            | PbxEvent::QueueLeave { link, .. }
            | PbxEvent::Member { link, .. }
            | PbxEvent::DeviceState { link, .. }
            | PbxEvent::Resync { link, .. } => link,
        }
    }
}

/// Q.850 cause 17: user busy.
pub const CAUSE_BUSY: u16 = 17;
/// Q.850 cause 19: no answer from user.
pub const CAUSE_NO_ANSWER: u16 = 19;

/// What the call log records when a call ends, from what was seen of it: an answer wins; a
/// caller who left a queue abandoned it; otherwise the way the agent devices stopped ringing
/// (or the hangup cause) tells busy, no answer or failed; a caller who hung up while ringing or
/// waiting abandoned.
pub fn outcome(
    answered: bool,
    abandoned: bool,
    offer_ends: &[DialStatus],
    cause: Option<u16>,
) -> Outcome {
    let any = |s: DialStatus| offer_ends.contains(&s);
    if answered {
        Outcome::Answered
    } else if abandoned {
        Outcome::Abandoned
    } else if any(DialStatus::Busy) || cause == Some(CAUSE_BUSY) {
        Outcome::Busy
    } else if any(DialStatus::NoAnswer) || cause == Some(CAUSE_NO_ANSWER) {
        Outcome::NoAnswer
    } else if any(DialStatus::Congestion)
        || any(DialStatus::Unavailable)
        || matches!(cause, Some(1 | 27 | 34 | 38))
    {
        // Unallocated number, destination out of order, no circuit, network out of order.
        Outcome::Failed
    } else {
        Outcome::Abandoned
    }
}

/// The outcome of a call that ended while madoguchi could not see it (a restart, an outage, a
/// PBX that never reported the end): an answered call stays answered; of any other nobody can
/// say whether the caller gave up or was answered in the meantime.
pub fn outcome_unseen(answered: bool) -> Outcome {
    if answered {
        Outcome::Answered
    } else {
        Outcome::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_wins_and_abandon_beats_ringing_results() {
        use DialStatus::*;
        assert_eq!(outcome(true, true, &[Busy], Some(17)), Outcome::Answered);
        assert_eq!(outcome(false, true, &[Busy], None), Outcome::Abandoned);
        assert_eq!(
            outcome(false, false, &[NoAnswer, Busy], None),
            Outcome::Busy
        );
        assert_eq!(outcome(false, false, &[], Some(17)), Outcome::Busy);
        assert_eq!(outcome(false, false, &[NoAnswer], None), Outcome::NoAnswer);
        assert_eq!(outcome(false, false, &[], Some(19)), Outcome::NoAnswer);
        assert_eq!(outcome(false, false, &[Unavailable], None), Outcome::Failed);
        assert_eq!(outcome(false, false, &[], Some(34)), Outcome::Failed);
        assert_eq!(
            outcome(false, false, &[Cancel], Some(16)),
            Outcome::Abandoned
        );
    }

    #[test]
    fn unseen_ends_never_turn_an_answer_into_something_else() {
        assert_eq!(outcome_unseen(true), Outcome::Answered);
        assert_eq!(outcome_unseen(false), Outcome::Unknown);
        assert_eq!(
            DialStatus::from_ami(" chanunavail "),
            DialStatus::Unavailable
        );
        assert_eq!(DialStatus::from_ami("what"), DialStatus::Other);
    }
}
