//! The ARI adapter: an observer on Asterisk's events WebSocket
//! (`/ari/events?app=APP&subscribeAll=true`), for an Asterisk reached over HTTP rather than the
//! manager port. It never takes a channel into Stasis; it only watches, so the dialplan's
//! Queue() keeps working. `translate` turns ARI's JSON into [`PbxEvent`](crate::pbx::PbxEvent)s;
//! `link` keeps the WebSocket up (reconnect with backoff) and resyncs through
//! `GET /ari/channels` after every (re)connect.

pub mod link;
pub mod translate;

pub use link::{run, AriConfig, AriStatus};
pub use translate::{listing, Translator, LINK};
