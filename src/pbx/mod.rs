//! PBX adapters. Each turns its wire input into [`PbxEvent`]s, so nothing downstream knows
//! which PBX spoke. Today: AMI (`ami/`, TCP) and its simulator; ARI, SIP dialog events and the
//! webhook come later and produce the same events.
//!
//! Correlation words, from Asterisk but general: a *call* is keyed by its `call` id (AMI
//! Linkedid: the Uniqueid of the oldest channel), a *channel* (one leg) by its `channel` id
//! (AMI Uniqueid). A channel's call id can change mid-call (bridges merge Linkedids), so every
//! event carries both and the tracker follows the channel.

pub mod ami;
pub mod ari;
pub mod dial;
pub mod sip;
pub mod webhook;

#[cfg(test)]
mod fuzz;

pub use crate::domain::call::{DialStatus, LiveChannel, PbxEvent};

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
