//! madoguchi (窓口): the one ledger behind a municipal vaccination campaign's telephone and
//! paperwork. When a resident calls, the PBX tells madoguchi, and the caller's record pops on the
//! agent's screen while the phone still rings.
//!
//! The map (the contract is in the README):
//!
//! - [`domain`]: plain types and rules, no I/O: phone numbers, tickets, extensions, kana,
//!   postal codes, birth dates, 宛名番号, inquiries, vocabularies, vaccine products and the
//!   dose-interval rules ([`domain::vaccine`]). Values are parsed into these
//!   types once, at the edge; width and kana folding live in [`domain::text`] alone.
//! - [`pbx`]: one adapter per PBX protocol, each producing [`pbx::PbxEvent`]s; the AMI link and
//!   the AMI simulator live in [`pbx::ami`].
//! - [`calls`]: the tracker: PBX events → one call per conversation, caller resolution, the call
//!   log, screen pops.
//! - [`store`]: all SQL, on SQLite or PostgreSQL; write transactions and typed errors;
//!   venues, slots and bookings with the rebooking move ([`store::bookings`]).
//! - [`hub`]: real-time delivery to browsers by topic, with sequence numbers and resume.
//! - [`http`]: axum routes, sessions, the WebSocket, the embedded `web/` assets.
//! - [`export`]: imports (resident master CSV) and exports.
//! - [`demo`]: the synthetic Maizuru and the `madoguchi demo` command.
//! - [`bench`]: `madoguchi bench …`.
//! - [`settings`], [`metrics`], [`app`]: configuration, Prometheus counters, wiring it together.
//!
//! Imports go one way (an arrow reads "is imported by"), checked by a test in `src/layering.rs`:
//!
//! ```text
//! domain ← store ← {calls, export, pbx, settings} ← http ← app ← demo ← bench
//! ```
//!
//! `hub` and `metrics` are leaves (they import only `domain`) usable from `calls` up;
//! `settings` sits above `store` (it masks the database URL with `store::mask_url`).

pub mod app;
pub mod bench;
pub mod calls;
pub mod demo;
pub mod domain;
pub mod export;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod pbx;
pub mod settings;
pub mod store;

#[cfg(test)]
mod layering;
