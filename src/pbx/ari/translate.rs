//! ARI events → [`PbxEvent`]s.
//!
//! ARI's channel JSON has no Linkedid, so a call is keyed by its first channel's id (the caller's
//! leg, `ari:<id>`), and a dialled leg joins its call through the `Dial` event that names both.
//! A channel created `Down` is an outgoing leg (Dial, Queue, Originate): it opens no call of its
//! own, so an agent's ringing phone is not logged as a second call. After every (re)connect the
//! live channels are listed over REST (`GET /ari/channels`) for the resync; dialled legs
//! (`AppDial`, `AppQueue`) are left out of it for the same reason.

use crate::domain::call::{DialStatus, LiveChannel, PbxEvent};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};

/// The link name of ARI calls.
pub const LINK: &str = "ari";
/// Outgoing legs remembered until their Dial names them (bounded: a PBX that never dials
/// them must not grow it).
const MAX_PENDING_LEGS: usize = 10_000;

/// ARI events → [`PbxEvent`]s.
#[derive(Default)]
pub struct Translator {
    /// Channels created `Down` and not yet part of a call.
    outgoing: HashSet<String>,
    outgoing_order: VecDeque<String>,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

impl Translator {
    pub fn new() -> Translator {
        Translator::default()
    }

    /// The events one ARI message means; empty for the ones madoguchi does not follow and for
    /// anything that is not an ARI event.
    pub fn translate(&mut self, msg: &Value, at: DateTime<Utc>) -> Vec<PbxEvent> {
        let link = LINK.to_string();
        match msg["type"].as_str().unwrap_or("") {
            "ChannelCreated" => {
                let ch = &msg["channel"];
                let id = text(ch, &["id"]);
                if id.is_empty() {
                    return Vec::new();
                }
                if text(ch, &["state"]).eq_ignore_ascii_case("Down") {
                    self.remember_outgoing(id);
                    return Vec::new();
                }
                vec![channel_event(link, ch, id.to_string(), at)]
            }
            "ChannelCallerId" | "ChannelStateChange" => {
                // A caller number that arrives after the channel.
                let ch = &msg["channel"];
                let id = text(ch, &["id"]);
                if id.is_empty() || self.outgoing.contains(id) {
                    return Vec::new();
                }
                vec![channel_event(link, ch, id.to_string(), at)]
            }
            "Dial" => {
                let peer = &msg["peer"];
                let peer_id = text(peer, &["id"]);
                let caller = &msg["caller"];
                let caller_id = text(caller, &["id"]);
                if peer_id.is_empty() {
                    return Vec::new();
                }
                let call = if caller_id.is_empty() {
                    peer_id
                } else {
                    caller_id
                };
                let mut out = Vec::new();
                if !caller_id.is_empty() && self.forget_outgoing(caller_id) {
                    // An originated leg (click-to-dial) dials out: now it is a call.
                    out.push(channel_event(
                        link.clone(),
                        caller,
                        caller_id.to_string(),
                        at,
                    ));
                }
                self.forget_outgoing(peer_id);
                let status = text(msg, &["dialstatus"]);
                if status.is_empty() {
                    out.push(PbxEvent::Offer {
                        link,
                        call: call.to_string(),
                        device: text(peer, &["name"]).to_string(),
                        agent_channel: Some(peer_id.to_string()),
                        queue: None,
                        at,
                    });
                } else {
                    out.push(PbxEvent::OfferEnd {
                        link,
                        call: call.to_string(),
                        device: text(peer, &["name"]).to_string(),
                        agent_channel: Some(peer_id.to_string()),
                        status: DialStatus::from_ami(status),
                        at,
                    });
                }
                out
            }
            "ChannelDestroyed" => {
                let ch = &msg["channel"];
                let id = text(ch, &["id"]);
                if id.is_empty() {
                    return Vec::new();
                }
                self.forget_outgoing(id);
                let cause = msg["cause"].as_u64().and_then(|c| u16::try_from(c).ok());
                vec![PbxEvent::Hangup {
                    link,
                    call: id.to_string(),
                    channel: id.to_string(),
                    cause,
                    at,
                }]
            }
            _ => Vec::new(),
        }
    }

    fn remember_outgoing(&mut self, id: &str) {
        if self.outgoing.insert(id.to_string()) {
            self.outgoing_order.push_back(id.to_string());
        }
        while self.outgoing_order.len() > MAX_PENDING_LEGS {
            if let Some(old) = self.outgoing_order.pop_front() {
                self.outgoing.remove(&old);
            }
        }
    }

    fn forget_outgoing(&mut self, id: &str) -> bool {
        self.outgoing.remove(id)
    }
}

fn channel_event(link: String, ch: &Value, id: String, at: DateTime<Utc>) -> PbxEvent {
    PbxEvent::Channel {
        link,
        call: id.clone(),
        channel: id,
        name: text(ch, &["name"]).to_string(),
        caller_number: text(ch, &["caller", "number"]).to_string(),
        caller_name: text(ch, &["caller", "name"]).to_string(),
        dialled: text(ch, &["dialplan", "exten"]).to_string(),
        at,
    }
}

/// The live channels of a `GET /ari/channels` answer, as a resync listing: dialled legs are
/// left out (they belong to a caller's call that ARI does not name).
pub fn listing(channels: &Value) -> Vec<LiveChannel> {
    channels
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|ch| {
            let app = text(ch, &["dialplan", "app_name"]);
            !app.eq_ignore_ascii_case("AppDial")
                && !app.eq_ignore_ascii_case("AppDial2")
                && !app.eq_ignore_ascii_case("AppQueue")
        })
        .filter_map(|ch| {
            let id = text(ch, &["id"]);
            (!id.is_empty()).then(|| LiveChannel {
                call: id.to_string(),
                channel: id.to_string(),
                name: text(ch, &["name"]).to_string(),
                caller_number: text(ch, &["caller", "number"]).to_string(),
                caller_name: text(ch, &["caller", "name"]).to_string(),
                dialled: text(ch, &["dialplan", "exten"]).to_string(),
                up: text(ch, &["state"]).eq_ignore_ascii_case("Up"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ari/");
        let text = std::fs::read_to_string(format!("{path}{name}")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn real_events_translate() {
        let mut t = Translator::new();
        let at = Utc::now();
        let created = t.translate(&fixture("channelcreated_voipbin.json"), at);
        assert_eq!(
            created,
            vec![PbxEvent::Channel {
                link: "ari".into(),
                call: "1587708468.7504".into(),
                channel: "1587708468.7504".into(),
                name: "PJSIP/in-voipbin-00001d4b".into(),
                caller_number: "5".into(),
                caller_name: String::new(),
                dialled: "701146842002329".into(),
                at,
            }]
        );
        let destroyed = t.translate(&fixture("channeldestroyed_voipbin.json"), at);
        assert!(matches!(
            &destroyed[..],
            [PbxEvent::Hangup { channel, cause: Some(18), .. }] if channel == "1586480922.6170"
        ));
        // Events madoguchi does not follow, and the odd message, give nothing.
        for f in [
            "channeldtmfreceived_voipbin.json",
            "channelvarset_voipbin.json",
            "channelenteredbridge_voipbin.json",
            "stasisstart_voipbin.json",
            "stasisend_asterisk-docs-hello-world.json",
        ] {
            assert!(t.translate(&fixture(f), at).is_empty(), "{f}");
        }
        assert!(t.translate(&serde_json::json!([1, 2]), at).is_empty());
        assert!(t
            .translate(&serde_json::json!({"type": "Dial"}), at)
            .is_empty());
    }

    #[test]
    fn a_dialled_leg_joins_its_callers_call() {
        let mut t = Translator::new();
        let at = Utc::now();
        let agent = serde_json::json!({"type":"ChannelCreated","channel":{"id":"9.2","name":"PJSIP/201-00000002","state":"Down","caller":{"number":"201"}}});
        assert!(
            t.translate(&agent, at).is_empty(),
            "an outgoing leg opens no call"
        );
        let dial = serde_json::json!({"type":"Dial","dialstatus":"","caller":{"id":"9.1","name":"PJSIP/trunk-1"},"peer":{"id":"9.2","name":"PJSIP/201-00000002"}});
        assert!(matches!(
            &t.translate(&dial, at)[..],
            [PbxEvent::Offer { call, agent_channel: Some(leg), .. }] if call == "9.1" && leg == "9.2"
        ));
        let answered = serde_json::json!({"type":"Dial","dialstatus":"ANSWER","caller":{"id":"9.1"},"peer":{"id":"9.2","name":"PJSIP/201-00000002"}});
        assert!(matches!(
            &t.translate(&answered, at)[..],
            [PbxEvent::OfferEnd {
                status: DialStatus::Answer,
                ..
            }]
        ));
        let list = listing(&serde_json::json!([
            {"id":"9.1","name":"PJSIP/trunk-1","state":"Up","caller":{"number":"0773621111"},"dialplan":{"app_name":"Queue","exten":"100"}},
            {"id":"9.2","name":"PJSIP/201-00000002","state":"Up","dialplan":{"app_name":"AppQueue"}}
        ]));
        assert_eq!(list.len(), 1, "dialled legs stay out of the listing");
        assert!(list[0].up);
    }
}
