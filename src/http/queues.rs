//! `GET /api/queues`: the live queue for supervisors (and agents' wall screen): per queue who
//! waits and how long, today's offered / answered / abandoned, service level, ASA and AHT; and
//! every agent with their phone's state, their availability (ready, break with its reason,
//! after-call work, and since when) and whether their screen is connected.

use super::{ApiError, AppState};
use crate::hub::agent_topic;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/queues", get(queues))
}

async fn queues(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = chrono::Utc::now();
    let users = state.store.users().await?;
    let agents: Vec<_> = users
        .iter()
        .filter_map(|u| u.extension.as_ref().map(|e| (u, e)))
        .map(|(u, ext)| {
            json!({
                "user_id": u.id,
                "username": u.username,
                "display_name": u.display_name,
                "extension": ext,
                "state": state.board.agent_state(ext),
                "availability": state.board.availability(ext, now),
                "connected": state.hub.listeners(&agent_topic(ext)) > 0,
            })
        })
        .collect();
    Ok(Json(json!({
        "queues": state.board.queues(now),
        "agents": agents,
        "service_level_threshold_s": crate::calls::board::SERVICE_LEVEL_S,
    })))
}
