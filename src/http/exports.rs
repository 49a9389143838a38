//! The records clerk's routes (VRS連携): what is not yet exported, export a day's new records
//! as a VRS batch, download any batch again byte for byte, and the 予防接種台帳 file.
//!
//! - `GET /api/exports/vrs?date=`: the day's records no batch holds yet, and its batches;
//! - `POST /api/exports/vrs` `{date}`: a new batch of those records (201), or 200 with
//!   `batch: null` when there is nothing new;
//! - `GET /api/exports/vrs/{id}`: the batch's CSV as first written;
//! - `GET /api/exports/ledger`: the 予防接種台帳 CSV of every current record.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::vaccinations::parse_date;
use super::{ApiError, AppState};
use crate::export::vrs;
use crate::store::vaccinations::Actor;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/exports/vrs", get(pending).post(export))
        .route("/api/exports/vrs/{id}", get(download))
        .route("/api/exports/ledger", get(ledger))
        .route("/api/exports/vsys", get(vsys))
}

#[derive(Deserialize)]
struct VsysQuery {
    from: Option<String>,
    format: Option<String>,
}

/// The V-SYS weekly request: JSON lines, or `format=csv` for Excel (UTF-8 with BOM).
async fn vsys(
    State(state): State<AppState>,
    Query(q): Query<VsysQuery>,
) -> Result<Response, ApiError> {
    let from = parse_date("from", q.from.as_deref())?;
    match q.format.as_deref() {
        Some("csv") => {
            let file = crate::export::vsys::vsys_file(
                &state.store,
                from,
                crate::export::excel::Encoding::Utf8Bom,
            )
            .await
            .map_err(ApiError::Internal)?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"vsys-{from}.csv\""),
                    ),
                ],
                file.bytes,
            )
                .into_response())
        }
        None | Some("json") => {
            let lines = crate::export::vsys::lines(&state.store, from)
                .await
                .map_err(ApiError::Internal)?;
            let to = from + chrono::Duration::days(crate::domain::vsys::REQUEST_DAYS - 1);
            Ok(
                Json(json!({"from": from.to_string(), "to": to.to_string(), "lines": lines}))
                    .into_response(),
            )
        }
        Some(_) => Err(ApiError::invalid("format", "format is json or csv")),
    }
}

#[derive(Deserialize)]
struct DateQuery {
    date: Option<String>,
}

async fn pending(
    State(state): State<AppState>,
    Query(q): Query<DateQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let day = parse_date("date", q.date.as_deref())?;
    let unexported = state.store.unexported(day).await?;
    let batches = state.store.export_batches(Some(day)).await?;
    Ok(Json(json!({
        "date": day.format("%Y-%m-%d").to_string(),
        "unexported": unexported,
        "batches": batches,
    })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExportBody {
    date: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<ExportBody>,
) -> Result<Response, ApiError> {
    if body.date.as_deref().is_none_or(|d| d.trim().is_empty()) {
        return Err(ApiError::invalid("date", "give date, the day of the doses"));
    }
    let day = parse_date("date", body.date.as_deref())?;
    let peer = peer.to_string();
    let actor = Actor {
        user_id: Some(user.id),
        remote_addr: &peer,
    };
    match vrs::export_vrs(&state.store, day, actor).await? {
        Some(batch) => {
            Ok((StatusCode::CREATED, Json(json!({"batch": batch.info}))).into_response())
        }
        None => Ok(Json(json!({
            "batch": null,
            "message": format!("nothing new to export for {day}"),
        }))
        .into_response()),
    }
}

fn csv_response(name: &str, content: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        content,
    )
        .into_response()
}

async fn download(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let batch = vrs::batch_file(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .store
        .audit(
            Some(user.id),
            "download_export",
            None,
            &format!("batch {id}"),
            &peer.to_string(),
        )
        .await?;
    let name = format!("vrs-{}-{id}.csv", batch.info.for_date);
    Ok(csv_response(&name, batch.content))
}

async fn ledger(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let content = vrs::export_ledger(&state.store).await?;
    state
        .store
        .audit(Some(user.id), "export_ledger", None, "", &peer.to_string())
        .await?;
    Ok(csv_response("yobou-sesshu-daichou.csv", content))
}

/// These routes for `/api/openapi.json`.
pub fn openapi_paths() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "/api/exports/vrs",
            json!({
                "get": {"summary": "the day's records no VRS batch holds yet (unexported), and the day's batches",
                    "parameters": [{"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}}],
                    "responses": {"200": {"description": "{date, unexported, batches}"}, "422": {"description": "bad date"}}},
                "post": {"summary": "export {date}: a VRS batch of that day's records no batch holds yet (VACCINATION.md §1.5: header, UTF-8, CRLF); each record goes in exactly one batch; audited",
                    "responses": {"201": {"description": "{batch}: id, for_date, row_count, checksum"},
                                  "200": {"description": "{batch: null}: nothing new to export"},
                                  "422": {"description": "date missing or bad"}}}
            }),
        ),
        (
            "/api/exports/vrs/{id}",
            json!({"get": {"summary": "a VRS batch's CSV again, byte-identical to when it was written; audited",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "text/csv"}, "404": {"description": "no such batch"}}}}),
        ),
        (
            "/api/exports/vsys",
            json!({"get": {"summary": "the V-SYS weekly vaccine request: per venue and product, the vials the live bookings of the 14 days from `from` take (each day rounded up to whole vials of the doses a vial gives there), less unopened stock; JSON, or format=csv for Excel",
                "parameters": [{"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                               {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}}],
                "responses": {"200": {"description": "{from, to, lines} or text/csv"}, "422": {"description": "bad from or format"}}}}),
        ),
        (
            "/api/exports/ledger",
            json!({"get": {"summary": "the 予防接種台帳 CSV (VACCINATION.md §1.4) of every current record: 個別宛名番号 and a block of columns per dose; audited",
                "responses": {"200": {"description": "text/csv"}}}}),
        ),
    ]
}
