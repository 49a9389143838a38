//! The SIP dialog-event adapter (RFC 4235), for PBXes without AMI or ARI: madoguchi
//! subscribes over UDP to each agent extension's dialog state at the PBX (`Event: dialog`)
//! and turns the NOTIFYs into [`PbxEvent`](crate::pbx::PbxEvent)s of the link `sip`.
//! `dialog_info` reads the XML bodies, `translate` follows each extension's dialogs, `digest`
//! answers 401/407 challenges, `link` keeps the subscriptions (messages built and parsed with
//! rsip).

pub mod dialog_info;
pub mod digest;
pub mod link;
pub mod translate;

pub use link::{bind, run, SipConfig, SipStatus};
pub use translate::{Translator, LINK};
