//! `POST /api/dial` `{number, resident_id?}`: click-to-dial from the agent's own phone. The
//! server asks the first PBX link that can dial (`pbx::dial::Dialer`) to ring the logged-in
//! user's extension and then call the number, and answers 202 `{action_id}` at once; the PBX's
//! final word comes to that agent's screens on `/ws` as
//! `{"type":"dial_result","action_id","ok","reason"}`.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::pbx::dial::{valid_number, DialError, DialOutcome, DialRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/dial", post(dial))
}

/// The routes of this module as `/api/openapi.json` lists them.
pub fn openapi_paths() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("/api/dial".into(), json!({"post": {"summary": "click-to-dial: ring the logged-in user's phone, then call {number} (digits and +, at most 20; resident_id optional); the outcome comes on /ws as dial_result {action_id, ok, reason}",
        "responses": {"202": {"description": "{action_id}: asked of the PBX"},
                      "409": {"description": "the user has no extension"},
                      "422": {"description": "bad number or resident_id; `field` names it"},
                      "503": {"description": "no PBX link that can dial is up"}}}}));
    m
}

#[derive(Deserialize)]
struct DialBody {
    number: String,
    #[serde(default)]
    resident_id: Option<i64>,
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
    let extension = user
        .extension
        .as_deref()
        .ok_or_else(|| ApiError::Conflict("you have no PBX extension to dial from".into()))?;
    let Some(dialer) = state.dialers.iter().find(|d| d.ready()) else {
        return Ok(unavailable(DialError::Unavailable));
    };
    let action_id = new_action_id();
    let request = DialRequest {
        extension: extension.to_string(),
        number: number.to_string(),
        context: state.settings.dial_context.clone(),
        caller_id: format!("\"{number}\" <{number}>"),
        action_id: action_id.clone(),
    };
    if let Err(e) = dialer.originate(request) {
        return Ok(unavailable(e));
    }
    tracing::info!(agent = %user.username, extension, link = %dialer.name(), %action_id,
        resident_id = ?body.resident_id, "click-to-dial asked");
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

/// `dial-` and 16 random hex digits.
fn new_action_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("dial-{hex}")
}

/// Sends each dial outcome to its agent's screens, until the links stop sending them.
pub async fn forward_outcomes(
    hub: crate::hub::Hub,
    mut outcomes: tokio::sync::mpsc::Receiver<DialOutcome>,
) {
    while let Some(o) = outcomes.recv().await {
        tracing::info!(extension = %o.extension, action_id = %o.action_id, ok = o.ok, reason = %o.reason, "dial result");
        let message = json!({
            "type": "dial_result",
            "action_id": o.action_id,
            "ok": o.ok,
            "reason": o.reason,
        });
        hub.publish(&crate::hub::agent_topic(&o.extension), &message.to_string());
    }
}
