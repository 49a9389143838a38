//! `GET` / `POST /api/agent/state`: the agent's own availability — ready (受付可), on a break
//! (休憩, with a reason) or in after-call work (後処理, ends by itself after
//! `MADOGUCHI_ACW_SECONDS`). Kept by the server on the queue board beside the phone's state,
//! so supervisors see it in `/api/queues`; after-call work also starts by itself when a call
//! the agent answered ends. A change is also sent to the agent's screens (`agent_state` on
//! `/ws`), and every `hello` carries the state, so each open tab shows the same.
//!
//! A break also pauses the agent in the PBX's queues (AMI `QueuePause` with the reason, on the
//! interface `PJSIP/<extension>`, every queue), and leaving it unpauses them, so the queue stops
//! ringing a phone nobody is at. The answer says whether that was asked (`pbx_pause`:
//! `{action_id, paused}`, or `null` when the state's pause did not change, or
//! `{"error": …}` when no PBX link can pause); the PBX's word follows on `/ws` as
//! `{"type":"pause_result","action_id","paused","ok","reason"}`, and the dashboard shows the
//! paused state from the PBX's `QueueMemberPause`.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::calls::board::{Availability, AvailabilityView};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

/// The longest break reason kept (a few words: 昼休憩, 研修, 会議).
const REASON_MAX_CHARS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/agent/state", get(current).post(set))
}

/// The extension whose state this user may see and set: their own.
fn own_extension(user: &crate::store::users::User) -> Result<&str, ApiError> {
    user.extension
        .as_deref()
        .ok_or_else(|| ApiError::Conflict("you have no PBX extension, so no desk state".into()))
}

async fn current(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<AvailabilityView>, ApiError> {
    let ext = own_extension(&user)?;
    Ok(Json(state.board.availability(ext, chrono::Utc::now())))
}

#[derive(Deserialize)]
struct NewState {
    state: Option<String>,
    reason: Option<String>,
}

async fn set(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<NewState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let wanted = body
        .state
        .as_deref()
        .and_then(Availability::parse)
        .ok_or_else(|| ApiError::invalid("state", "one of ready, break, acw"))?;
    let reason = body
        .reason
        .map(|r| crate::domain::text::fold_width(r.trim()))
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > REASON_MAX_CHARS || r.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "reason",
            format!("at most {REASON_MAX_CHARS} characters on one line"),
        ));
    }
    let ext = own_extension(&user)?;
    let now = chrono::Utc::now();
    let before = state.board.availability(ext, now);
    let pause_reason = reason.clone().unwrap_or_default();
    let view = state.board.set_availability(ext, wanted, reason, now);
    let was_break = before.state == Availability::Break;
    let is_break = wanted == Availability::Break;
    // A new break, a break's new reason, or the end of a break: tell the PBX's queues.
    let pause = if is_break && (!was_break || before.reason != view.reason) {
        Some(true)
    } else if was_break && !is_break {
        Some(false)
    } else {
        None
    };
    let pbx_pause = match pause {
        None => serde_json::Value::Null,
        Some(paused) => queue_pause(&state, ext, paused, &pause_reason),
    };
    tracing::info!(agent = %user.username, extension = ext, state = ?wanted, "agent state");
    // The agent's other screens (another browser tab) follow.
    let mut message = serde_json::json!({ "type": "agent_state" });
    if let (Some(m), Ok(serde_json::Value::Object(v))) =
        (message.as_object_mut(), serde_json::to_value(&view))
    {
        m.extend(v);
    }
    state
        .hub
        .publish(&crate::hub::agent_topic(ext), &message.to_string());
    let mut answer = serde_json::to_value(&view).unwrap_or_default();
    if let Some(m) = answer.as_object_mut() {
        m.insert("pbx_pause".into(), pbx_pause);
    }
    Ok(Json(answer))
}

/// Asks the first PBX link that can to (un)pause the agent's interface in every queue.
fn queue_pause(state: &AppState, ext: &str, paused: bool, reason: &str) -> serde_json::Value {
    let Some(dialer) = state.dialers.iter().find(|d| d.ready()) else {
        return serde_json::json!({ "error": crate::pbx::dial::DialError::Unavailable.to_string() });
    };
    let action_id = super::dial::new_action_id("pause");
    let request = crate::pbx::dial::PauseRequest {
        extension: ext.to_string(),
        interface: format!("PJSIP/{ext}"),
        paused,
        reason: reason.to_string(),
        queue: None,
        action_id: action_id.clone(),
    };
    match dialer.pause(request) {
        Ok(()) => {
            tracing::info!(extension = ext, paused, %action_id, link = %dialer.name(), "queue pause asked");
            serde_json::json!({ "action_id": action_id, "paused": paused })
        }
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}
