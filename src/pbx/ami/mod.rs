//! Asterisk Manager Interface (AMI): the link that makes a stock Asterisk feed madoguchi, and a
//! simulator that speaks the same protocol for the demo, the tests and the benchmarks.
//!
//! The rooms, in the order bytes travel:
//!
//! - [`codec`]: bytes ⇄ packets. Incremental and bounded, because AMI is a byte stream from a
//!   peer we do not control: banner, `Key: Value` packets, the legacy `Response: Follows` body,
//!   CRLF or LF, reads split anywhere.
//! - [`translate`]: packets → [`PbxEvent`](crate::pbx::PbxEvent)s. The ten or so events a screen
//!   pop and the call log need (channels, queue join, offers, answer, abandon, hangup), from
//!   Asterisk 11 through 22; everything else is ignored.
//! - [`link`]: the TCP session: login (plain or MD5), keepalive, resync after every login,
//!   reconnect with backoff. Hands events on through a bounded channel and never waits on
//!   anything but that channel.
//! - [`simulator`]: a real TCP server acting as Asterisk 18 with PJSIP and a ring-all queue,
//!   placing scripted calls.
//!
//! The Asterisk side of the contract (manager user, queue, dialplan, endpoints) is in the
//! repository's `dialplans/` folder.

pub mod codec;
pub mod link;
pub mod simulator;
pub mod translate;

pub use codec::{encode_action, CodecError, Decoder, Frame, Packet};
pub use link::{run, AmiConfig, AmiStatus, AmiStatusSnapshot};
pub use simulator::{CallHandle, SimCall, SimOutcome, Simulator};
pub use translate::Translator;
