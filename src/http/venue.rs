//! 会場: reception and the venue's day.
//!
//! - `GET /api/venue/reception?venue=ID&scan=DIGITS` (or `&resident_id=ID`): a scanned 券番号
//!   (10 digits) or OCR line (18 digits, check digit verified) to the resident, today's
//!   booking or a warning (walk-in, wrong venue, wrong day), the check-in, the doses on
//!   record and the dose proposed next. Audited as a view.
//! - `POST /api/venue/checkins` `{resident_id, venue_id}`: checks in (once a day per venue;
//!   a second scan answers 200 with the first check-in).
//! - `POST /api/venue/questionnaires` `{resident_id, venue_id?}`: a 予診票 reissue, counted
//!   and audited; answers what the printed page shows.
//! - Vials: `GET /api/venue/vials?venue=&date=`, `POST /api/venue/vials` (receive),
//!   `POST /api/venue/vials/{id}/open`, `POST /api/venue/vials/{id}/discard` `{reason}`.
//! - `GET /api/venue/progress?date=&venue=`: every venue's day in numbers, with the reception
//!   forecast ([`crate::domain::forecast`]); `GET /ws/venues` pushes `venue_progress` whenever
//!   a venue's numbers change (a check-in, a dose, a vial, a standby entry).

use super::error::JsonBody;
use super::session::CurrentUser;
use super::vaccinations::{parse_date, parse_venue};
use super::{ApiError, AppState};
use crate::domain::dose::{self, GivenDose, LotNo};
use crate::domain::ocr::Scan;
use crate::domain::vaccine::{age_on, jst_date};
use crate::domain::{wareki, Product};
use crate::store::residents::Resident;
use crate::store::vaccinations::{Actor, VaccinationRow};
use crate::store::venue::{expected_of, CheckinRow, VenueProgress};
use crate::store::vials::{VialRow, MAX_RECEIVE};
use crate::store::StoreError;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// The hub topic of every venue's progress.
pub const VENUES_TOPIC: &str = "venues";

/// Reception, check-ins, 予診票, vials (the venue group).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/venue/reception", get(reception))
        .route("/api/venue/checkins", post(check_in))
        .route("/api/venue/questionnaires", post(questionnaire))
        .route("/api/venue/vials", post(receive_vials))
        .route("/api/venue/vials/{id}/open", post(open_vial))
        .route("/api/venue/vials/{id}/discard", post(discard_vial))
}

/// What supervisors watch too (the progress group).
pub fn progress_router() -> Router<AppState> {
    Router::new()
        .route("/api/venue/progress", get(progress))
        .route("/api/venue/vials", get(vials))
        .route("/ws/venues", get(upgrade))
}

#[derive(Deserialize)]
struct ReceptionQuery {
    venue: Option<String>,
    scan: Option<String>,
    resident_id: Option<String>,
}

/// What reception shows for one resident.
#[derive(Serialize)]
struct Reception {
    resident: Resident,
    venue_id: i64,
    date: String,
    /// `""` (booked here today), `walk_in`, `wrong_venue`, `wrong_day`.
    warning: &'static str,
    /// Today's booking here, or the booking the warning is about.
    booking: Option<crate::store::bookings::BookingRow>,
    checkin: Option<CheckinRow>,
    vaccinations: Vec<VaccinationRow>,
    proposed_dose: u8,
    /// 予診票 reissued so far.
    questionnaires: i64,
    /// The dose printed on a scanned OCR line, when one was scanned.
    ticket_dose: Option<u8>,
}

async fn reception(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<ReceptionQuery>,
) -> Result<Response, ApiError> {
    let venue_id = parse_venue(q.venue.as_deref())?
        .ok_or_else(|| ApiError::invalid("venue", "give venue, the venue's id"))?;
    let (found, ticket_dose, what) =
        if let Some(scan) = q.scan.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let scan = Scan::parse(scan).map_err(|e| ApiError::invalid("scan", e.to_string()))?;
            match scan {
                Scan::Ticket(t) => (
                    state.store.residents_by_ticket(&t).await?,
                    None,
                    format!("scan ticket={t}"),
                ),
                Scan::Line(line) => {
                    let mut found = state.store.residents_by_ticket(&line.ticket).await?;
                    found.retain(|r| r.municipality_code == line.municipality.as_str());
                    (
                        found,
                        Some(line.dose),
                        format!("scan line={}", line.digits()),
                    )
                }
            }
        } else if let Some(id) = q
            .resident_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let id = id
                .parse::<i64>()
                .map_err(|_| ApiError::invalid("resident_id", "resident_id is a number"))?;
            (
                state.store.resident(id).await?.into_iter().collect(),
                None,
                String::new(),
            )
        } else {
            return Err(ApiError::invalid(
                "scan",
                "scan a ticket (10 or 18 digits) or give resident_id",
            ));
        };
    let resident = match found.len() {
        0 => {
            return Ok((
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no resident has this ticket"})),
            )
                .into_response())
        }
        1 => found.into_iter().next().ok_or(ApiError::NotFound)?,
        _ => {
            // The same 券番号 in two municipalities: reception picks.
            state
                .store
                .audit(Some(user.id), "search", None, &what, &peer.to_string())
                .await?;
            return Ok(Json(json!({ "candidates": found })).into_response());
        }
    };
    state
        .store
        .audit(
            Some(user.id),
            "view",
            Some(resident.id),
            &what,
            &peer.to_string(),
        )
        .await?;
    let now = Utc::now();
    let today = jst_date(now);
    let live = state.store.live_bookings_of(resident.id).await?;
    let expected = expected_of(&live, venue_id, today);
    let vaccinations = state.store.vaccinations_of(resident.id).await?;
    let history: Vec<GivenDose> = vaccinations
        .iter()
        .filter(|v| v.superseded_at.is_none())
        .filter_map(|v| {
            Some(GivenDose {
                dose: u8::try_from(v.dose).ok()?,
                product: Product::parse(&v.product)?,
                given_on: NaiveDate::parse_from_str(&v.given_on, "%Y-%m-%d").ok()?,
            })
        })
        .collect();
    let body = Reception {
        checkin: state.store.checkin_of(resident.id, venue_id, today).await?,
        questionnaires: state.store.questionnaire_count(resident.id).await?,
        venue_id,
        date: today.format("%Y-%m-%d").to_string(),
        warning: expected.warning.code(),
        booking: expected.booking,
        proposed_dose: dose::proposed_dose(&history),
        vaccinations,
        ticket_dose,
        resident,
    };
    Ok(Json(body).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckinBody {
    resident_id: Option<i64>,
    #[serde(alias = "venue")]
    venue_id: Option<i64>,
}

async fn check_in(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<CheckinBody>,
) -> Result<Response, ApiError> {
    let resident_id = body
        .resident_id
        .ok_or_else(|| ApiError::invalid("resident_id", "give resident_id"))?;
    let venue_id = body
        .venue_id
        .ok_or_else(|| ApiError::invalid("venue_id", "give venue_id"))?;
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    let (row, new) = state
        .store
        .check_in(resident_id, venue_id, Utc::now(), actor)
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
    if new {
        publish_progress(&state, venue_id);
    }
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"checkin": row, "new": new}))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct QuestionnaireBody {
    resident_id: Option<i64>,
    #[serde(alias = "venue")]
    venue_id: Option<i64>,
}

/// Everything the printed 予診票 shows of the resident.
#[derive(Serialize)]
struct Questionnaire {
    resident: Resident,
    /// 昭和25年6月6日.
    birth_wareki: String,
    /// 1950年6月6日.
    birth_western: String,
    /// 満年齢 today.
    age: u32,
    /// The dose on record next.
    proposed_dose: u8,
    /// How many 予診票 have been reissued for this resident, this one included.
    reissue: i64,
    printed_on: String,
}

async fn questionnaire(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<QuestionnaireBody>,
) -> Result<Json<Questionnaire>, ApiError> {
    let resident_id = body
        .resident_id
        .ok_or_else(|| ApiError::invalid("resident_id", "give resident_id"))?;
    let resident = state
        .store
        .resident(resident_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let birth = NaiveDate::parse_from_str(&resident.birth_date, "%Y-%m-%d")
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored birth date: {e}")))?;
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    let reissue = state
        .store
        .count_questionnaire(resident_id, body.venue_id, actor)
        .await?;
    let history = state.store.vaccinations_of(resident_id).await?;
    let doses = history
        .iter()
        .filter(|v| v.superseded_at.is_none())
        .filter_map(|v| u8::try_from(v.dose).ok())
        .max()
        .unwrap_or(0);
    let today = jst_date(Utc::now());
    Ok(Json(Questionnaire {
        birth_wareki: wareki::format(birth),
        birth_western: birth.format("%Y年%-m月%-d日").to_string(),
        age: age_on(birth, today),
        proposed_dose: (doses + 1).min(dose::MAX_DOSE),
        reissue,
        printed_on: today.format("%Y-%m-%d").to_string(),
        resident,
    }))
}

#[derive(Deserialize)]
struct DayQuery {
    date: Option<String>,
    venue: Option<String>,
}

async fn progress(
    State(state): State<AppState>,
    Query(q): Query<DayQuery>,
) -> Result<Json<Vec<VenueProgress>>, ApiError> {
    let day = parse_date("date", q.date.as_deref())?;
    let venue = parse_venue(q.venue.as_deref())?;
    Ok(Json(
        state
            .store
            .progress(
                day,
                Utc::now(),
                venue,
                state.settings.reception_max_wait_min,
            )
            .await?,
    ))
}

async fn vials(
    State(state): State<AppState>,
    Query(q): Query<DayQuery>,
) -> Result<Json<Vec<VialRow>>, ApiError> {
    let day = parse_date("date", q.date.as_deref())?;
    let venue = parse_venue(q.venue.as_deref())?
        .ok_or_else(|| ApiError::invalid("venue", "give venue, the venue's id"))?;
    Ok(Json(state.store.vials_of(venue, day, Utc::now()).await?))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ReceiveBody {
    #[serde(alias = "venue")]
    venue_id: Option<i64>,
    product: Option<String>,
    lot: Option<String>,
    count: Option<i64>,
    doses_per_vial: Option<i64>,
    /// Pfizer: a low-dead-volume syringe draws 6 doses instead of 5.
    low_dead_volume: Option<bool>,
}

async fn receive_vials(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<ReceiveBody>,
) -> Result<Response, ApiError> {
    let venue_id = body
        .venue_id
        .ok_or_else(|| ApiError::invalid("venue_id", "give venue_id"))?;
    let product = Product::parse_field("product", body.product.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let lot = LotNo::parse(body.lot.as_deref().unwrap_or(""))
        .map_err(|why| ApiError::invalid("lot", why))?;
    let count = body.count.unwrap_or(1);
    if !(1..=MAX_RECEIVE).contains(&count) {
        return Err(ApiError::invalid(
            "count",
            format!("count is 1 to {MAX_RECEIVE} vials"),
        ));
    }
    let per = match body.doses_per_vial {
        Some(n) if (1..=30).contains(&n) => n,
        Some(_) => return Err(ApiError::invalid("doses_per_vial", "1 to 30")),
        None => i64::from(product.doses_per_vial(body.low_dead_volume.unwrap_or(false))),
    };
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    let ids = state
        .store
        .receive_vials(venue_id, product, &lot, count, per, Utc::now(), actor)
        .await
        .map_err(|e| match e {
            StoreError::Invalid { .. } => ApiError::invalid("venue_id", "no such venue"),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"ids": ids, "doses_per_vial": per})),
    )
        .into_response())
}

async fn open_vial(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    match state.store.open_vial(id, Utc::now(), actor).await? {
        Ok(vial) => {
            publish_progress(&state, vial.venue_id);
            Ok(Json(vial).into_response())
        }
        Err(why) => Err(ApiError::Conflict(why.to_string())),
    }
}

/// A reason typed by staff (discarding a vial, removing a standby entry): trimmed, 1–200
/// characters, or a 422 that says what is missing.
pub(crate) fn reason_given(reason: Option<&str>, missing: &str) -> Result<String, ApiError> {
    reason
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.chars().count() <= 200)
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid("reason", missing))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DiscardBody {
    reason: Option<String>,
}

async fn discard_vial(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<DiscardBody>,
) -> Result<Response, ApiError> {
    let reason = reason_given(body.reason.as_deref(), "say why the vial is discarded")?;
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    match state
        .store
        .discard_vial(id, &reason, Utc::now(), actor)
        .await?
    {
        Ok(vial) => {
            publish_progress(&state, vial.venue_id);
            Ok(Json(vial).into_response())
        }
        Err(why) => Err(ApiError::Conflict(why.to_string())),
    }
}

/// Publishes a venue's numbers now on [`VENUES_TOPIC`], read after the change committed.
/// Reads and publishes happen one at a time, in order, so the last message about a venue
/// shows its numbers after the last change. Runs beside the request, which does not wait.
pub fn publish_progress(state: &AppState, venue_id: i64) {
    static ORDER: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    let state = state.clone();
    tokio::spawn(async move {
        let _order = ORDER.get_or_init(Default::default).lock().await;
        if state.hub.listeners(VENUES_TOPIC) == 0 {
            return;
        }
        let now = Utc::now();
        let max_wait = state.settings.reception_max_wait_min;
        match state
            .store
            .progress(jst_date(now), now, Some(venue_id), max_wait)
            .await
        {
            Ok(all) => {
                if let Some(p) = all.into_iter().next() {
                    let msg = json!({"type": "venue_progress", "progress": p});
                    state.hub.publish(VENUES_TOPIC, &msg.to_string());
                }
            }
            Err(e) => tracing::warn!(error = %e, venue_id, "venue progress not published"),
        }
    });
}

async fn upgrade(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(q): Query<super::ws::WsQuery>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    Ok(super::ws::open(
        ws,
        state,
        user,
        VENUES_TOPIC.to_string(),
        q,
    ))
}

/// The venue day's routes for `/api/openapi.json` (merged into it by `ops`), one `json!` per
/// path.
pub fn openapi_paths() -> Vec<(String, serde_json::Value)> {
    let paths = [
        (
            "/api/vaccinations",
            json!({
            "post": {"summary": "record a dose: {resident_id, dose (1-9), product (pfizer, moderna, astrazeneca), lot (A-Z0-9, ≤20), vaccinator (≤20), given_at (RFC 3339; default now), venue_id (default: the venue of the dose's booking), injection_site (left_arm, right_arm, left_thigh, right_thigh)}; the booking of the dose becomes vaccinated; audited",
                "responses": {"201": {"description": "the record"},
                              "409": {"description": "refused and nothing changed: `error` is a sentence, `reason` one of already_recorded, previous_dose_missing, too_early, different_product, too_young, lot_not_opened, lot_other_product, vial_expired, vials_used_up, vial_discarded"},
                              "422": {"description": "a field is wrong (`field` names it), or no such resident or venue"}}},
            "get": {"summary": "the current records of a day (JST), all venues or one",
                "parameters": [{"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}},
                               {"name": "venue", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "records in the order recorded"}, "422": {"description": "bad date or venue"}}}}),
        ),
        (
            "/api/vaccinations/{id}/correction",
            json!({"post": {"summary": "correct a record: the dose's fields as for recording, and `reason`; a new record names the one it corrects, which is kept as superseded; audited",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
            "responses": {"201": {"description": "the new record"}, "404": {"description": "no such record"},
                          "409": {"description": "refused (already_corrected, or a rule as for recording); nothing changed"},
                          "422": {"description": "a field is wrong; `field` names it"}}}}),
        ),
        (
            "/api/venue/reception",
            json!({"get": {"summary": "a scanned ticket (scan: 10-digit 券番号 or 18-digit OCR line, check digit verified) or resident_id, at venue: the resident, today's booking or a warning (walk_in, wrong_venue, wrong_day), the check-in, doses on record, the proposed dose; {candidates} when a 券番号 matches several; audited",
            "parameters": [{"name": "venue", "in": "query", "required": true, "schema": {"type": "integer"}},
                           {"name": "scan", "in": "query", "schema": {"type": "string"}},
                           {"name": "resident_id", "in": "query", "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "what reception shows"}, "404": {"description": "no resident has this ticket"},
                          "422": {"description": "a scan that is no ticket (the check digit named); `field` names it"}}}}),
        ),
        (
            "/api/venue/checkins",
            json!({"post": {"summary": "check in {resident_id, venue_id}: once a day per venue; today's booking here becomes checked_in; audited",
            "responses": {"201": {"description": "checked in"}, "200": {"description": "already checked in today: the first check-in"},
                          "422": {"description": "no such resident or venue; `field` names it"}}}}),
        ),
        (
            "/api/venue/questionnaires",
            json!({"post": {"summary": "reissue a 予診票 {resident_id, venue_id?}: counted and audited; answers the page's data (name, kana, address, birth date in 和暦 and 西暦, age, ticket)",
            "responses": {"200": {"description": "the printed page's data"}, "404": {"description": "no such resident"}}}}),
        ),
        (
            "/api/venue/vials",
            json!({
            "get": {"summary": "a venue's vials on a day: unopened, and opened that day, with doses drawn and state (unopened, open, expired, empty, discarded)",
                "parameters": [{"name": "venue", "in": "query", "required": true, "schema": {"type": "integer"}},
                               {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}}],
                "responses": {"200": {"description": "vials"}, "422": {"description": "bad venue or date"}}},
            "post": {"summary": "receive vials {venue_id, product, lot, count, doses_per_vial? | low_dead_volume?}; audited",
                "responses": {"201": {"description": "their ids"}, "422": {"description": "a field is wrong; `field` names it"}}}}),
        ),
        (
            "/api/venue/vials/{id}/open",
            json!({"post": {"summary": "open (dilute) a vial now: its 6 hours start; audited",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "the vial"}, "404": {"description": "no such vial"}, "409": {"description": "open already, or discarded"}}}}),
        ),
        (
            "/api/venue/vials/{id}/discard",
            json!({"post": {"summary": "discard a vial {reason}; audited",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "the vial"}, "404": {"description": "no such vial"}, "409": {"description": "discarded already"},
                          "422": {"description": "reason missing"}}}}),
        ),
        (
            "/api/venue/progress",
            json!({"get": {"summary": "every venue's day (JST), or one venue's: booked, checked_in, vaccinated, no_show, expected, waiting, doses_left, and forecast (arrivals per 15 minutes, reception's throughput per minute over the last 30, the forecast queue and wait per quarter, warning and warn_from when the wait would exceed MADOGUCHI_RECEPTION_MAX_WAIT_MIN)",
            "parameters": [{"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}},
                           {"name": "venue", "in": "query", "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "per venue"}, "422": {"description": "bad date or venue"}}}}),
        ),
        (
            "/ws/venues",
            json!({"get": {"summary": "WebSocket of the venues' day: hello, then venue_progress {progress} whenever a venue's numbers change; ?since=SEQ&epoch=E resumes",
            "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer"}},
                           {"name": "epoch", "in": "query", "schema": {"type": "string"}}],
            "responses": {"101": {"description": "switching protocols"}}}}),
        ),
    ];
    paths
        .into_iter()
        .chain(super::exports::openapi_paths())
        .map(|(p, v)| (p.to_string(), v))
        .collect()
}
