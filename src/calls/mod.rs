//! The call tracker: consumes [`PbxEvent`](crate::domain::call::PbxEvent)s, keeps live calls, resolves
//! callers to residents, writes the call log, and sends screen pops and call updates through
//! the [`hub`](crate::hub).
//!
//! One task owns all live-call state ([`tracker::Tracker::run`]), so no lock guards it; the
//! call log is written by a second task ([`writer`]) so the tracker never waits on a write.

pub mod board;
pub mod callbacks;
pub mod reports;
pub mod tracker;
pub mod writer;

pub use board::Board;
pub use tracker::{AgentDirectory, Tracker, TrackerHandle};
