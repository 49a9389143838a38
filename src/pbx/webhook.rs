//! The HTTP webhook adapter, for PBXes that can only call a URL: the Zammad generic-CTI shape
//! (`newCall`, `answer`, `hangup`), as JSON or as form data. Each request becomes
//! [`PbxEvent`]s of the link `webhook`, so the tracker treats it like any other PBX.
//!
//! Field meanings (Zammad's): `callId` names the call (unique per call, at most 250 chars);
//! `from`/`to` the numbers; `direction` `in` or `out`; `user` the extensions rung (inbound) or
//! the calling agent (outbound), a string or a list (`user[]` in form data); `queue` optional;
//! `answeringNumber` the extension that answered; `cause` how it ended (`normalClearing`,
//! `busy`, `cancel`, `noAnswer`, `congestion`, `notFound`, `forwarded`). A PBX that retries a
//! request changes nothing: the tracker ignores what it already knows.

use crate::domain::DialStatus;
use crate::pbx::PbxEvent;
use chrono::{DateTime, Utc};

/// The link name of webhook calls (`webhook:<callId>` in the call log).
pub const LINK: &str = "webhook";
const MAX_ID: usize = 250;
const MAX_FIELD: usize = 128;
const MAX_USERS: usize = 32;

/// One webhook request, whatever its encoding.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WebhookEvent {
    pub event: String,
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub direction: String,
    pub users: Vec<String>,
    pub queue: Option<String>,
    pub answering_number: Option<String>,
    pub cause: Option<String>,
}

/// Why a request was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Refused {
    pub field: &'static str,
    pub reason: String,
}

fn refused(field: &'static str, reason: impl Into<String>) -> Refused {
    Refused {
        field,
        reason: reason.into(),
    }
}

impl WebhookEvent {
    /// From a JSON object body.
    pub fn from_json(body: &[u8]) -> Result<WebhookEvent, Refused> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| refused("body", format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| refused("body", "must be a JSON object"))?;
        // A field is a string (or a number, which some PBXes send for ids); any other type is
        // refused naming the field rather than read as empty.
        let text = |k: &'static str| -> Result<Option<String>, Refused> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(refused(k, "must be a string")),
            }
        };
        let users = match obj.get("user") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|u| {
                    u.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| refused("user", "must be a string or a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(_) => return Err(refused("user", "must be a string or a list of strings")),
        };
        Ok(WebhookEvent {
            event: text("event")?.unwrap_or_default(),
            call_id: text("callId")?.unwrap_or_default(),
            from: text("from")?.unwrap_or_default(),
            to: text("to")?.unwrap_or_default(),
            direction: text("direction")?.unwrap_or_default(),
            users,
            queue: text("queue")?,
            answering_number: text("answeringNumber")?,
            cause: text("cause")?,
        })
    }

    /// From an `application/x-www-form-urlencoded` body (`user` or `user[]` may repeat).
    pub fn from_form(body: &[u8]) -> Result<WebhookEvent, Refused> {
        let text = std::str::from_utf8(body).map_err(|_| refused("body", "not UTF-8"))?;
        let mut ev = WebhookEvent::default();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode(k)?, percent_decode(v)?);
            match k.as_str() {
                "event" => ev.event = v,
                "callId" => ev.call_id = v,
                "from" => ev.from = v,
                "to" => ev.to = v,
                "direction" => ev.direction = v,
                "user" | "user[]" => ev.users.push(v),
                "queue" => ev.queue = Some(v),
                "answeringNumber" => ev.answering_number = Some(v),
                "cause" => ev.cause = Some(v),
                _ => {}
            }
        }
        Ok(ev)
    }

    /// The PBX events this request means.
    pub fn translate(&self, at: DateTime<Utc>) -> Result<Vec<PbxEvent>, Refused> {
        let call = self.call_id.trim();
        if call.is_empty() {
            return Err(refused("callId", "is required"));
        }
        if call.len() > MAX_ID || call.chars().any(char::is_control) {
            return Err(refused("callId", "at most 250 printable characters"));
        }
        for (field, v) in [("from", &self.from), ("to", &self.to)] {
            if v.len() > MAX_FIELD || v.chars().any(char::is_control) {
                return Err(refused(field, "at most 128 printable characters"));
            }
        }
        if self.users.len() > MAX_USERS
            || self
                .users
                .iter()
                .any(|u| u.len() > MAX_FIELD || u.chars().any(char::is_control))
        {
            return Err(refused("user", "at most 32 names of 128 characters"));
        }
        let link = LINK.to_string();
        let call = call.to_string();
        let caller_leg = call.clone();
        let agent_leg = |u: &str| format!("{call}/{u}");
        let mut out = Vec::new();
        match self.event.as_str() {
            "newCall" => {
                let outbound = self.direction.eq_ignore_ascii_case("out");
                let name = match (outbound, self.users.first()) {
                    (true, Some(u)) => format!("webhook/{u}"),
                    _ => "webhook/in".to_string(),
                };
                out.push(PbxEvent::Channel {
                    link: link.clone(),
                    call: call.clone(),
                    channel: caller_leg.clone(),
                    name,
                    caller_number: self.from.clone(),
                    caller_name: String::new(),
                    dialled: self.to.clone(),
                    at,
                });
                if outbound {
                    return Ok(out);
                }
                if let Some(q) = self.queue.as_ref().filter(|q| !q.is_empty()) {
                    out.push(PbxEvent::QueueJoin {
                        link: link.clone(),
                        call: call.clone(),
                        channel: caller_leg,
                        queue: q.clone(),
                        at,
                    });
                }
                for u in &self.users {
                    out.push(PbxEvent::Offer {
                        link: link.clone(),
                        call: call.clone(),
                        device: u.clone(),
                        agent_channel: Some(agent_leg(u)),
                        queue: self.queue.clone(),
                        at,
                    });
                }
            }
            "answer" => {
                let Some(device) = self
                    .answering_number
                    .as_ref()
                    .filter(|a| !a.is_empty())
                    .or(self.users.first())
                else {
                    return Err(refused("answeringNumber", "who answered is required"));
                };
                out.push(PbxEvent::Answer {
                    link,
                    call,
                    device: device.clone(),
                    queue: self.queue.clone(),
                    hold_s: None,
                    at,
                });
            }
            "hangup" => {
                let cause = self.cause.as_deref().unwrap_or("normalClearing");
                let (status, q850) = match cause {
                    "normalClearing" | "forwarded" | "cancel" => (None, 16),
                    "busy" => (Some(DialStatus::Busy), 17),
                    "noAnswer" => (Some(DialStatus::NoAnswer), 19),
                    "congestion" => (Some(DialStatus::Congestion), 34),
                    "notFound" => (Some(DialStatus::Unavailable), 1),
                    other => return Err(refused("cause", format!("unknown cause {other:?}"))),
                };
                if let Some(status) = status {
                    for u in &self.users {
                        out.push(PbxEvent::OfferEnd {
                            link: link.clone(),
                            call: call.clone(),
                            device: u.clone(),
                            agent_channel: Some(agent_leg(u)),
                            status,
                            at,
                        });
                    }
                }
                out.push(PbxEvent::Hangup {
                    link,
                    call,
                    channel: caller_leg,
                    cause: Some(q850),
                    at,
                });
            }
            "" => return Err(refused("event", "is required")),
            other => {
                return Err(refused(
                    "event",
                    format!("must be newCall, answer or hangup, not {other:?}"),
                ))
            }
        }
        Ok(out)
    }
}

fn percent_decode(s: &str) -> Result<String, Refused> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| refused("body", "bad percent escape"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| refused("body", "not UTF-8"))
}

/// Compares a presented token with the configured one in time that does not depend on where
/// they differ.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, expected) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ expected);
    }
    diff == 0 && !b.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_form_read_the_same() {
        let json = WebhookEvent::from_json(
            br#"{"event":"newCall","from":"0773621111","to":"0773689225","direction":"in","callId":"c-1","user":["201","202"],"queue":"vaccine"}"#,
        )
        .unwrap();
        let form = WebhookEvent::from_form(
            b"event=newCall&from=0773621111&to=0773689225&direction=in&callId=c-1&user%5B%5D=201&user%5B%5D=202&queue=vaccine",
        )
        .unwrap();
        assert_eq!(json, form);
        let evs = json.translate(Utc::now()).unwrap();
        assert_eq!(evs.len(), 4, "channel, queue join, two offers: {evs:?}");
        assert!(matches!(&evs[3], PbxEvent::Offer { device, .. } if device == "202"));
    }

    #[test]
    fn hangup_causes_map_to_outcomes() {
        let ev = |cause: &str| WebhookEvent {
            event: "hangup".into(),
            call_id: "c".into(),
            users: vec!["201".into()],
            cause: Some(cause.into()),
            ..WebhookEvent::default()
        };
        let busy = ev("busy").translate(Utc::now()).unwrap();
        assert!(matches!(
            busy[0],
            PbxEvent::OfferEnd {
                status: DialStatus::Busy,
                ..
            }
        ));
        assert!(matches!(
            busy[1],
            PbxEvent::Hangup {
                cause: Some(17),
                ..
            }
        ));
        assert_eq!(
            ev("teleported").translate(Utc::now()).unwrap_err().field,
            "cause"
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let no_id = WebhookEvent {
            event: "newCall".into(),
            ..WebhookEvent::default()
        };
        assert_eq!(no_id.translate(Utc::now()).unwrap_err().field, "callId");
        let odd = WebhookEvent {
            event: "ring".into(),
            call_id: "x".into(),
            ..WebhookEvent::default()
        };
        assert_eq!(odd.translate(Utc::now()).unwrap_err().field, "event");
        assert_eq!(WebhookEvent::from_json(b"[1]").unwrap_err().field, "body");
        assert_eq!(WebhookEvent::from_form(b"a=%zz").unwrap_err().field, "body");
        assert!(WebhookEvent::from_json(b"\xff").is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3cretx", "s3cret"));
        assert!(!token_matches("", ""));
    }
}
