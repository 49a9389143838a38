//! `POST /api/dial` `{number, resident_id?}`: click-to-dial from the agent's own phone. The
//! server asks the first PBX link that can dial (`pbx::dial::Dialer`) to ring the logged-in
//! user's extension and then call the number, and answers 202 `{action_id}` at once; the PBX's
//! final word comes to that agent's screens on `/ws` as
//! `{"type":"dial_result","action_id","ok","reason","call_id","resident_id","callback_id"}`.
//! Given `resident_id` (and `callback_id`, from a callback entry), the placed call's log row is
//! linked to the resident and the entry names the call (`dialled_call_id`).

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::pbx::dial::{valid_number, DialError, DialOutcome, DialRequest, OutcomeKind};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/dial", post(dial))
}

/// The routes of this module as `/api/openapi.json` lists them.
pub fn openapi_paths() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("/api/dial".into(), json!({"post": {"summary": "click-to-dial: ring the logged-in user's phone, then call {number} (digits and +, at most 20; resident_id and callback_id optional: the placed call is linked to them); the outcome comes on /ws as dial_result {action_id, ok, reason, call_id, resident_id, callback_id}",
        "responses": {"202": {"description": "{action_id}: asked of the PBX"},
                      "409": {"description": "the user has no extension"},
                      "422": {"description": "bad number, resident_id or callback_id (no such resident or entry); `field` names it"},
                      "503": {"description": "no PBX link that can dial is up"}}}}));
    m
}

#[derive(Deserialize)]
struct DialBody {
    number: String,
    #[serde(default)]
    resident_id: Option<i64>,
    #[serde(default)]
    callback_id: Option<i64>,
}

/// What a dial asked for, kept until the PBX says the call was placed, to link the call-log
/// row (the resident) and the callback entry to it.
#[derive(Debug, Clone, Default)]
pub struct DialLink {
    pub resident_id: Option<i64>,
    pub callback_id: Option<i64>,
}

/// Dials waiting for their outcome: action id → what to link. Bounded: past
/// [`MAX_DIAL_LINKS`] it is emptied (outcomes that never came).
#[derive(Clone, Default)]
pub struct DialLinks(Arc<Mutex<HashMap<String, DialLink>>>);

const MAX_DIAL_LINKS: usize = 1000;

impl DialLinks {
    fn put(&self, action_id: &str, link: DialLink) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_DIAL_LINKS {
            m.clear();
        }
        m.insert(action_id.to_string(), link);
    }
    fn take(&self, action_id: &str) -> Option<DialLink> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(action_id)
    }
}

async fn dial(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<DialBody>,
) -> Result<Response, ApiError> {
    let number = body.number.trim();
    if !valid_number(number) {
        return Err(ApiError::invalid(
            "number",
            "digits (and a leading +), at most 20",
        ));
    }
    if body.resident_id.is_some_and(|id| id <= 0) {
        return Err(ApiError::invalid("resident_id", "a resident's id"));
    }
    if let Some(id) = body.resident_id {
        if state.store.resident(id).await?.is_none() {
            return Err(ApiError::invalid("resident_id", "no such resident"));
        }
    }
    if let Some(id) = body.callback_id {
        if id <= 0 || state.store.callback(id).await?.is_none() {
            return Err(ApiError::invalid("callback_id", "no such callback"));
        }
    }
    let extension = user
        .extension
        .as_deref()
        .ok_or_else(|| ApiError::Conflict("you have no PBX extension to dial from".into()))?;
    let Some(dialer) = state.dialers.iter().find(|d| d.ready()) else {
        return Ok(unavailable(DialError::Unavailable));
    };
    let action_id = new_action_id("dial");
    let request = DialRequest {
        extension: extension.to_string(),
        number: number.to_string(),
        context: state.settings.dial_context.clone(),
        caller_id: format!("\"{number}\" <{number}>"),
        action_id: action_id.clone(),
    };
    let link = DialLink {
        resident_id: body.resident_id,
        callback_id: body.callback_id,
    };
    state.dial_links.put(&action_id, link);
    if let Err(e) = dialer.originate(request) {
        state.dial_links.take(&action_id);
        return Ok(unavailable(e));
    }
    tracing::info!(agent = %user.username, extension, link = %dialer.name(), %action_id,
        resident_id = ?body.resident_id, callback_id = ?body.callback_id, "click-to-dial asked");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "action_id": action_id })),
    )
        .into_response())
}

fn unavailable(e: DialError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// `{prefix}-` and 16 random hex digits.
pub(super) fn new_action_id(prefix: &str) -> String {
    format!("{prefix}-{}", crate::domain::random::hex(8))
}

/// Sends each dial (or pause) outcome to its agent's screens, until the links stop sending
/// them. A dial the PBX placed links its call-log row to the resident and the callback entry
/// it was made for.
pub async fn forward_outcomes(
    hub: crate::hub::Hub,
    store: crate::store::Store,
    links: DialLinks,
    mut outcomes: tokio::sync::mpsc::Receiver<DialOutcome>,
) {
    while let Some(o) = outcomes.recv().await {
        tracing::info!(extension = %o.extension, action_id = %o.action_id, ok = o.ok, reason = %o.reason, kind = ?o.kind, "PBX action result");
        let message = match o.kind {
            OutcomeKind::Dial => {
                let link = links.take(&o.action_id).unwrap_or_default();
                if let (true, Some(call)) = (o.ok, o.call_key.clone()) {
                    tokio::spawn(link_call(store.clone(), call, link.clone()));
                }
                json!({
                    "type": "dial_result",
                    "action_id": o.action_id,
                    "ok": o.ok,
                    "reason": o.reason,
                    "call_id": o.call_key,
                    "resident_id": link.resident_id,
                    "callback_id": link.callback_id,
                })
            }
            OutcomeKind::Pause { paused } => json!({
                "type": "pause_result",
                "action_id": o.action_id,
                "paused": paused,
                "ok": o.ok,
                "reason": o.reason,
            }),
        };
        hub.publish(&crate::hub::agent_topic(&o.extension), &message.to_string());
    }
}

/// Links a placed call to its resident and callback entry. The call-log row may not be
/// written yet (the writer is behind the tracker), so the resident is retried for a while.
async fn link_call(store: crate::store::Store, call: String, link: DialLink) {
    let at = crate::store::ts(chrono::Utc::now());
    if let Some(id) = link.callback_id {
        if let Err(e) = store.callback_dialled(id, &call, &at).await {
            tracing::warn!(%call, callback = id, error = %e, "could not link the callback to its call");
        }
    }
    let Some(resident) = link.resident_id else {
        return;
    };
    for _ in 0..100 {
        match store.set_call_resident(&call, resident).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(%call, error = %format!("{e:#}"), "linking the dialled call to its resident")
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tracing::warn!(%call, resident, "the dialled call never reached the call log; not linked");
}
