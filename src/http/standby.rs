//! 待機リスト over HTTP.
//!
//! - `POST /api/standby` `{resident_id, venue_id, asked_on?, phone?, note?}` (the phones and
//!   planners): a resident who asked for an earlier date goes on standby at a venue. 201 with
//!   the entry; 409 `already_on_standby` or `no_dose_to_book`.
//! - `GET /api/venue/standby?venue=&date=` (who watches venues): the venue's list for the day,
//!   nearest first, beside the doses left in open vials and the residents still expected.
//! - `POST /api/venue/standby/{id}/take` `{slot_id?}` (venue staff): books the resident into
//!   today's slot (the given one, or the venue's slot with a free seat nearest now) through
//!   the booking path and closes the entry. 409 with the booking's `reason` when refused.
//! - `POST /api/venue/standby/{id}/remove` `{reason}` (venue staff).

use super::error::JsonBody;
use super::session::CurrentUser;
use super::vaccinations::{parse_date, parse_venue};
use super::{ApiError, AppState};
use crate::domain::vaccine::jst_date;
use crate::store::standby::{StandbyRefusal, StandbyRow};
use crate::store::vaccinations::Actor;
use crate::store::StoreError;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// Putting a resident on standby (the bookings group: agents on the phone).
pub fn router() -> Router<AppState> {
    Router::new().route("/api/standby", post(add))
}

/// Reading the list (who watches venues).
pub fn read_router() -> Router<AppState> {
    Router::new().route("/api/venue/standby", get(list))
}

/// Taking from and removing from the list (venue staff).
pub fn venue_router() -> Router<AppState> {
    Router::new()
        .route("/api/venue/standby/{id}/take", post(take))
        .route("/api/venue/standby/{id}/remove", post(remove))
}

fn refused(r: StandbyRefusal) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"error": r.to_string(), "reason": r.code()})),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AddBody {
    resident_id: Option<i64>,
    #[serde(alias = "venue")]
    venue_id: Option<i64>,
    asked_on: Option<String>,
    phone: Option<String>,
    note: Option<String>,
}

async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<AddBody>,
) -> Result<Response, ApiError> {
    let resident_id = body
        .resident_id
        .ok_or_else(|| ApiError::invalid("resident_id", "give resident_id"))?;
    let venue_id = body
        .venue_id
        .ok_or_else(|| ApiError::invalid("venue_id", "give venue_id"))?;
    let asked_on = parse_date("asked_on", body.asked_on.as_deref())?;
    let today = jst_date(Utc::now());
    if asked_on < today {
        return Err(ApiError::invalid(
            "asked_on",
            "asked_on is today or later (the earliest date the resident can come)",
        ));
    }
    let phone = body.phone.as_deref().map(str::trim);
    if phone.is_some_and(|p| p.chars().count() > 30) {
        return Err(ApiError::invalid(
            "phone",
            "a phone number is at most 30 characters",
        ));
    }
    let note = body.note.as_deref().unwrap_or("").trim().to_string();
    if note.chars().count() > 200 {
        return Err(ApiError::invalid(
            "note",
            "a note is at most 200 characters",
        ));
    }
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    let answer = state
        .store
        .add_standby(resident_id, venue_id, asked_on, phone, &note, actor)
        .await
        .map_err(|e| match e {
            StoreError::Invalid { field } => ApiError::invalid(
                field,
                if field == "venue_id" {
                    "no such venue"
                } else {
                    "no such resident"
                },
            ),
            other => other.into(),
        })?;
    match answer {
        Ok(row) => {
            super::venue::publish_progress(&state, venue_id);
            Ok((StatusCode::CREATED, Json(row)).into_response())
        }
        Err(r) => Ok(refused(r)),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    venue: Option<String>,
    date: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let venue = parse_venue(q.venue.as_deref())?
        .ok_or_else(|| ApiError::invalid("venue", "give venue, the venue's id"))?;
    let day = parse_date("date", q.date.as_deref())?;
    let entries: Vec<StandbyRow> = state.store.standby_list(venue, day).await?;
    let now = Utc::now();
    let progress = state
        .store
        .progress(day, now, Some(venue), state.settings.reception_max_wait_min)
        .await?;
    let (doses_left, expected) = progress
        .first()
        .map_or((0, 0), |p| (p.doses_left, p.expected));
    Ok(Json(json!({
        "venue_id": venue,
        "date": day.format("%Y-%m-%d").to_string(),
        "doses_left": doses_left,
        "expected": expected,
        // Doses that would go to waste if everyone expected came and nobody else: whom to call.
        "spare": (doses_left - expected).max(0),
        "entries": entries,
    })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TakeBody {
    slot_id: Option<i64>,
}

/// Today's slot at the venue with a free seat whose time is nearest now (one under way first).
async fn slot_for_now(state: &AppState, venue_id: i64) -> Result<Option<i64>, ApiError> {
    let now = Utc::now();
    let today: NaiveDate = jst_date(now);
    let slots = state
        .store
        .slots(Some(venue_id), Some(today), now, 500)
        .await?;
    Ok(slots
        .iter()
        .filter(|s| !s.closed && s.booked < s.capacity)
        .filter(|s| s.ends_at >= crate::store::ts(now))
        .min_by_key(|s| {
            crate::store::parse_ts(&s.starts_at).map_or(i64::MAX, |t| (t - now).num_seconds().abs())
        })
        .map(|s| s.id))
}

async fn take(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<TakeBody>,
) -> Result<Response, ApiError> {
    let entry = state
        .store
        .standby_entry(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let slot_id = match body.slot_id {
        Some(s) => s,
        None => slot_for_now(&state, entry.venue_id).await?.ok_or_else(|| {
            ApiError::Conflict(
                "no slot at this venue today has a free seat; add seats to a slot first".into(),
            )
        })?,
    };
    // The seat a moved booking gives back is published with the one it takes.
    let old_slot = state
        .store
        .bookings_of(entry.resident_id)
        .await?
        .into_iter()
        .find(|b| b.dose == entry.dose && matches!(b.status.as_str(), "booked" | "checked_in"))
        .map(|b| b.slot_id);
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    match state
        .store
        .take_standby(id, slot_id, actor)
        .await
        .map_err(|e| match e {
            StoreError::Invalid { field } => ApiError::invalid(field, "no such slot"),
            other => other.into(),
        })? {
        Ok(row) => {
            state.slot_feed.mark(old_slot.into_iter().chain([slot_id]));
            super::venue::publish_progress(&state, entry.venue_id);
            Ok(Json(json!({"entry": row, "slot_id": slot_id})).into_response())
        }
        Err(r) => Ok(refused(r)),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RemoveBody {
    reason: Option<String>,
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<RemoveBody>,
) -> Result<Response, ApiError> {
    let reason =
        super::venue::reason_given(body.reason.as_deref(), "say why the entry is removed")?;
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    match state.store.remove_standby(id, &reason, actor).await? {
        Ok(row) => Ok(Json(row).into_response()),
        Err(r) => Ok(refused(r)),
    }
}

/// The standby routes for `/api/openapi.json`.
pub fn openapi_paths() -> Vec<(String, serde_json::Value)> {
    let paths = [
        (
            "/api/standby",
            json!({"post": {"summary": "put a resident who asked for an earlier date on standby at a venue {resident_id, venue_id, asked_on (YYYY-MM-DD, default today: the earliest date they can come), phone? (default: their first number), note?}; the dose is that of their earliest live booking, else their next; audited",
            "responses": {"201": {"description": "the entry"},
                          "409": {"description": "refused, nothing changed: `reason` already_on_standby or no_dose_to_book"},
                          "422": {"description": "a field is wrong or no such resident or venue; `field` names it"}}}}),
        ),
        (
            "/api/venue/standby",
            json!({"get": {"summary": "a venue's standby list for a day (residents of the venue's 地区 first, then by the date asked), with doses_left in open vials, expected (booked, not checked in) and spare (doses_left − expected)",
            "parameters": [{"name": "venue", "in": "query", "required": true, "schema": {"type": "integer"}},
                           {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}}],
            "responses": {"200": {"description": "{venue_id, date, doses_left, expected, spare, entries}"}, "422": {"description": "bad venue or date"}}}}),
        ),
        (
            "/api/venue/standby/{id}/take",
            json!({"post": {"summary": "book the resident into today's slot {slot_id? (default: the venue's slot with a free seat nearest now)}: their live booking of the dose moves there, else a new booking; the entry closes; audited",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "{entry, slot_id}"}, "404": {"description": "no such entry"},
                          "409": {"description": "refused, nothing changed: `reason` closed, or the booking rule's reason (slot_full, too_early, …); or no slot with a free seat today"},
                          "422": {"description": "no such slot"}}}}),
        ),
        (
            "/api/venue/standby/{id}/remove",
            json!({"post": {"summary": "remove an entry from the list {reason}; audited",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "the entry"}, "404": {"description": "no such entry"},
                          "409": {"description": "already taken or removed"}, "422": {"description": "reason missing"}}}}),
        ),
    ];
    paths.into_iter().map(|(p, v)| (p.to_string(), v)).collect()
}
