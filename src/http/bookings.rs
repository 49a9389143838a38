//! コマと予約: `GET /api/slots?venue=&date=`, `GET /api/bookings?slot_id=`, and
//! `POST /api/bookings/{id}/move` (rebooking on the phone; dose 2 follows dose 1).
//!
//! A move that changed seat counts publishes one `slot_update` per changed slot on the hub's
//! [`SLOTS_TOPIC`] (`/ws/slots`), so every screen showing those slots sees the new counts;
//! the last message about a slot shows its count after the last move.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::hub::SLOTS_TOPIC;
use crate::store::bookings::{MoveOutcome, Slot, SlotBooking};
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
        .route("/api/bookings", get(bookings_in_slot))
        .route("/api/bookings/{id}/move", post(move_booking))
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
    /// The resident will come without the bus: release the ride rather than require a seat.
    #[serde(default)]
    release_ride: bool,
}

async fn move_booking(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Response, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= KEY_MAX)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "send an Idempotency-Key header: one new value per move, the same value only \
                 when retrying that move",
            )
        })?
        .to_string();
    let opts = crate::store::bookings::MoveOptions {
        release_ride: body.release_ride,
    };
    let answer = state
        .store
        .move_booking_with(id, body.slot_id, &key, opts)
        .await?;
    match answer.outcome {
        MoveOutcome::Moved {
            bookings,
            slots,
            rides,
        } => {
            if !answer.replayed && !slots.is_empty() {
                publish_slots(&state, &slots).await;
                let detail = format!(
                    "booking {id} to slot {}; {}",
                    body.slot_id,
                    bookings
                        .iter()
                        .map(|b| format!("dose {} in slot {}", b.dose, b.slot_id))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                state
                    .store
                    .audit(
                        Some(user.id),
                        "move_booking",
                        None,
                        &detail,
                        &peer.to_string(),
                    )
                    .await?;
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

/// Publishes the current state of the slots a move changed, read after the move committed and
/// under [`AppState::slot_feed`], so messages never go out older than one already sent.
pub(crate) async fn publish_slots(state: &AppState, changed: &[Slot]) {
    let _order = state.slot_feed.lock().await;
    for slot in changed {
        let now = match state.store.slot(slot.id).await {
            Ok(Some(now)) => now,
            // The move's own view is the best left; the next update corrects it.
            Ok(None) | Err(_) => slot.clone(),
        };
        let msg = json!({"type": "slot_update", "slot": now});
        state.hub.publish(SLOTS_TOPIC, &msg.to_string());
    }
}
