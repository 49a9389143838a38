//! `GET /api/queues`: the live queue for supervisors (and agents' wall screen): per queue who
//! waits and how long (and who they probably are), today's and the last hour's figures
//! (offered, answered, abandoned with short abandons apart, timeouts, service level, ASA, AHT,
//! abandon rate, longest wait now), the same over all queues; and every agent with their
//! phone's state, their composite state (idle, ringing, talking, wrap-up, paused with its
//! reason, logged out) with time in state, their availability (ready, break with its reason,
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
    Ok(Json(snapshot(&state).await?))
}

/// The board as `/api/queues` and the supervisors' topic show it.
pub(crate) async fn snapshot(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let users = state.store.users_with_extension().await?;
    Ok(snapshot_with(state, &users, chrono::Utc::now()))
}

pub(crate) fn snapshot_with(
    state: &AppState,
    users: &[crate::store::users::User],
    now: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let with_ext: Vec<_> = users
        .iter()
        .filter_map(|u| u.extension.as_ref().map(|e| (u, e)))
        .map(|(u, ext)| (u, ext, state.hub.listeners(&agent_topic(ext)) > 0))
        .collect();
    // One lock for the whole snapshot: agents and figures of the same moment.
    let mut board = state.board.frozen();
    let mut agents: Vec<serde_json::Value> = with_ext
        .into_iter()
        .map(|(u, ext, connected)| {
            json!({
                "user_id": u.id,
                "username": u.username,
                "display_name": u.display_name,
                "extension": ext,
                "state": board.agent_state(ext),
                "live": board.agent_live(ext, now),
                "availability": board.availability(ext, now),
                "connected": connected,
            })
        })
        .collect();
    // Queue members the PBX lists that have no login here still show.
    for ext in board.member_extensions() {
        if users.iter().any(|u| u.extension.as_deref() == Some(&ext)) {
            continue;
        }
        agents.push(json!({
            "user_id": null,
            "username": null,
            "display_name": null,
            "extension": ext,
            "state": board.agent_state(&ext),
            "live": board.agent_live(&ext, now),
            "availability": board.availability(&ext, now),
            "connected": false,
        }));
    }
    let (today, last_hour) = board.overall(now);
    let t = board.thresholds();
    let (queues, slices) = (board.queues(now), board.slices(now));
    drop(board);
    json!({
        "queues": queues,
        "overall": {"today": today, "last_hour": last_hour},
        "agents": agents,
        "slices": slices,
        "service_level_threshold_s": t.service_level_s,
        "short_abandon_threshold_s": t.short_abandon_s,
        "at": crate::store::ts(now),
    })
}
