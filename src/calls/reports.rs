//! Reports (集計): per day or per hour in Japan, the calls offered and answered, the service
//! level, the average handling time, the abandon rate (with every other board figure), and the
//! inquiries recorded per category. Computed from the call log and the inquiry log with the
//! board's own definitions ([`super::board::figures_per`]), so a day's report and the board's
//! "today" agree. `http::reports` serves them as a page and as CSV for Excel.

use super::board::{figures_per, Figures, Thresholds};
use crate::domain::vaccine::{jst, jst_midnight};
use crate::store::Store;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Days a per-day report may span.
pub const MAX_DAYS: i64 = 366;
/// Days a per-hour report may span (24 rows a day).
pub const MAX_HOUR_DAYS: i64 = 31;
/// The most calls (or inquiries) one report reads; a busier range is refused, not cut short.
pub const MAX_ROWS: i64 = 2_000_000;

/// How a report is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Day,
    Hour,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        match s.trim() {
            "day" | "" => Some(By::Day),
            "hour" => Some(By::Hour),
            _ => None,
        }
    }
}

/// A report's window: `[start, end)`.
type Window = (DateTime<Utc>, DateTime<Utc>);

/// One day or hour.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportRow {
    /// `2021-05-10` or `2021-05-10 09:00` (Japan).
    pub period: String,
    /// The window's start, RFC 3339 UTC.
    pub start: String,
    #[serde(flatten)]
    pub figures: Figures,
    /// Inquiries recorded in the window, per category code (every category, zeros too).
    pub inquiries: BTreeMap<String, u64>,
    pub inquiries_total: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub by: By,
    pub service_level_threshold_s: i64,
    pub short_abandon_threshold_s: i64,
    pub categories: Vec<String>,
    pub rows: Vec<ReportRow>,
    /// The whole range as one window.
    pub total: ReportRow,
}

/// Why a report was not made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Range(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// The report of the Japanese days `from..=to`.
pub async fn report(
    store: &Store,
    from: NaiveDate,
    to: NaiveDate,
    by: By,
    t: Thresholds,
) -> Result<Report, ReportError> {
    if from > to {
        return Err(ReportError::Range(format!("from {from} is after to {to}")));
    }
    let days = (to - from).num_days() + 1;
    let max = match by {
        By::Day => MAX_DAYS,
        By::Hour => MAX_HOUR_DAYS,
    };
    if days > max {
        return Err(ReportError::Range(format!(
            "at most {max} days per report by {}",
            if by == By::Day { "day" } else { "hour" }
        )));
    }
    let lo = jst_midnight(from);
    let hi = jst_midnight(to) + chrono::Duration::days(1);
    let step = match by {
        By::Day => chrono::Duration::days(1),
        By::Hour => chrono::Duration::hours(1),
    };
    let mut windows = Vec::new();
    let mut at = lo;
    while at < hi {
        windows.push((at, at + step));
        at += step;
    }
    windows.push((lo, hi));
    // A call counts where it joined the queue, which is after it started: calls that started
    // the evening before and joined after midnight are read too.
    let early = crate::store::ts(lo - chrono::Duration::days(1));
    let calls = store
        .calls_between(Some(&early), Some(&crate::store::ts(hi)), MAX_ROWS + 1)
        .await?;
    let inquiries = store
        .inquiries_between(
            Some(&crate::store::ts(lo)),
            Some(&crate::store::ts(hi)),
            MAX_ROWS + 1,
        )
        .await?;
    if calls.len() as i64 > MAX_ROWS || inquiries.len() as i64 > MAX_ROWS {
        return Err(ReportError::Range(format!(
            "more than {MAX_ROWS} calls or inquiries: ask for fewer days"
        )));
    }
    let mut figures = figures_per(&calls, &windows, t);
    let categories: Vec<String> = crate::store::inquiries::CATEGORIES
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut counts: Vec<BTreeMap<String, u64>> = windows
        .iter()
        .map(|_| categories.iter().map(|c| (c.clone(), 0)).collect())
        .collect();
    for i in &inquiries {
        let Some(at) = crate::store::parse_ts(&i.created_at) else {
            continue;
        };
        for (w, c) in windows.iter().zip(counts.iter_mut()) {
            if at >= w.0 && at < w.1 {
                *c.entry(i.category.clone()).or_insert(0) += 1;
            }
        }
    }
    let row = |w: Window, f: Figures, c: BTreeMap<String, u64>| {
        let local = w.0.with_timezone(&jst());
        ReportRow {
            period: match by {
                By::Day => local.format("%Y-%m-%d").to_string(),
                By::Hour => local.format("%Y-%m-%d %H:00").to_string(),
            },
            start: crate::store::ts(w.0),
            inquiries_total: c.values().sum(),
            inquiries: c,
            figures: Figures {
                // Live-only figures mean nothing for a past window.
                waiting: 0,
                longest_wait_s: None,
                ..f
            },
        }
    };
    let total_window = windows.pop().unwrap_or((lo, hi));
    let total_figures = figures.pop().unwrap_or_default();
    let total_counts = counts.pop().unwrap_or_default();
    let mut total = row(total_window, total_figures, total_counts);
    total.period = format!("{from}〜{to}");
    let rows = windows
        .into_iter()
        .zip(figures)
        .zip(counts)
        .map(|((w, f), c)| row(w, f, c))
        .collect();
    Ok(Report {
        from: from.to_string(),
        to: to.to_string(),
        by,
        service_level_threshold_s: t.service_level_s,
        short_abandon_threshold_s: t.short_abandon_s,
        categories,
        rows,
        total,
    })
}
