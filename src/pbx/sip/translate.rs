//! From dialog-info documents, per watched extension, to [`PbxEvent`]s.
//!
//! A watched extension's dialogs are followed by their `id`. A dialog seen `early` for the
//! first time (the extension rings; `direction="initiator"` is the agent's own outgoing call
//! and opens nothing) opens a call of the link `sip`: the caller is the `<remote><identity>`,
//! the agent the extension. `confirmed` answers it; `terminated`, or its absence from a
//! `full` document, ends it. Asterisk names no identity and no Call-ID after `early` and gives
//! every dialog of an extension the extension as its id, so a call is matched by extension and
//! dialog id, never by what a later document says of the caller.
//!
//! Each ring is its own call: the id is made here (`<ext>-<run>-<n>`, `run` telling this
//! process from an earlier one), because a dialog id is reused for the next call.

use super::dialog_info::{Dialog, DialogInfo, State};
use crate::domain::call::{DialStatus, PbxEvent};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The link name of SIP dialog-event calls (`sip:<ext>-<run>-<n>` in the call log).
pub const LINK: &str = "sip";

/// Dialogs followed per extension at most (a phone has a handful of lines).
const MAX_DIALOGS_PER_EXTENSION: usize = 32;

/// A dialog that opened a call and has not ended.
#[derive(Debug, Clone)]
struct Live {
    call: String,
    answered: bool,
}

/// What a document did, besides its events, for the link's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    /// Dialogs that change nothing known (an outgoing call, a `confirmed` never seen ringing,
    /// the end of a dialog never seen, a dialog without an id).
    pub unknown: u64,
}

/// The dialogs of every watched extension.
pub struct Translator {
    run: String,
    next: u64,
    live: HashMap<String, HashMap<String, Live>>,
}

impl Translator {
    /// `run` makes this process's call ids differ from an earlier one's.
    pub fn new(run: impl Into<String>) -> Translator {
        Translator {
            run: run.into(),
            next: 0,
            live: HashMap::new(),
        }
    }

    /// Calls open now (all extensions).
    pub fn live_calls(&self) -> usize {
        self.live.values().map(HashMap::len).sum()
    }

    /// The events one document of `ext`'s subscription means.
    pub fn document(
        &mut self,
        ext: &str,
        doc: &DialogInfo,
        at: DateTime<Utc>,
    ) -> (Vec<PbxEvent>, Effects) {
        let mut out = Vec::new();
        let mut fx = Effects::default();
        for d in &doc.dialogs {
            if d.id.is_empty() {
                fx.unknown += 1;
                continue;
            }
            self.dialog(ext, d, at, &mut out, &mut fx);
        }
        if doc.full {
            // A full document lists every dialog: the ones it leaves out have ended.
            let listed: Vec<&str> = doc.dialogs.iter().map(|d| d.id.as_str()).collect();
            let gone: Vec<String> = self
                .live
                .get(ext)
                .map(|m| {
                    m.keys()
                        .filter(|k| !listed.contains(&k.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for id in gone {
                self.end(ext, &id, None, None, at, &mut out);
            }
        }
        (out, fx)
    }

    fn dialog(
        &mut self,
        ext: &str,
        d: &Dialog,
        at: DateTime<Utc>,
        out: &mut Vec<PbxEvent>,
        fx: &mut Effects,
    ) {
        let known = self.live.get(ext).and_then(|m| m.get(&d.id)).cloned();
        match (known, d.state) {
            (None, State::Early) => {
                if d.direction.as_deref() == Some("initiator") {
                    fx.unknown += 1;
                    return;
                }
                let dialogs = self.live.entry(ext.to_string()).or_default();
                if dialogs.len() >= MAX_DIALOGS_PER_EXTENSION {
                    fx.unknown += 1;
                    return;
                }
                self.next += 1;
                let call = format!("{ext}-{}-{}", self.run, self.next);
                dialogs.insert(
                    d.id.clone(),
                    Live {
                        call: call.clone(),
                        answered: false,
                    },
                );
                let caller = d.remote_user().unwrap_or_default();
                let caller = if caller.eq_ignore_ascii_case("anonymous") {
                    String::new()
                } else {
                    caller
                };
                out.push(PbxEvent::Channel {
                    link: LINK.into(),
                    call: call.clone(),
                    channel: call.clone(),
                    name: format!("SIP/{caller}"),
                    caller_number: caller,
                    caller_name: d.remote_display.clone().unwrap_or_default(),
                    dialled: ext.to_string(),
                    at,
                });
                out.push(PbxEvent::Offer {
                    link: LINK.into(),
                    call: call.clone(),
                    device: ext.to_string(),
                    agent_channel: Some(agent_leg(&call, ext)),
                    queue: None,
                    at,
                });
            }
            (Some(live), State::Confirmed) => {
                if !live.answered {
                    if let Some(l) = self.live.get_mut(ext).and_then(|m| m.get_mut(&d.id)) {
                        l.answered = true;
                    }
                    out.push(PbxEvent::Answer {
                        link: LINK.into(),
                        call: live.call,
                        device: ext.to_string(),
                        queue: None,
                        hold_s: None,
                        at,
                    });
                }
            }
            (Some(_), State::Terminated) => {
                self.end(ext, &d.id, d.event.as_deref(), d.code, at, out);
            }
            // Still ringing (a repeated document), or a state before ringing.
            (Some(_), _) => {}
            // The idle document, an outgoing call, a call that rang before we listened.
            (None, State::Terminated) => {}
            (None, _) => fx.unknown += 1,
        }
    }

    /// The dialog `id` of `ext` ended; `event`/`code` say why, when the PBX tells.
    fn end(
        &mut self,
        ext: &str,
        id: &str,
        event: Option<&str>,
        code: Option<u16>,
        at: DateTime<Utc>,
        out: &mut Vec<PbxEvent>,
    ) {
        let Some(live) = self.live.get_mut(ext).and_then(|m| m.remove(id)) else {
            return;
        };
        if self.live.get(ext).is_some_and(HashMap::is_empty) {
            self.live.remove(ext);
        }
        let status = if live.answered {
            None
        } else {
            ring_end(event, code)
        };
        let cause = match status {
            Some(DialStatus::Busy) => Some(17),
            Some(DialStatus::NoAnswer) => Some(19),
            Some(DialStatus::Congestion) => Some(34),
            _ => Some(16),
        };
        if let Some(status) = status {
            out.push(PbxEvent::OfferEnd {
                link: LINK.into(),
                call: live.call.clone(),
                device: ext.to_string(),
                agent_channel: Some(agent_leg(&live.call, ext)),
                status,
                at,
            });
        }
        out.push(PbxEvent::Hangup {
            link: LINK.into(),
            call: live.call.clone(),
            channel: live.call,
            cause,
            at,
        });
    }
}

fn agent_leg(call: &str, ext: &str) -> String {
    format!("{call}/{ext}")
}

/// How a ring that was never answered ended, from RFC 4235's `event` and `code`.
fn ring_end(event: Option<&str>, code: Option<u16>) -> Option<DialStatus> {
    match (event, code) {
        (_, Some(486 | 600)) | (Some("rejected"), None) => Some(DialStatus::Busy),
        (_, Some(408 | 480)) | (Some("timeout"), _) => Some(DialStatus::NoAnswer),
        (_, Some(503)) => Some(DialStatus::Congestion),
        (Some("cancelled"), _) => Some(DialStatus::Cancel),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::dialog_info::parse;
    use super::*;

    fn doc(version: u64, body: &str) -> DialogInfo {
        parse(
            format!(
                r#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="full" entity="sip:2001@pbx">{body}</dialog-info>"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    const EARLY: &str = r#"<dialog id="2001" direction="recipient"><remote><identity display="ACME Corp">sip:+15551234567@pbx</identity></remote><state>early</state></dialog>"#;

    #[test]
    fn early_confirmed_terminated_is_one_answered_call() {
        let mut t = Translator::new("r1");
        let now = Utc::now();
        let (evs, _) = t.document(
            "2001",
            &doc(0, r#"<dialog id="2001"><state>terminated</state></dialog>"#),
            now,
        );
        assert!(evs.is_empty(), "idle opens nothing: {evs:?}");
        let (evs, _) = t.document("2001", &doc(1, EARLY), now);
        assert_eq!(evs.len(), 2, "{evs:?}");
        let PbxEvent::Channel {
            call,
            caller_number,
            caller_name,
            ..
        } = &evs[0]
        else {
            panic!("{evs:?}")
        };
        assert_eq!(call, "2001-r1-1");
        assert_eq!(caller_number, "+15551234567");
        assert_eq!(caller_name, "ACME Corp");
        assert!(matches!(&evs[1], PbxEvent::Offer { device, .. } if device == "2001"));
        // The same document again changes nothing.
        assert!(t.document("2001", &doc(1, EARLY), now).0.is_empty());
        let (evs, _) = t.document(
            "2001",
            &doc(2, r#"<dialog id="2001"><state>confirmed</state></dialog>"#),
            now,
        );
        assert!(matches!(&evs[..], [PbxEvent::Answer { call, .. }] if call == "2001-r1-1"));
        let (evs, _) = t.document(
            "2001",
            &doc(3, r#"<dialog id="2001"><state>terminated</state></dialog>"#),
            now,
        );
        assert!(
            matches!(&evs[..], [PbxEvent::Hangup { call, cause: Some(16), .. }] if call == "2001-r1-1")
        );
        assert_eq!(t.live_calls(), 0);
        // The next ring on the same dialog id is a new call.
        let (evs, _) = t.document("2001", &doc(4, EARLY), now);
        assert!(matches!(&evs[0], PbxEvent::Channel { call, .. } if call == "2001-r1-2"));
    }

    #[test]
    fn rejected_rings_outgoing_calls_and_full_documents() {
        let mut t = Translator::new("r");
        let now = Utc::now();
        t.document("2001", &doc(1, EARLY), now);
        let (evs, _) = t.document(
            "2001",
            &doc(2, r#"<dialog id="2001"><state event="rejected" code="486">terminated</state></dialog>"#),
            now,
        );
        assert!(
            matches!(
                &evs[..],
                [
                    PbxEvent::OfferEnd {
                        status: DialStatus::Busy,
                        ..
                    },
                    PbxEvent::Hangup {
                        cause: Some(17),
                        ..
                    }
                ]
            ),
            "{evs:?}"
        );
        let (evs, fx) = t.document(
            "2001",
            &doc(3, r#"<dialog id="o1" direction="initiator"><state>early</state></dialog><dialog id="o2"><state>confirmed</state></dialog>"#),
            now,
        );
        assert!(evs.is_empty());
        assert_eq!(fx.unknown, 2);
        // A full document without the ringing dialog ends it.
        t.document("2001", &doc(4, EARLY), now);
        let (evs, _) = t.document("2001", &doc(5, ""), now);
        assert!(matches!(&evs[..], [PbxEvent::Hangup { .. }]), "{evs:?}");
        // Withheld numbers open a call with no number.
        let (evs, _) = t.document(
            "2002",
            &doc(1, r#"<dialog id="a"><remote><identity>sip:anonymous@anonymous.invalid</identity></remote><state>early</state></dialog>"#),
            now,
        );
        assert!(
            matches!(&evs[0], PbxEvent::Channel { caller_number, .. } if caller_number.is_empty())
        );
    }
}
