//! `GET /api/calls?from=&to=`: the call log; `POST /api/calls/{id}/resident`: the agent says
//! which member of a household is on the line.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::store::calls::CallRow;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/calls", get(list))
        .route("/api/calls/{id}/resident", post(set_resident))
}

#[derive(Deserialize)]
struct Range {
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

/// Accepts a date (`2021-05-10`) or an RFC 3339 timestamp; returns the stored text form.
fn bound(field: &'static str, v: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(v) = v.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let t = d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| ApiError::invalid(field, "bad date"))?;
        return Ok(Some(crate::store::ts(t)));
    }
    crate::store::parse_ts(v)
        .map(|t| Some(crate::store::ts(t)))
        .ok_or_else(|| ApiError::invalid(field, "must be YYYY-MM-DD or an RFC 3339 timestamp"))
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<Range>,
) -> Result<Json<Vec<CallRow>>, ApiError> {
    let from = bound("from", q.from.as_deref())?;
    let to = bound("to", q.to.as_deref())?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    Ok(Json(
        state
            .store
            .calls_between(from.as_deref(), to.as_deref(), limit)
            .await?,
    ))
}

#[derive(Deserialize)]
struct Pick {
    resident_id: i64,
}

async fn set_resident(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    JsonBody(pick): JsonBody<Pick>,
) -> Result<StatusCode, ApiError> {
    if state.store.resident(pick.resident_id).await?.is_none() {
        return Err(ApiError::invalid("resident_id", "no such resident"));
    }
    // The tracker may not have written the call row yet; wait for it briefly.
    for _ in 0..20 {
        if state.store.set_call_resident(&id, pick.resident_id).await? {
            state
                .store
                .audit(
                    Some(user.id),
                    "identify_caller",
                    Some(pick.resident_id),
                    &id,
                    &peer.to_string(),
                )
                .await?;
            return Ok(StatusCode::NO_CONTENT);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(ApiError::NotFound)
}
