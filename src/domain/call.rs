//! 通話: the rules of one call that do not depend on which PBX reported it: how the ringing of
//! an agent device ended, and which outcome the call log records.

use super::Outcome;
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
