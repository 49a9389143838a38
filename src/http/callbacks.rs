//! 折り返し (callbacks): `GET /api/callbacks` lists the callers to call back (open and taken,
//! from yesterday on; `?status=done|cleared` for the finished ones), `POST
//! /api/callbacks/{id}/take` takes one for the logged-in agent, `POST /api/callbacks/{id}/done`
//! marks it done with `{outcome, note}`. Entries are created and cleared by the server as calls
//! end (`calls::callbacks`).

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::store::callbacks::{CallbackRefused, CallbackRow, OUTCOMES};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

const NOTE_MAX_CHARS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/callbacks", get(list))
        .route("/api/callbacks/{id}/take", post(take))
        .route("/api/callbacks/{id}/done", post(done))
}

/// The routes of this module as `/api/openapi.json` lists them.
pub fn openapi_paths() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("/api/callbacks".into(), json!({"get": {"summary": "callers to call back (one per number per day: abandoned, timed out, not answered, busy), open and taken, from yesterday on; ?status=done|cleared for finished ones",
        "parameters": [{"name": "status", "in": "query", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "OK"}}}}));
    m.insert("/api/callbacks/{id}/take".into(), json!({"post": {"summary": "take a callback (409 when another agent has it or it is finished)",
        "responses": {"200": {"description": "taken"}, "404": {"description": "no such callback"}, "409": {"description": "not open"}}}}));
    m.insert("/api/callbacks/{id}/done".into(), json!({"post": {"summary": "mark a callback done: {outcome: reached|no_answer|voicemail|wrong_number|other, note}",
        "responses": {"200": {"description": "done"}, "404": {"description": "no such callback"}, "409": {"description": "not open"}, "422": {"description": "bad outcome or note"}}}}));
    m
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<CallbackRow>>, ApiError> {
    let status = match q.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s @ ("open" | "taken" | "done" | "cleared")) => Some(s),
        Some(_) => {
            return Err(ApiError::invalid(
                "status",
                "one of open, taken, done, cleared",
            ))
        }
    };
    let yesterday = crate::calls::Board::day_start(chrono::Utc::now()) + chrono::Duration::hours(9)
        - chrono::Duration::days(1);
    let since = yesterday.date_naive().to_string();
    Ok(Json(state.store.callbacks(status, &since, 1000).await?))
}

fn answer(r: Result<CallbackRow, CallbackRefused>) -> Result<Json<CallbackRow>, ApiError> {
    match r {
        Ok(row) => Ok(Json(row)),
        Err(CallbackRefused::NotFound) => Err(ApiError::NotFound),
        Err(CallbackRefused::NotOpen(status)) => Err(ApiError::Conflict(format!(
            "this callback is {status}: another agent has it, or it is finished"
        ))),
    }
}

async fn take(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<CallbackRow>, ApiError> {
    let at = crate::store::ts(chrono::Utc::now());
    answer(state.store.take_callback(id, user.id, &at).await?)
}

#[derive(Deserialize)]
struct Done {
    outcome: Option<String>,
    note: Option<String>,
}

async fn done(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<Done>,
) -> Result<Json<CallbackRow>, ApiError> {
    let outcome = body
        .outcome
        .as_deref()
        .map(str::trim)
        .filter(|o| OUTCOMES.contains(o))
        .ok_or_else(|| ApiError::invalid("outcome", OUTCOMES.join(", ")))?;
    let note = body.note.unwrap_or_default();
    let note = note.trim();
    if note.chars().count() > NOTE_MAX_CHARS {
        return Err(ApiError::invalid(
            "note",
            format!("at most {NOTE_MAX_CHARS} characters"),
        ));
    }
    let at = crate::store::ts(chrono::Utc::now());
    answer(
        state
            .store
            .finish_callback(id, user.id, outcome, note, &at)
            .await?,
    )
}
