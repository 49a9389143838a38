//! 接種記録: `POST /api/vaccinations` records a dose (409 with `reason` and a sentence when a
//! rule refuses it, and nothing changes), `POST /api/vaccinations/{id}/correction` corrects a
//! record with a new one, `GET /api/vaccinations?date=&venue=` lists a day's records.
//!
//! Every recorded dose publishes the venue's progress on the hub ([`super::venue`]).

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::domain::dose::{self, InjectionSite, LotNo, MAX_DOSE};
use crate::domain::Product;
use crate::store::bookings::Refusal;
use crate::store::vaccinations::{Actor, NewVaccination, VaccinationRow};
use crate::store::StoreError;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// How far ahead of the server's clock a dose's time may be (a screen's clock a little fast).
const CLOCK_SLACK_S: i64 = 300;

/// Recording and correcting (the venue group).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/vaccinations", post(record))
        .route("/api/vaccinations/{id}/correction", post(correct))
}

/// Reading a day's records (the progress group).
pub fn read_router() -> Router<AppState> {
    Router::new().route("/api/vaccinations", get(list))
}

/// The body of a dose, as `POST /api/vaccinations` takes it (DESIGN §4), with the venue and
/// the injection site besides.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct DoseBody {
    resident_id: Option<i64>,
    dose: Option<i64>,
    product: Option<String>,
    lot: Option<String>,
    vaccinator: Option<String>,
    given_at: Option<String>,
    #[serde(alias = "venue")]
    venue_id: Option<i64>,
    #[serde(alias = "site")]
    injection_site: Option<String>,
    /// A correction's reason.
    reason: Option<String>,
}

/// The body's values, checked; 422 names the first field at fault.
fn parse_dose(body: &DoseBody, resident_id: Option<i64>) -> Result<NewVaccination, ApiError> {
    let resident_id = resident_id
        .or(body.resident_id)
        .ok_or_else(|| ApiError::invalid("resident_id", "give resident_id"))?;
    let dose = body
        .dose
        .filter(|d| (1..=i64::from(MAX_DOSE)).contains(d))
        .ok_or_else(|| ApiError::invalid("dose", format!("dose is 1 to {MAX_DOSE}")))?;
    let product = Product::parse_field("product", body.product.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let lot = LotNo::parse(body.lot.as_deref().unwrap_or(""))
        .map_err(|why| ApiError::invalid("lot", why))?;
    let vaccinator = dose::vaccinator(body.vaccinator.as_deref().unwrap_or(""))
        .map_err(|why| ApiError::invalid("vaccinator", why))?;
    let injection_site = InjectionSite::parse_field(
        "injection_site",
        body.injection_site.as_deref().unwrap_or(""),
    )
    .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let now = Utc::now();
    let given_at = match body
        .given_at
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => now,
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map_err(|_| {
                ApiError::invalid("given_at", "given_at is a time with its offset (RFC 3339)")
            })?
            .with_timezone(&Utc),
    };
    if given_at > now + chrono::Duration::seconds(CLOCK_SLACK_S) {
        return Err(ApiError::invalid(
            "given_at",
            "given_at is in the future; record a dose once it is given",
        ));
    }
    Ok(NewVaccination {
        resident_id,
        dose: dose as u8,
        product,
        lot,
        vaccinator,
        injection_site,
        given_at,
        venue_id: body.venue_id,
    })
}

fn answer(state: &AppState, got: Result<VaccinationRow, Refusal>) -> Result<Response, ApiError> {
    match got {
        Ok(row) => {
            super::venue::publish_progress(state, row.venue_id);
            Ok((StatusCode::CREATED, Json(row)).into_response())
        }
        Err(r) => Ok((
            StatusCode::CONFLICT,
            Json(json!({"error": r.message, "reason": r.reason})),
        )
            .into_response()),
    }
}

async fn record(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<DoseBody>,
) -> Result<Response, ApiError> {
    let v = parse_dose(&body, None)?;
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    let got = state
        .store
        .record_vaccination(&v, actor)
        .await
        .map_err(unknown)?;
    answer(&state, got)
}

async fn correct(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<DoseBody>,
) -> Result<Response, ApiError> {
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.chars().count() <= 200)
        .ok_or_else(|| {
            ApiError::invalid(
                "reason",
                "say why the record is corrected (up to 200 characters)",
            )
        })?
        .to_string();
    let old = state
        .store
        .vaccination(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut v = parse_dose(&body, Some(old.resident_id))?;
    // The corrected record stays at its venue unless the correction says otherwise.
    v.venue_id = v.venue_id.or(Some(old.venue_id));
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    let got = state
        .store
        .correct_vaccination(id, &v, &reason, actor)
        .await
        .map_err(unknown)?;
    if got.as_ref().is_ok_and(|row| row.venue_id != old.venue_id) {
        super::venue::publish_progress(&state, old.venue_id);
    }
    answer(&state, got)
}

/// A resident or venue that does not exist, said plainly.
fn unknown(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid {
            field: "resident_id",
        } => ApiError::invalid("resident_id", "no such resident"),
        StoreError::Invalid { field: "venue_id" } => ApiError::invalid(
            "venue_id",
            "give venue_id: the venue is unknown, or the resident has no booking of this dose \
             to take it from",
        ),
        other => other.into(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    date: Option<String>,
    venue: Option<String>,
}

pub(crate) fn parse_date(field: &'static str, d: Option<&str>) -> Result<NaiveDate, ApiError> {
    match d.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(field, format!("{field} is YYYY-MM-DD"))),
        None => Ok(crate::domain::vaccine::jst_date(Utc::now())),
    }
}

pub(crate) fn parse_venue(v: Option<&str>) -> Result<Option<i64>, ApiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => Ok(Some(v.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(
            || ApiError::invalid("venue", "venue is a venue id (a number)"),
        )?)),
        None => Ok(None),
    }
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<VaccinationRow>>, ApiError> {
    let day = parse_date("date", q.date.as_deref())?;
    let venue = parse_venue(q.venue.as_deref())?;
    Ok(Json(state.store.vaccinations_on(day, venue).await?))
}
