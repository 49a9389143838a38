//! AMI events → [`PbxEvent`]s.
//!
//! Only the ~10 events a screen pop and the call log need are read; everything else (VarSet,
//! Newexten, Bridge*, RTCP…) yields nothing. Fields are looked up by name, never by position,
//! and every one may be missing: Asterisk 11 events lack `Linkedid` and name things differently
//! (`Join`, `Dial` with `SubEvent`, `Holdtime`), and a filtered or hand-edited capture can hold
//! anything.
//!
//! The translator does not follow calls: a channel's Linkedid can change mid-call (bridges and
//! transfers rewrite it, TELEPHONY.md §1.4), so each event carries the Linkedid it was sent with
//! and the tracker downstream follows channels.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::codec::Packet;
use crate::pbx::{DialStatus, PbxEvent};

/// Asterisk ≤ 11 `Dial` `SubEvent: End` names only the calling leg; remember whom it dialled.
/// Bounded: a PBX that never sends the ends must not grow this forever.
const MAX_OLD_DIALS: usize = 10_000;

pub struct Translator {
    link: String,
    /// Asterisk ≤ 11 only: calling leg Uniqueid → (destination channel, its Uniqueid) of each
    /// `Dial` `SubEvent: Begin` not yet ended.
    old_dials: HashMap<String, Vec<(String, String)>>,
}

impl Translator {
    /// `link` names the PBX link (e.g. `ami`) in every event produced.
    pub fn new(link: impl Into<String>) -> Self {
        Self {
            link: link.into(),
            old_dials: HashMap::new(),
        }
    }

    pub fn link(&self) -> &str {
        &self.link
    }

    /// The events one AMI packet means; empty for everything madoguchi does not follow.
    /// `at` is when the packet was received.
    pub fn translate(&mut self, p: &Packet, at: DateTime<Utc>) -> Vec<PbxEvent> {
        let Some(event) = p.event() else {
            return Vec::new();
        };
        let link = self.link.clone();
        let event = event.trim();
        let is = |name: &str| event.eq_ignore_ascii_case(name);

        if is("Newchannel") || is("NewCallerid") {
            return channel(link, p, at).into_iter().collect();
        }
        if is("Newstate") {
            // Newstate repeats the snapshot; it matters when it brings a caller number the
            // Newchannel did not have (trunks that send the number late).
            let has_number = p
                .get_nonempty("CallerIDNum")
                .is_some_and(|n| !n.eq_ignore_ascii_case("<unknown>"));
            return if has_number {
                channel(link, p, at).into_iter().collect()
            } else {
                Vec::new()
            };
        }
        if is("QueueCallerJoin") || is("Join") {
            let (Some(call), Some(channel), Some(queue)) = (
                call_id(p),
                p.get_nonempty("Uniqueid"),
                p.get_nonempty("Queue"),
            ) else {
                return Vec::new();
            };
            return vec![PbxEvent::QueueJoin {
                link,
                call,
                channel: channel.to_string(),
                queue: queue.to_string(),
                at,
            }];
        }
        if is("AgentCalled") || is("DialBegin") {
            // Both ring an agent device: AgentCalled names the queue member (12+:
            // Interface/MemberName; 11: AgentCalled/AgentName), DialBegin the dialled channel.
            let queued = is("AgentCalled");
            let device = if queued {
                first(
                    p,
                    &[
                        "Interface",
                        "MemberName",
                        "AgentCalled",
                        "AgentName",
                        "DestChannel",
                    ],
                )
            } else {
                p.get_nonempty("DestChannel")
            };
            let (Some(call), Some(device)) = (call_id(p), device) else {
                return Vec::new();
            };
            return vec![PbxEvent::Offer {
                link,
                call,
                device: device.to_string(),
                agent_channel: p.get_nonempty("DestUniqueid").map(str::to_string),
                queue: if queued {
                    p.get_nonempty("Queue").map(str::to_string)
                } else {
                    None
                },
                at,
            }];
        }
        if is("DialEnd") {
            let (Some(call), Some(device)) = (call_id(p), p.get_nonempty("DestChannel")) else {
                return Vec::new();
            };
            return vec![PbxEvent::OfferEnd {
                link,
                call,
                device: device.to_string(),
                agent_channel: p.get_nonempty("DestUniqueid").map(str::to_string),
                status: DialStatus::from_ami(p.get("DialStatus").unwrap_or("")),
                at,
            }];
        }
        if is("Dial") {
            return self.old_dial(link, p, at);
        }
        if is("AgentConnect") {
            // 11: Member; its `Channel` is the agent leg and `Uniqueid` the caller's.
            let device = first(p, &["Interface", "MemberName", "Member", "DestChannel"]);
            let (Some(call), Some(device)) = (call_id(p), device) else {
                return Vec::new();
            };
            return vec![PbxEvent::Answer {
                link,
                call,
                device: device.to_string(),
                queue: p.get_nonempty("Queue").map(str::to_string),
                hold_s: int(p, "HoldTime"),
                at,
            }];
        }
        if is("QueueCallerAbandon") {
            let (Some(call), Some(queue)) = (call_id(p), p.get_nonempty("Queue")) else {
                return Vec::new();
            };
            return vec![PbxEvent::Abandon {
                link,
                call,
                queue: queue.to_string(),
                hold_s: int(p, "HoldTime"),
                at,
            }];
        }
        if is("QueueCallerLeave") || is("Leave") {
            let (Some(call), Some(channel), Some(queue)) = (
                call_id(p),
                p.get_nonempty("Uniqueid"),
                p.get_nonempty("Queue"),
            ) else {
                return Vec::new();
            };
            return vec![PbxEvent::QueueLeave {
                link,
                call,
                channel: channel.to_string(),
                queue: queue.to_string(),
                at,
            }];
        }
        if is("QueueMemberStatus")
            || is("QueueMemberPause")
            || is("QueueMemberPaused")
            || is("QueueMemberAdded")
            || is("QueueMemberRemoved")
            || is("QueueMember")
        {
            return member(link, p, is("QueueMemberRemoved"), at)
                .into_iter()
                .collect();
        }
        if is("DeviceStateChange") {
            let (Some(device), Some(state)) = (p.get_nonempty("Device"), p.get_nonempty("State"))
            else {
                return Vec::new();
            };
            return vec![PbxEvent::DeviceState {
                link,
                device: device.trim().to_string(),
                state: state.trim().to_string(),
                at,
            }];
        }
        if is("Hangup") {
            let (Some(call), Some(channel)) = (call_id(p), p.get_nonempty("Uniqueid")) else {
                return Vec::new();
            };
            self.old_dials.remove(channel);
            return vec![PbxEvent::Hangup {
                link,
                call,
                channel: channel.to_string(),
                cause: p.get("Cause").and_then(|c| c.trim().parse::<u16>().ok()),
                at,
            }];
        }
        Vec::new()
    }

    /// Asterisk ≤ 11 `Dial`: `SubEvent: Begin` is an offer; `SubEvent: End` names only the
    /// calling leg, so it ends the offer it began when that is unambiguous (one destination, or
    /// a status that applies to all of them).
    fn old_dial(&mut self, link: String, p: &Packet, at: DateTime<Utc>) -> Vec<PbxEvent> {
        let Some(caller) = p.get_nonempty("UniqueID") else {
            return Vec::new();
        };
        let call = call_id(p).unwrap_or_else(|| caller.to_string());
        match p.get("SubEvent").map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("Begin") => {
                let Some(dest) = p.get_nonempty("Destination") else {
                    return Vec::new();
                };
                let dest_id = p.get_nonempty("DestUniqueID").map(str::to_string);
                if self.old_dials.len() >= MAX_OLD_DIALS && !self.old_dials.contains_key(caller) {
                    tracing::warn!(link = %link, "too many unfinished Asterisk 11 dials; forgetting them");
                    self.old_dials.clear();
                }
                self.old_dials
                    .entry(caller.to_string())
                    .or_default()
                    .push((dest.to_string(), dest_id.clone().unwrap_or_default()));
                vec![PbxEvent::Offer {
                    link,
                    call,
                    device: dest.to_string(),
                    agent_channel: dest_id,
                    queue: None,
                    at,
                }]
            }
            Some(s) if s.eq_ignore_ascii_case("End") => {
                let Some(dests) = self.old_dials.remove(caller) else {
                    return Vec::new();
                };
                let status = DialStatus::from_ami(p.get("DialStatus").unwrap_or(""));
                if dests.len() > 1 && status == DialStatus::Answer {
                    // Which one answered is not said; the bridge and hangups will tell.
                    return Vec::new();
                }
                dests
                    .into_iter()
                    .map(|(device, id)| PbxEvent::OfferEnd {
                        link: link.clone(),
                        call: call.clone(),
                        device,
                        agent_channel: (!id.is_empty()).then_some(id),
                        status,
                        at,
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The call an event belongs to: the sending channel's Linkedid as of this event; Asterisk 11
/// has no Linkedid, so the channel's own Uniqueid; events about a second channel only (an
/// originate's DialBegin has no caller) use that channel's.
fn call_id(p: &Packet) -> Option<String> {
    first(p, &["Linkedid", "Uniqueid", "DestLinkedid", "DestUniqueid"]).map(str::to_string)
}

fn channel(link: String, p: &Packet, at: DateTime<Utc>) -> Option<PbxEvent> {
    Some(PbxEvent::Channel {
        link,
        call: call_id(p)?,
        channel: p.get_nonempty("Uniqueid")?.to_string(),
        name: p.get("Channel").unwrap_or("").to_string(),
        caller_number: p.get("CallerIDNum").unwrap_or("").to_string(),
        caller_name: p.get("CallerIDName").unwrap_or("").to_string(),
        dialled: first(p, &["Exten", "Extension"]).unwrap_or("").to_string(),
        at,
    })
}

/// A queue member's state (QueueMember items of QueueStatus, QueueMemberStatus,
/// QueueMemberPause, QueueMemberAdded/Removed). The device is the member's state interface,
/// else its interface (`Location` in QueueStatus items), else its name.
pub(crate) fn member(
    link: String,
    p: &Packet,
    removed: bool,
    at: DateTime<Utc>,
) -> Option<PbxEvent> {
    let device = first(
        p,
        &[
            "StateInterface",
            "Interface",
            "Location",
            "MemberName",
            "Name",
        ],
    )?;
    let paused = p
        .get_nonempty("Paused")
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"));
    let reason = first(p, &["PausedReason", "Reason"])
        .filter(|r| !r.eq_ignore_ascii_case("<nil>"))
        .map(str::to_string);
    Some(PbxEvent::Member {
        link,
        queue: p.get_nonempty("Queue").map(|q| q.trim().to_string()),
        device: device.to_string(),
        status: p.get("Status").and_then(|v| v.trim().parse().ok()),
        paused,
        reason,
        removed,
        at,
    })
}

fn first<'a>(p: &'a Packet, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| p.get_nonempty(k)).map(str::trim)
}

fn int(p: &Packet, key: &str) -> Option<i64> {
    p.get(key).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbx::ami::codec::{Decoder, Frame};

    const WIRE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ami/wire");

    fn packets(prefix: &str) -> Vec<Packet> {
        let path = std::fs::read_dir(WIRE)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no fixture {prefix}"));
        let mut d = Decoder::new();
        d.push(&std::fs::read(path).unwrap());
        let mut out = Vec::new();
        while let Some(f) = d.next_frame() {
            if let Frame::Packet(p) = f.unwrap() {
                out.push(p);
            }
        }
        out
    }

    fn translate(prefix: &str) -> Vec<PbxEvent> {
        let mut t = Translator::new("ami");
        let at = Utc::now();
        packets(prefix)
            .iter()
            .flat_map(|p| t.translate(p, at))
            .collect()
    }

    #[test]
    fn fixture_01_queue_call_answered_by_sip_777() {
        let events = translate("01_");
        let offers: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PbxEvent::Offer {
                    call,
                    device,
                    agent_channel,
                    queue,
                    ..
                } => Some((
                    call.as_str(),
                    device.as_str(),
                    agent_channel.as_deref(),
                    queue.as_deref(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            offers,
            vec![
                (
                    "1514295827.372",
                    "SIP/777",
                    Some("1514295839.373"),
                    Some("Q1")
                ),
                (
                    "1514295827.372",
                    "SIP/777-000000bc",
                    Some("1514295839.373"),
                    None
                ),
            ]
        );
        let answers: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PbxEvent::Answer {
                    call,
                    device,
                    queue,
                    hold_s,
                    ..
                } => Some((call.as_str(), device.as_str(), queue.as_deref(), *hold_s)),
                _ => None,
            })
            .collect();
        assert_eq!(
            answers,
            vec![("1514295827.372", "SIP/777", Some("Q1"), Some(9))]
        );
        assert!(events.iter().any(|e| matches!(e,
            PbxEvent::Channel { call, channel, name, caller_number, .. }
                if name == "SIP/777-000000bc" && call == "1514295827.372"
                    && channel == "1514295839.373" && caller_number == "777")));
        assert!(events.iter().any(|e| matches!(e,
            PbxEvent::Channel { call, channel, caller_number, caller_name, dialled, .. }
                if channel == "1514295827.372" && call == channel && caller_number == "123"
                    && caller_name == "Eugene R" && dialled == "888999")));
        assert!(events.iter().any(|e| matches!(e,
            PbxEvent::QueueJoin { call, channel, queue, .. }
                if call == "1514295827.372" && channel == call && queue == "Q1")));
        assert!(events.iter().any(|e| matches!(e,
            PbxEvent::OfferEnd { device, status: DialStatus::Answer, .. } if device == "SIP/777-000000bc")));
        let hangups: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PbxEvent::Hangup { channel, cause, .. } => Some((channel.as_str(), *cause)),
                _ => None,
            })
            .collect();
        assert_eq!(
            hangups,
            vec![("1514295827.372", Some(16)), ("1514295839.373", Some(16))]
        );
        assert!(events.iter().all(|e| e.link() == "ami"));
    }

    #[test]
    fn fixture_02_ring_all_busy_noanswer_answer() {
        let events = translate("02_");
        let call = "195176c06ab8-1529939196.518";
        let offered: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PbxEvent::Offer {
                    call: c, device, ..
                } if c == call => Some(device.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            offered,
            vec![
                "Local/ID730152@osvpi_route_phoneaccount-00000015;1",
                "Local/ID730151@osvpi_route_phoneaccount-00000016;1",
                "SIP/150010002-00000026",
                "SIP/150010003-00000027",
            ]
        );
        let ends: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PbxEvent::OfferEnd {
                    call: c,
                    device,
                    agent_channel,
                    status,
                    ..
                } if c == call => Some((device.as_str(), agent_channel.as_deref(), *status)),
                _ => None,
            })
            .collect();
        assert!(ends.contains(&(
            "SIP/150010003-00000027",
            Some("195176c06ab8-1529939198.550"),
            DialStatus::Busy
        )));
        assert!(ends.contains(&(
            "SIP/150010002-00000026",
            Some("195176c06ab8-1529939198.548"),
            DialStatus::Answer
        )));
        assert!(ends.contains(&(
            "Local/ID730152@osvpi_route_phoneaccount-00000015;1",
            Some("195176c06ab8-1529939198.538"),
            DialStatus::NoAnswer
        )));
        // Every channel of the call carries the caller's Linkedid.
        assert!(events.iter().all(|e| match e {
            PbxEvent::Channel { call: c, .. } | PbxEvent::Hangup { call: c, .. } => c == call,
            _ => true,
        }));
    }

    #[test]
    fn fixture_03_abandoned_after_11_seconds() {
        let events = translate("03_");
        let abandons: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PbxEvent::Abandon { queue, hold_s, .. } => Some((queue.as_str(), *hold_s)),
                _ => None,
            })
            .collect();
        assert_eq!(abandons, vec![("670100-540100", Some(11))]);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(
                    e,
                    PbxEvent::OfferEnd {
                        status: DialStatus::Cancel,
                        ..
                    }
                ))
                .count(),
            3
        );
        assert!(events
            .iter()
            .any(|e| matches!(e, PbxEvent::Hangup { cause: Some(0), .. })));
    }

    #[test]
    fn fixture_09_asterisk_11_without_linkedid() {
        let events = translate("09_");
        // Channels fall back to their own Uniqueid as the call.
        assert!(events.iter().any(|e| matches!(e,
            PbxEvent::Channel { call, channel, name, caller_number, .. }
                if call == "1414510601.2" && channel == call && name == "SIP/ddddd-00000000"
                    && caller_number == "259")));
        // Old-style Dial Begin/End become an offer and its end.
        assert!(events.iter().any(|e| matches!(e,
            PbxEvent::Offer { call, device, agent_channel: Some(a), .. }
                if call == "1414510600.1" && device == "SIP/ddddd-00000000" && a == "1414510601.2")));
        assert!(events.iter().any(|e| matches!(e,
            PbxEvent::OfferEnd { call, device, status: DialStatus::Answer, .. }
                if call == "1414510600.1" && device == "SIP/ddddd-00000000")));
        // Newstate with an empty caller number is not a channel update.
        let mut t = Translator::new("ami");
        let ringing = packets("09_")
            .into_iter()
            .find(|p| p.is_event("Newstate") && p.get("CallerIDNum") == Some(""));
        assert!(t
            .translate(
                &ringing.expect("a Newstate without caller number"),
                Utc::now()
            )
            .is_empty());
    }

    #[test]
    fn every_call_fixture_translates_without_panicking() {
        for prefix in [
            "01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_", "09_", "18_",
        ] {
            let events = translate(prefix);
            assert!(!events.is_empty(), "{prefix} produced nothing");
            for e in &events {
                match e {
                    PbxEvent::Channel { call, channel, .. }
                    | PbxEvent::Hangup { call, channel, .. } => {
                        assert!(!call.is_empty() && !channel.is_empty(), "{prefix}: {e:?}")
                    }
                    PbxEvent::Offer { call, device, .. }
                    | PbxEvent::OfferEnd { call, device, .. } => {
                        assert!(!call.is_empty() && !device.is_empty(), "{prefix}: {e:?}")
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn fixture_06_linkedid_is_taken_from_each_event() {
        // In a transfer the Linkedid of a channel may change; whatever the event says is used.
        let mut t = Translator::new("ami");
        let at = Utc::now();
        for p in packets("06_") {
            for e in t.translate(&p, at) {
                if let PbxEvent::Hangup { call, .. } | PbxEvent::Channel { call, .. } = &e {
                    assert_eq!(Some(call.as_str()), p.get("Linkedid"));
                }
            }
        }
    }

    #[test]
    fn missing_fields_yield_nothing_rather_than_garbage() {
        let mut t = Translator::new("ami");
        let at = Utc::now();
        for name in [
            "Newchannel",
            "AgentCalled",
            "DialBegin",
            "DialEnd",
            "AgentConnect",
            "QueueCallerAbandon",
            "Hangup",
            "Dial",
            "Join",
        ] {
            let p = Packet::from_pairs(&[("Event", name)]);
            assert!(t.translate(&p, at).is_empty(), "{name}");
        }
        let p = Packet::from_pairs(&[("Response", "Success")]);
        assert!(t.translate(&p, at).is_empty());
        // Asterisk 11 queue events.
        let join = Packet::from_pairs(&[
            ("Event", "Join"),
            ("Queue", "vaccine"),
            ("Uniqueid", "1.5"),
            ("Position", "1"),
        ]);
        assert_eq!(
            t.translate(&join, at),
            vec![PbxEvent::QueueJoin {
                link: "ami".into(),
                call: "1.5".into(),
                channel: "1.5".into(),
                queue: "vaccine".into(),
                at
            }]
        );
        let connect = Packet::from_pairs(&[
            ("Event", "AgentConnect"),
            ("Queue", "vaccine"),
            ("Uniqueid", "1.5"),
            ("Member", "SIP/201"),
            ("Holdtime", "4"),
        ]);
        assert_eq!(
            t.translate(&connect, at),
            vec![PbxEvent::Answer {
                link: "ami".into(),
                call: "1.5".into(),
                device: "SIP/201".into(),
                queue: Some("vaccine".into()),
                hold_s: Some(4),
                at
            }]
        );
        let hangup =
            Packet::from_pairs(&[("Event", "Hangup"), ("Uniqueid", "1.5"), ("Cause", "x")]);
        assert!(matches!(
            &t.translate(&hangup, at)[..],
            [PbxEvent::Hangup { cause: None, .. }]
        ));
    }
}
