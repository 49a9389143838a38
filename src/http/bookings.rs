//! コマと予約: `GET /api/slots?venue=&date=`, `GET /api/bookings?slot_id=`, and
//! `POST /api/bookings/{id}/move` (rebooking on the phone; dose 2 follows dose 1).
//!
//! From the agent's screen (src/store/rebook.rs): `GET /api/bookings/{id}/alternatives`,
//! `POST /api/bookings` (book), `POST /api/bookings/{id}/cancel`, `POST
//! /api/bookings/{id}/move-together` ("move us both"); each change is one transaction with
//! its audit line and an inquiry against the call named by `call_id`. For planners, `PATCH
//! /api/slots/{id}` (capacity, closed).
//!
//! A move that changed seat counts publishes one `slot_update` per changed slot on the hub's
//! `/ws/slots` (through [`super::slot_feed`]), so every screen showing those slots sees the new counts;
//! the last message about a slot shows its count after the last move.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::store::bookings::{MoveAnswer, MoveOutcome, Slot, SlotBooking};
use crate::store::rebook::{Alternatives, Change, ChangeBy};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// The most slots one answer carries (a day of a large venue is well under this).
const SLOT_LIMIT: i64 = 2000;

/// The longest Idempotency-Key accepted (a UUID is 36).
const KEY_MAX: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/slots", get(slots))
        .route("/api/bookings", get(bookings_in_slot).post(book))
        .route("/api/bookings/{id}/move", post(move_booking))
        .route("/api/bookings/{id}/alternatives", get(alternatives))
        .route("/api/bookings/{id}/cancel", post(cancel))
        .route("/api/bookings/{id}/move-together", post(move_together))
}

#[derive(Deserialize)]
struct SlotQuery {
    venue: Option<String>,
    date: Option<String>,
}

async fn slots(
    State(state): State<AppState>,
    Query(q): Query<SlotQuery>,
) -> Result<Json<Vec<Slot>>, ApiError> {
    // The role (BOOKINGS) was checked before this runs (`http::app`).
    let venue = match q.venue.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| ApiError::invalid("venue", "venue is a venue id (a number)"))?,
        ),
        None => None,
    };
    let date = match q.date.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => Some(
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid("date", "date is YYYY-MM-DD"))?,
        ),
        None => None,
    };
    Ok(Json(
        state
            .store
            .slots(venue, date, chrono::Utc::now(), SLOT_LIMIT)
            .await?,
    ))
}

#[derive(Deserialize)]
struct BookingQuery {
    slot_id: Option<String>,
}

async fn bookings_in_slot(
    State(state): State<AppState>,
    Query(q): Query<BookingQuery>,
) -> Result<Json<Vec<SlotBooking>>, ApiError> {
    let slot_id = q
        .slot_id
        .as_deref()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| ApiError::invalid("slot_id", "give slot_id, a slot's id"))?;
    if state.store.slot(slot_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(state.store.live_bookings_in(slot_id).await?))
}

#[derive(Deserialize)]
struct MoveBody {
    slot_id: i64,
    /// The call the agent is on: the change's inquiry is written against it.
    #[serde(default)]
    call_id: Option<String>,
    /// The resident will come without the bus: release the ride rather than require a seat.
    #[serde(default)]
    release_ride: bool,
}

/// The change's Idempotency-Key. Our screens send one with every click, so a resend after a
/// network failure is answered, not applied twice. A client that sends none (DESIGN's contract
/// names only the body) gets a key of its own: the change runs once, with nothing to replay.
/// A key that is sent must be usable: empty or over `KEY_MAX` bytes is 422.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(given) = headers.get("idempotency-key") else {
        return Ok(format!("server:{}", crate::store::users::new_token()?));
    };
    Ok(given
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= KEY_MAX)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "an Idempotency-Key must be 1 to 200 visible characters: one new value per \
                 change, the same value only when retrying that change",
            )
        })?
        .to_string())
}

fn call_id(given: &Option<String>) -> Option<&str> {
    given.as_deref().map(str::trim).filter(|c| !c.is_empty())
}

async fn move_booking(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Response, ApiError> {
    let change = Change::Move {
        booking_id: id,
        slot_id: body.slot_id,
        release_ride: body.release_ride,
    };
    run(&state, &change, &headers, user.id, &body.call_id, peer).await
}

#[derive(Deserialize)]
struct TogetherBody {
    slot_id: i64,
    /// The household member's booking that moves with this one.
    with_booking_id: i64,
    #[serde(default)]
    call_id: Option<String>,
}

async fn move_together(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TogetherBody>,
) -> Result<Response, ApiError> {
    let change = Change::Together {
        booking_id: id,
        with_booking_id: body.with_booking_id,
        slot_id: body.slot_id,
    };
    run(&state, &change, &headers, user.id, &body.call_id, peer).await
}

#[derive(Deserialize)]
struct CancelBody {
    #[serde(default)]
    call_id: Option<String>,
}

async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CancelBody>,
) -> Result<Response, ApiError> {
    let change = Change::Cancel { booking_id: id };
    run(&state, &change, &headers, user.id, &body.call_id, peer).await
}

#[derive(Deserialize)]
struct BookBody {
    resident_id: i64,
    dose: i64,
    slot_id: i64,
    #[serde(default)]
    call_id: Option<String>,
}

async fn book(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BookBody>,
) -> Result<Response, ApiError> {
    if !(1..=2).contains(&body.dose) {
        return Err(ApiError::invalid("dose", "dose is 1 or 2"));
    }
    let change = Change::Book {
        resident_id: body.resident_id,
        dose: body.dose,
        slot_id: body.slot_id,
    };
    run(&state, &change, &headers, user.id, &body.call_id, peer).await
}

/// Runs one change and answers it: 200 with the bookings and slots as they are now, or 409
/// with a sentence to read to the caller (nothing changed). Seat counts that changed go out
/// as `slot_update`.
async fn run(
    state: &AppState,
    change: &Change,
    headers: &HeaderMap,
    user_id: i64,
    call: &Option<String>,
    peer: SocketAddr,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let remote = peer.to_string();
    let by = ChangeBy {
        user_id,
        call_id: call_id(call),
        remote_addr: &remote,
    };
    let answer: MoveAnswer = state.store.change_booking(change, &key, by).await?;
    match answer.outcome {
        MoveOutcome::Moved {
            bookings,
            slots,
            rides,
        } => {
            if !answer.replayed && !slots.is_empty() {
                publish_slots(state, &slots);
            }
            Ok(Json(json!({
                "moved": true,
                "replayed": answer.replayed,
                "bookings": bookings,
                "slots": slots,
                "rides": rides,
            }))
            .into_response())
        }
        MoveOutcome::Refused(refusal) => Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "error": refusal.message,
                "reason": refusal.reason,
                "replayed": answer.replayed,
            })),
        )
            .into_response()),
    }
}

async fn alternatives(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Alternatives>, ApiError> {
    Ok(Json(
        state.store.alternatives(id, chrono::Utc::now()).await?,
    ))
}

/// Hands the slots a change altered to the seat-count feed, which publishes them as they are
/// now (see [`super::slot_feed`]); the change does not wait for it.
pub(crate) fn publish_slots(state: &AppState, changed: &[Slot]) {
    state.slot_feed.mark(changed.iter().map(|s| s.id));
}
