//! `GET /api/residents?phone=|ticket=|kana=&birth_date=` and `GET /api/residents/{id}`.
//! Every view of a resident is written to the audit trail. `POST /api/residents/{id}/phones`:
//! the agent keeps the number a caller rang from, so the next call from it pops that resident.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::domain::{BirthDate, Era, Kana, PhoneKind, PhoneNumber, TicketNo};
use crate::store::{Store, StoreError};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/residents", get(search))
        .route("/api/residents/{id}", get(one))
}

/// The changes the call center makes to a resident's record (the phones role group).
pub fn phones_router() -> Router<AppState> {
    Router::new().route("/api/residents/{id}/phones", post(add_phone))
}

#[derive(Deserialize)]
struct Search {
    phone: Option<String>,
    ticket: Option<String>,
    kana: Option<String>,
    /// 和暦 birth dates may be written without their era (`25/6/6`): the era chosen beside the
    /// field (`showa`, `S`, `昭和`).
    era: Option<String>,
    birth_date: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<Search>,
) -> Result<Json<Vec<crate::store::residents::Resident>>, ApiError> {
    let (found, what) = if let Some(p) = q.phone.as_deref().filter(|s| !s.trim().is_empty()) {
        let n = PhoneNumber::parse(p).map_err(|e| ApiError::invalid("phone", e.to_string()))?;
        (
            state.store.residents_by_phone(&n).await?,
            format!("phone={}", n.as_str()),
        )
    } else if let Some(t) = q.ticket.as_deref().filter(|s| !s.trim().is_empty()) {
        let t = TicketNo::parse(t).map_err(|e| ApiError::invalid("ticket", e.to_string()))?;
        (
            state.store.residents_by_ticket(&t).await?,
            format!("ticket={}", t.as_str()),
        )
    } else if let Some(k) = q.kana.as_deref().filter(|s| !s.trim().is_empty()) {
        let birth = match q.birth_date.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(b) => {
                let era = match q.era.as_deref().filter(|s| !s.trim().is_empty()) {
                    Some(e) => Some(Era::parse(e).ok_or_else(|| {
                        ApiError::invalid("era", "one of meiji, taisho, showa, heisei, reiwa")
                    })?),
                    None => None,
                };
                Some(
                    BirthDate::parse_written(b, era, chrono::Utc::now().date_naive())
                        .map_err(|why| ApiError::invalid("birth_date", why))?,
                )
            }
            None => None,
        };
        let kana = Kana::parse(k).map_err(|why| ApiError::invalid("kana", why))?;
        if kana.without_spaces().chars().count() < 2 && birth.is_none() {
            return Err(ApiError::invalid(
                "kana",
                "give at least two characters of the reading, or a birth date",
            ));
        }
        (
            state.store.residents_by_kana(&kana, birth).await?,
            format!("kana={kana}"),
        )
    } else {
        return Err(ApiError::invalid(
            "phone",
            "search by phone, ticket, or kana (with birth_date)",
        ));
    };
    state
        .store
        .audit(Some(user.id), "search", None, &what, &peer.to_string())
        .await?;
    Ok(Json(found))
}

async fn one(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
) -> Result<Json<crate::store::residents::ResidentRecord>, ApiError> {
    let r = state.store.resident(id).await?.ok_or(ApiError::NotFound)?;
    state
        .store
        .audit(Some(user.id), "view", Some(id), "", &peer.to_string())
        .await?;
    Ok(Json(state.store.resident_record(r).await?))
}

#[derive(Deserialize)]
struct NewPhone {
    number: Option<String>,
    kind: Option<String>,
    /// The call the number came from, for the audit trail.
    call_id: Option<String>,
}

/// Adds the calling number to the resident the agent identified: the phone row and its audit
/// entry in one write transaction. 422 names `number` or `kind`; 409 when the resident already
/// has the number; 404 for no such resident.
async fn add_phone(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<NewPhone>,
) -> Result<(StatusCode, Json<crate::store::residents::PhoneRow>), ApiError> {
    let written = body.number.unwrap_or_default();
    let number =
        PhoneNumber::parse(&written).map_err(|e| ApiError::invalid("number", e.to_string()))?;
    let kind = body
        .kind
        .as_deref()
        .and_then(PhoneKind::parse)
        .ok_or_else(|| ApiError::invalid("kind", "one of home, mobile, family, other"))?;
    let call = body
        .call_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.len() <= 200);
    let written = written.trim();
    let mut tx = state.store.begin_write().await?;
    let added = Store::add_phone(&mut tx, id, &number, written, kind)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { constraint } if constraint == "phones_resident_number" => {
                ApiError::Conflict(format!("the resident already has {}", number.national()))
            }
            other => other.into(),
        })?;
    if !added {
        return Err(ApiError::NotFound);
    }
    let detail = match call {
        Some(c) => format!("{} {} from call {c}", kind.code(), number.as_str()),
        None => format!("{} {}", kind.code(), number.as_str()),
    };
    Store::audit_in(
        &mut tx,
        Some(user.id),
        "add_phone",
        Some(id),
        &detail,
        &peer.to_string(),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::store::residents::PhoneRow {
            e164: number.as_str().to_string(),
            written: written.to_string(),
            kind: kind.code().to_string(),
        }),
    ))
}
