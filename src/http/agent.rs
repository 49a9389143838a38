//! `GET` / `POST /api/agent/state`: the agent's own availability — ready (受付可), on a break
//! (休憩, with a reason) or in after-call work (後処理, ends by itself after
//! `MADOGUCHI_ACW_SECONDS`). Kept by the server on the queue board beside the phone's state,
//! so supervisors see it in `/api/queues`; after-call work also starts by itself when a call
//! the agent answered ends. A change is also sent to the agent's screens (`agent_state` on
//! `/ws`), and every `hello` carries the state, so each open tab shows the same.

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
) -> Result<Json<AvailabilityView>, ApiError> {
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
    let view = state
        .board
        .set_availability(ext, wanted, reason, chrono::Utc::now());
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
    Ok(Json(view))
}
