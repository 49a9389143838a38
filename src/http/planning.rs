//! 計画: what the planner page (and any script) needs beside the booking routes.
//!
//! BOOKINGS (the phones and planners): `GET /api/venues`, `GET /api/runs?date=`.
//! PLANNING (planners, admins): `POST /api/venues/{id}/slots` (slots from a template),
//! `PATCH /api/slots/{id}` (capacity, held, closed), `POST /api/assign`, `POST /api/reshuffle`,
//! `POST /api/transport/plan`, `GET /api/runs/{id}/manifest` (printable HTML) and
//! `GET /api/runs/{id}/manifest.csv`, `GET /api/notices.csv`.
//!
//! Changes that alter seat counts publish `slot_update` on `/ws/slots` like a move does.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::domain::template::TemplateForm;
use crate::export::excel::Encoding;
use crate::export::notices::notices_file;
use crate::store::bookings::assign::{AssignOptions, AssignReport};
use crate::store::bookings::reshuffle::{ReshuffleReport, Scope};
use crate::store::bookings::templates::{Generated, SlotEdit};
use crate::store::bookings::transport::{manifest_csv, Run, TransportPlan};
use crate::store::bookings::{Slot, Venue};
use crate::store::parse_ts;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use std::net::SocketAddr;

/// Read by the phones and the planners.
pub fn bookings_router() -> Router<AppState> {
    Router::new()
        .route("/api/venues", get(venues))
        .route("/api/runs", get(runs))
}

/// Planners and admins.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/venues/{id}/slots", post(generate))
        .route("/api/slots/{id}", patch(edit_slot))
        .route("/api/assign", post(assign))
        .route("/api/reshuffle", post(reshuffle))
        .route("/api/transport/plan", post(transport_plan))
        .route("/api/runs/{id}/manifest", get(manifest_html))
        .route("/api/runs/{id}/manifest.csv", get(manifest_csv_route))
        .route("/api/notices.csv", get(notices))
}

fn date(field: &'static str, s: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, format!("{field} is a date, YYYY-MM-DD")))
}

async fn venues(State(state): State<AppState>) -> Result<Json<Vec<Venue>>, ApiError> {
    Ok(Json(state.store.venues().await?))
}

#[derive(Deserialize)]
struct DateQuery {
    date: Option<String>,
}

async fn runs(
    State(state): State<AppState>,
    Query(q): Query<DateQuery>,
) -> Result<Json<Vec<Run>>, ApiError> {
    let d = date("date", q.date.as_deref().unwrap_or(""))?;
    Ok(Json(state.store.runs_on(d).await?))
}

async fn generate(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(venue): Path<i64>,
    JsonBody(form): JsonBody<TemplateForm>,
) -> Result<Json<Generated>, ApiError> {
    let template = form
        .parse()
        .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let made = state.store.generate_slots(venue, &template).await?;
    let detail = format!(
        "venue {venue}: {} slots created from a template, {} existed",
        made.created, made.existing
    );
    state
        .store
        .audit(
            Some(user.id),
            "generate_slots",
            None,
            &detail,
            &peer.to_string(),
        )
        .await?;
    Ok(Json(made))
}

async fn edit_slot(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    JsonBody(edit): JsonBody<SlotEdit>,
) -> Result<Json<Slot>, ApiError> {
    if edit.capacity.is_none() && edit.held.is_none() && edit.closed.is_none() {
        return Err(ApiError::invalid(
            "capacity",
            "give capacity, held and/or closed",
        ));
    }
    if edit.capacity.is_some_and(|c| !(0..=100_000).contains(&c)) {
        return Err(ApiError::invalid(
            "capacity",
            "capacity is 0 to 100000 seats",
        ));
    }
    let slot = match state.store.update_slot(id, &edit).await {
        Err(crate::store::StoreError::Conflict { .. }) => {
            let booked = state
                .store
                .slots_now(&[id])
                .await
                .ok()
                .and_then(|s| s.first().map(|s| s.booked))
                .unwrap_or(0);
            return Err(ApiError::Conflict(format!(
                "{booked} seats are booked in this slot; the capacity cannot go below that. \
                 Move bookings out first (or close the slot); nothing was changed."
            )));
        }
        other => other?,
    };
    super::bookings::publish_slots(&state, std::slice::from_ref(&slot));
    let detail = format!(
        "slot {id}: capacity {}, held {}, closed {}",
        slot.capacity, slot.held, slot.closed
    );
    state
        .store
        .audit(Some(user.id), "edit_slot", None, &detail, &peer.to_string())
        .await?;
    Ok(Json(slot))
}

#[derive(Deserialize)]
struct AssignBody {
    from: String,
    to: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    district_order: Vec<String>,
}

async fn assign(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<AssignReport>, ApiError> {
    let opts = AssignOptions {
        from: date("from", &body.from)?,
        to: date("to", &body.to)?,
        dry_run: body.dry_run,
        district_order: body.district_order,
    };
    if opts.to < opts.from {
        return Err(ApiError::invalid("to", "to is before from"));
    }
    let report = state.store.assign(&opts).await?;
    if !report.dry_run {
        let detail = format!(
            "assignment {} – {}: {} assigned, {} unassigned",
            report.from,
            report.to,
            report.assigned,
            report.unassigned.len()
        );
        state
            .store
            .audit(Some(user.id), "assign", None, &detail, &peer.to_string())
            .await?;
    }
    Ok(Json(report))
}

#[derive(Deserialize)]
struct ReshuffleBody {
    slot_id: Option<i64>,
    venue_id: Option<i64>,
    date: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn reshuffle(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<ReshuffleBody>,
) -> Result<Json<ReshuffleReport>, ApiError> {
    let scope = match (body.slot_id, body.venue_id, body.date.as_deref()) {
        (Some(s), None, None) => Scope::Slot(s),
        (None, Some(v), Some(d)) => Scope::VenueDay(v, date("date", d)?),
        (None, Some(v), None) => Scope::Venue(v),
        _ => {
            return Err(ApiError::invalid(
                "slot_id",
                "give slot_id, or venue_id (with date for one day)",
            ))
        }
    };
    let report = state
        .store
        .reshuffle(scope, body.dry_run, chrono::Utc::now())
        .await?;
    if !report.dry_run {
        let mut changed: Vec<i64> = report.closed_slots.clone();
        changed.extend(report.moved.iter().map(|m| m.to_slot));
        changed.sort_unstable();
        changed.dedup();
        let mut slots = Vec::new();
        for id in changed {
            if let Some(s) = state.store.slot(id).await? {
                slots.push(s);
            }
        }
        super::bookings::publish_slots(&state, &slots);
        let detail = format!(
            "reshuffle {}: {} moved, {} not moved",
            report.scope,
            report.moved.len(),
            report.not_moved.len()
        );
        state
            .store
            .audit(Some(user.id), "reshuffle", None, &detail, &peer.to_string())
            .await?;
    }
    Ok(Json(report))
}

#[derive(Deserialize)]
struct TransportBody {
    date: String,
    #[serde(default = "default_seats")]
    seats: i64,
    #[serde(default = "default_max_runs")]
    max_runs: usize,
    #[serde(default)]
    dry_run: bool,
}

fn default_seats() -> i64 {
    20
}
fn default_max_runs() -> usize {
    2
}

async fn transport_plan(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<TransportBody>,
) -> Result<Json<TransportPlan>, ApiError> {
    let d = date("date", &body.date)?;
    if !(1..=100).contains(&body.seats) {
        return Err(ApiError::invalid("seats", "seats is 1 to 100"));
    }
    Ok(Json(
        state
            .store
            .plan_transport(d, body.seats, body.max_runs.clamp(1, 50), body.dry_run)
            .await?,
    ))
}

async fn manifest_csv_route(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let (run, rows) = state.store.manifest(id).await?;
    let body = manifest_csv(&run, &rows);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"manifest-{id}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn hm(ts: &str) -> String {
    parse_ts(ts)
        .map(crate::domain::vaccine::jst_time)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default()
}

/// The driver's manifest as a page to print (no script: nothing for the CSP to refuse).
async fn manifest_html(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let (run, rows) = state.store.manifest(id).await?;
    let day = parse_ts(&run.starts_at)
        .map(|t| crate::domain::notice::md_weekday(crate::domain::vaccine::jst_date(t)))
        .unwrap_or_default();
    let mut html = format!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>運行表 {name}</title>\
         <style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;width:100%}}\
         td,th{{border:1px solid #444;padding:.3em .5em;text-align:left}}@media print{{a{{display:none}}}}</style>\
         </head><body><h1>送迎運行表 {name}</h1><p>{day} {time} 着 ・ 座席 {riders}/{seats}</p>\
         <table><thead><tr><th>順</th><th>乗車場所</th><th>乗車時刻</th><th>氏名</th><th>フリガナ</th>\
         <th>電話番号</th><th>接種回</th></tr></thead><tbody>",
        name = esc(&run.name),
        time = hm(&run.starts_at),
        riders = run.riders,
        seats = run.seats,
    );
    for r in &rows {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.seq,
            esc(&r.stop),
            hm(&r.pickup_at),
            esc(&r.name),
            esc(&r.name_kana),
            esc(&r.phone),
            r.dose
        ));
    }
    html.push_str("</tbody></table></body></html>");
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

#[derive(Deserialize)]
struct NoticeQuery {
    from: Option<String>,
    to: Option<String>,
    encoding: Option<String>,
}

async fn notices(
    State(state): State<AppState>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, ApiError> {
    let from = q
        .from
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| date("from", s))
        .transpose()?;
    let to =
        q.to.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| date("to", s))
            .transpose()?;
    let encoding = match q.encoding.as_deref().filter(|s| !s.is_empty()) {
        None => Encoding::Utf8Bom,
        Some(e) => Encoding::parse(e)
            .ok_or_else(|| ApiError::invalid("encoding", "encoding is utf8 or sjis"))?,
    };
    let rows = state.store.notices(from, to).await?;
    let bytes = notices_file(&rows, encoding).bytes;
    let ctype = encoding.content_type();
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"notices.csv\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// This module's routes in `/api/openapi.json` (merged by `ops`).
pub fn openapi_paths() -> serde_json::Value {
    let op = |summary: &str| serde_json::json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
    serde_json::json!({
            "/api/venues": {"get": op("venues (会場), each with id, name, address, districts")},
            "/api/venues/{id}/slots": {"post": {"summary": "create a venue's slots from a template: {from, to (YYYY-MM-DD), weekdays ([mon…sun], empty: every day), opens, closes (HH:MM), slot_minutes, capacity, product, lunch_from?, lunch_to?, held (seats kept for the call center)}; slots that exist are kept",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "{created, existing}"}, "404": {"description": "no such venue"}, "422": {"description": "a template field is wrong; `field` names it"}}}},
            "/api/slots/{id}": {"patch": {"summary": "edit one slot: {capacity?, held?, closed?}; publishes slot_update",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the slot now"}, "404": {"description": "no such slot"},
                              "409": {"description": "the capacity would fall below the live bookings"}, "422": {"description": "a value is out of range; `field` names it"}}}},
            "/api/assign": {"post": {"summary": "the city's assignment: {from, to, dry_run?, district_order?}: both doses for everyone who wants one and has no booking; the report (assigned per venue and week, unassigned with reasons)",
                "responses": {"200": {"description": "the report"}, "422": {"description": "from or to is wrong"}}}},
            "/api/reshuffle": {"post": {"summary": "close a slot ({slot_id}), a venue's day ({venue_id, date}) or a venue ({venue_id}) and move its live bookings to the nearest legal slots, all or nothing; {dry_run: true} shows the plan and changes nothing",
                "responses": {"200": {"description": "closed_slots, moved (with households and rides), not_moved (with reasons)"}, "404": {"description": "no such slot or venue day"}, "422": {"description": "the scope is wrong"}}}},
            "/api/runs": {"get": {"summary": "the bus runs (便) of a day, each with venue_id, starts_at (the slots it serves), seats, riders and its stops in order with pickup times",
                "parameters": [{"name": "date", "in": "query", "required": true, "schema": {"type": "string", "format": "date"}}],
                "responses": {"200": {"description": "runs"}, "422": {"description": "date missing or wrong"}}}},
            "/api/transport/plan": {"post": {"summary": "seats on runs for the day's riders without one: {date, seats? (20), max_runs? (2), dry_run?}; never beyond a run's seats; riders not placed are listed",
                "responses": {"200": {"description": "placed, runs_created, unplaced"}, "422": {"description": "a field is wrong"}}}},
            "/api/runs/{id}/manifest": {"get": {"summary": "a run's driver's manifest as a printable page (stop, pickup time, names with kana, phone)",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "HTML"}, "404": {"description": "no such run"}}}},
            "/api/runs/{id}/manifest.csv": {"get": {"summary": "a run's driver's manifest as CSV (UTF-8 with BOM)",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "CSV"}, "404": {"description": "no such run"}}}},
            "/api/notices.csv": {"get": {"summary": "assignment notices for mail merge: name, address, each dose's venue, date with weekday, time, pickup stop and time",
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "encoding", "in": "query", "schema": {"type": "string", "enum": ["utf8", "sjis"]}}],
                "responses": {"200": {"description": "CSV"}, "422": {"description": "a parameter is wrong"}}}},
    })
}
