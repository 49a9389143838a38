//! Reports for supervisors (`calls::reports`): `GET /api/reports?from=&to=&by=day|hour` as
//! JSON, `GET /api/reports.csv?…&encoding=utf8|sjis` for Excel (UTF-8 with a BOM by default,
//! or Shift_JIS), and the page `/reports` (`web/reports.html`). Days are Japan's; `from` and
//! `to` (inclusive, `YYYY-MM-DD`) default to today.

use super::{ApiError, AppState};
use crate::calls::reports::{report, By, Report, ReportError};
use crate::export::excel::{Encoding, ExcelCsv};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reports", get(as_json))
        .route("/api/reports.csv", get(as_csv))
}

/// The routes of this module (and the page) as `/api/openapi.json` lists them.
pub fn openapi_paths() -> serde_json::Map<String, serde_json::Value> {
    let params = json!([
        {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
        {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
        {"name": "by", "in": "query", "schema": {"type": "string", "enum": ["day", "hour"]}},
    ]);
    let mut csv_params = params.clone();
    if let Some(a) = csv_params.as_array_mut() {
        a.push(json!({"name": "encoding", "in": "query", "schema": {"type": "string", "enum": ["utf8", "sjis"]}}));
    }
    let mut m = serde_json::Map::new();
    m.insert("/reports".into(), json!({"get": {"summary": "the supervisors' reports page (reports.html)", "responses": {"200": {"description": "OK"}}}}));
    m.insert("/api/reports".into(), json!({"get": {"summary": "per day or hour (Japan) from..=to: offered, answered, abandoned, short abandons, timeouts, service level, abandon rate, ASA, AHT, inquiries per category; and the total",
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "422": {"description": "bad date, by, or a range too long (366 days by day, 31 by hour)"}}}}));
    m.insert("/api/reports.csv".into(), json!({"get": {"summary": "the same report as CSV for Excel (UTF-8 with BOM, or Shift_JIS)",
        "parameters": csv_params,
        "responses": {"200": {"description": "text/csv"}, "422": {"description": "as /api/reports, or a bad encoding"}}}}));
    m
}

#[derive(Deserialize)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    encoding: Option<String>,
}

fn date(field: &'static str, v: Option<&str>, default: NaiveDate) -> Result<NaiveDate, ApiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(field, "a date, YYYY-MM-DD")),
    }
}

async fn make(state: &AppState, q: &ReportQuery) -> Result<Report, ApiError> {
    let today = crate::domain::vaccine::jst_date(chrono::Utc::now());
    let to = date("to", q.to.as_deref(), today)?;
    let from = date("from", q.from.as_deref(), to.min(today))?;
    let by = By::parse(q.by.as_deref().unwrap_or(""))
        .ok_or_else(|| ApiError::invalid("by", "day or hour"))?;
    match report(&state.store, from, to, by, state.board.thresholds()).await {
        Ok(r) => Ok(r),
        Err(ReportError::Range(why)) => Err(ApiError::invalid("to", why)),
        Err(ReportError::Store(e)) => Err(ApiError::Internal(e)),
    }
}

async fn as_json(
    State(state): State<AppState>,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(make(&state, &q).await?))
}

/// A ratio as a percentage with one decimal (`87.5`), blank when there is none.
fn percent(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}", r * 100.0)).unwrap_or_default()
}

fn seconds(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.1}")).unwrap_or_default()
}

/// The category's name as the agent screen shows it.
fn category_name(code: &str) -> &str {
    match code {
        "appointment_change" => "日時・会場の変更",
        "appointment_cancel" => "キャンセル",
        "transport" => "送迎バス",
        "ticket" => "接種券",
        "side_effects" => "副反応",
        "eligibility" => "接種対象・医療相談",
        "general" => "その他",
        "complaint" => "苦情",
        other => other,
    }
}

/// The report as CSV rows: one per day or hour, then the total.
pub fn csv(r: &Report) -> ExcelCsv {
    let sl = format!("サービスレベル(%・{}秒以内)", r.service_level_threshold_s);
    let short = format!("短時間放棄({}秒未満)", r.short_abandon_threshold_s);
    let mut header: Vec<String> = [
        "期間",
        "入電",
        "応答",
        "放棄",
        short.as_str(),
        "タイムアウト",
        sl.as_str(),
        "放棄率(%)",
        "平均応答速度ASA(秒)",
        "平均処理時間AHT(秒)",
        "問合せ計",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(r.categories.iter().map(|c| category_name(c).to_string()));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut out = ExcelCsv::new(&header);
    for row in r.rows.iter().chain(std::iter::once(&r.total)) {
        let f = &row.figures;
        let mut cells = vec![
            row.period.clone(),
            f.offered.to_string(),
            f.answered.to_string(),
            f.abandoned.to_string(),
            f.short_abandoned.to_string(),
            f.timeouts.to_string(),
            percent(f.service_level),
            percent(f.abandon_rate),
            seconds(f.asa_s),
            seconds(f.aht_s),
            row.inquiries_total.to_string(),
        ];
        cells.extend(
            r.categories
                .iter()
                .map(|c| row.inquiries.get(c).copied().unwrap_or(0).to_string()),
        );
        out.row(&cells);
    }
    out
}

async fn as_csv(
    State(state): State<AppState>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let encoding = match q.encoding.as_deref().map(str::trim) {
        None | Some("") => Encoding::Utf8Bom,
        Some(e) => {
            Encoding::parse(e).ok_or_else(|| ApiError::invalid("encoding", "utf8 or sjis"))?
        }
    };
    let r = make(&state, &q).await?;
    let file = csv(&r).finish(encoding);
    let by = if r.by == By::Hour { "hourly" } else { "daily" };
    let name = format!("report-{by}-{}-{}.csv", r.from, r.to);
    Ok((
        [
            (header::CONTENT_TYPE, encoding.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        file.bytes,
    )
        .into_response())
}
