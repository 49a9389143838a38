//! PBX adapters. Each turns its wire input into [`PbxEvent`]s, so nothing downstream knows
//! which PBX spoke. Today: AMI (`ami/`, TCP) and its simulator; ARI, SIP dialog events and the
//! webhook come later and produce the same events.
//!
//! Correlation words, from Asterisk but general: a *call* is keyed by its `call` id (AMI
//! Linkedid: the Uniqueid of the oldest channel), a *channel* (one leg) by its `channel` id
//! (AMI Uniqueid). A channel's call id can change mid-call (bridges merge Linkedids), so every
//! event carries both and the tracker follows the channel.

pub mod ami;
pub mod webhook;

use chrono::{DateTime, Utc};

pub use crate::domain::DialStatus;

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
            | PbxEvent::Resync { link, .. } => link,
        }
    }
}

/// What `/readyz` and `/metrics` need to know of one PBX link, whatever its protocol.
pub trait LinkHealth: Send + Sync {
    /// The link's name (`ami`, …).
    fn name(&self) -> String;
    /// Logged in and receiving events.
    fn up(&self) -> bool;
    /// How many times the link had to reconnect.
    fn reconnects(&self) -> u64;
    /// Anything useful for an operator: last error, counts.
    fn detail(&self) -> serde_json::Value;
}
