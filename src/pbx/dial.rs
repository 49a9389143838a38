//! Click-to-dial behind one interface. The HTTP side asks a [`Dialer`] to ring the agent's own
//! phone and, once it is answered, call the number ([`DialRequest`]); whichever PBX protocol
//! does it reports the final outcome later as a [`DialOutcome`] on a channel, keyed by the
//! request's `action_id`. Today: AMI (`Originate` with `Async: true`, outcome from the
//! `OriginateResponse` event with the same ActionID, or an immediate `Response: Error`).
//! The same interface pauses and unpauses an agent in the queues (AMI `QueuePause`, its
//! outcome from the action's own `Response`).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::ami::link::AmiStatus;

/// One click-to-dial: ring `extension` (the agent's phone) first, then call `number` from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRequest {
    /// The agent's PBX extension (AMI: `Channel: PJSIP/<extension>`).
    pub extension: String,
    /// What to call: digits and `+` only (checked by [`valid_number`]).
    pub number: String,
    /// The dialplan context the number is dialled in (`from-internal` by default).
    pub context: String,
    /// Caller ID shown on the agent's phone while it rings.
    pub caller_id: String,
    /// Chosen by the caller of [`Dialer::originate`]; the outcome carries it back.
    pub action_id: String,
}

/// Pause or unpause an agent in the PBX's queues (AMI `QueuePause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseRequest {
    /// The agent's extension (whose screen hears the outcome).
    pub extension: String,
    /// The queue member's interface as the PBX knows it (`PJSIP/201`, `Local/201@from-queue/n`).
    pub interface: String,
    pub paused: bool,
    /// Why (a break's reason); empty for none.
    pub reason: String,
    /// One queue only; all the member's queues when `None`.
    pub queue: Option<String>,
    pub action_id: String,
}

/// What a link is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRequest {
    Dial(DialRequest),
    Pause(PauseRequest),
}

/// Which request an outcome answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Dial,
    /// A `QueuePause`, with the state asked for.
    Pause {
        paused: bool,
    },
}

/// How a click-to-dial ended: the agent's phone answered and the number is being called
/// (`ok`), or not, with the PBX's reason (AMI `Reason`/`Message`). Also how a pause ended
/// (`kind`), with the PBX's `Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOutcome {
    pub action_id: String,
    pub extension: String,
    pub ok: bool,
    pub reason: String,
    pub kind: OutcomeKind,
    /// The placed call's call-log key (`<link>:<Uniqueid>` of the originated channel, which is
    /// the oldest channel of the call and so its Linkedid), when the PBX said it.
    pub call_key: Option<String>,
}

/// Why a dial could not even be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("no PBX link that can dial is up")]
    Unavailable,
    #[error("the PBX link has too many dials waiting; try again in a moment")]
    Busy,
}

/// A PBX link that can place calls.
pub trait Dialer: Send + Sync {
    /// The link's name (`ami`, …).
    fn name(&self) -> String;
    /// Whether a dial asked now could go out.
    fn ready(&self) -> bool;
    /// Asks for the dial; returns at once. The outcome comes later as a [`DialOutcome`].
    fn originate(&self, request: DialRequest) -> Result<(), DialError>;
    /// Asks for a queue pause or unpause; returns at once. The outcome comes later as a
    /// [`DialOutcome`] of kind [`OutcomeKind::Pause`]. Links that cannot pause say so.
    fn pause(&self, _request: PauseRequest) -> Result<(), DialError> {
        Err(DialError::Unavailable)
    }
}

/// At most 20 characters, digits and `+` (a leading `+` only), at least one digit.
pub fn valid_number(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty() && number.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Dials waiting for the AMI link to send them.
pub const DIAL_QUEUE: usize = 32;

/// Click-to-dial through the AMI link: requests go into the link task over a channel.
pub struct AmiDialer {
    requests: mpsc::Sender<LinkRequest>,
    status: Arc<AmiStatus>,
}

impl AmiDialer {
    /// The dialer and the receiving end the link task reads (`ami::link::run_with_dials`).
    pub fn new(status: Arc<AmiStatus>) -> (AmiDialer, mpsc::Receiver<LinkRequest>) {
        let (requests, rx) = mpsc::channel(DIAL_QUEUE);
        (AmiDialer { requests, status }, rx)
    }
}

impl Dialer for AmiDialer {
    fn name(&self) -> String {
        "ami".into()
    }
    fn ready(&self) -> bool {
        self.status.logged_in() && !self.requests.is_closed()
    }
    fn originate(&self, request: DialRequest) -> Result<(), DialError> {
        self.ask(LinkRequest::Dial(request))
    }
    fn pause(&self, request: PauseRequest) -> Result<(), DialError> {
        self.ask(LinkRequest::Pause(request))
    }
}

impl AmiDialer {
    fn ask(&self, request: LinkRequest) -> Result<(), DialError> {
        if !self.ready() {
            return Err(DialError::Unavailable);
        }
        self.requests.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => DialError::Busy,
            mpsc::error::TrySendError::Closed(_) => DialError::Unavailable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for ok in ["0773689225", "+81773689225", "1", "12345678901234567890"] {
            assert!(valid_number(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "077-368",
            "123456789012345678901",
            "1+2",
            "０７７",
            "12a",
        ] {
            assert!(!valid_number(bad), "{bad}");
        }
    }

    #[test]
    fn a_link_not_logged_in_cannot_dial() {
        let (dialer, _rx) = AmiDialer::new(AmiStatus::new());
        let req = DialRequest {
            extension: "201".into(),
            number: "0773689225".into(),
            context: "from-internal".into(),
            caller_id: "x".into(),
            action_id: "a".into(),
        };
        assert_eq!(dialer.originate(req), Err(DialError::Unavailable));
    }
}
