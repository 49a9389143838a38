//! The call log and the inquiry log as files for Excel (`madoguchi export calls`,
//! `madoguchi export inquiries`): the supervisors' and the city's own counting, in Japan's
//! time, one row per call or inquiry, every cell safe to open (see [`super::excel`]).

use super::excel::{Encoding, ExcelCsv, ExcelFile};
use crate::domain::vaccine::jst;
use crate::store::Store;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

/// The most rows one export holds; a longer range is refused rather than cut short.
pub const MAX_ROWS: i64 = 1_000_000;

/// The UTC bounds of the Japanese days `from..=to`, as the store's timestamp text.
pub fn day_bounds(from: NaiveDate, to: NaiveDate) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let start = |d: NaiveDate| -> anyhow::Result<String> {
        let local = d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| anyhow::anyhow!("{d}: no midnight"))?;
        let t = jst()
            .from_local_datetime(&local)
            .single()
            .ok_or_else(|| anyhow::anyhow!("{d}: not a day in Japan"))?;
        Ok(crate::store::ts(t.with_timezone(&Utc)))
    };
    let next = to
        .succ_opt()
        .ok_or_else(|| anyhow::anyhow!("{to}: no next day"))?;
    Ok((start(from)?, start(next)?))
}

/// A stored UTC timestamp as Japan's wall clock (`2021-06-08 14:30:05`), blank when absent.
fn local(ts: Option<&str>) -> String {
    ts.and_then(crate::store::parse_ts)
        .map(|t: DateTime<Utc>| {
            t.with_timezone(&jst())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

fn seconds_between(a: Option<&str>, b: Option<&str>) -> String {
    match (
        a.and_then(crate::store::parse_ts),
        b.and_then(crate::store::parse_ts),
    ) {
        (Some(a), Some(b)) if b >= a => (b - a).num_seconds().to_string(),
        _ => String::new(),
    }
}

pub const CALL_HEADER: [&str; 13] = [
    "通話ID",
    "着信日時",
    "発信者番号",
    "発信者名",
    "着信番号",
    "キュー",
    "応答者",
    "応答日時",
    "終了日時",
    "待ち時間(秒)",
    "通話時間(秒)",
    "結果",
    "住民ID",
];

/// The call log of the Japanese days `from..=to`.
pub async fn calls_file(
    store: &Store,
    from: NaiveDate,
    to: NaiveDate,
    encoding: Encoding,
) -> anyhow::Result<ExcelFile> {
    let (lo, hi) = day_bounds(from, to)?;
    let calls = store
        .calls_between(Some(&lo), Some(&hi), MAX_ROWS + 1)
        .await?;
    anyhow::ensure!(
        (calls.len() as i64) <= MAX_ROWS,
        "more than {MAX_ROWS} calls from {from} to {to}; export a shorter range"
    );
    let mut csv = ExcelCsv::new(&CALL_HEADER);
    for c in &calls {
        let answered_by = match (&c.answered_by_name, &c.answered_by) {
            (Some(name), Some(ext)) => format!("{name} ({ext})"),
            (None, Some(ext)) => ext.clone(),
            _ => String::new(),
        };
        csv.row(&[
            c.id.clone(),
            local(Some(&c.started_at)),
            c.caller_number.clone(),
            c.caller_name.clone(),
            c.dialled.clone(),
            c.queue.clone().unwrap_or_default(),
            answered_by,
            local(c.answered_at.as_deref()),
            local(c.ended_at.as_deref()),
            c.hold_s.map(|h| h.to_string()).unwrap_or_else(|| {
                seconds_between(
                    c.queued_at.as_deref().or(Some(&c.started_at)),
                    c.answered_at.as_deref(),
                )
            }),
            seconds_between(c.answered_at.as_deref(), c.ended_at.as_deref()),
            c.outcome.clone().unwrap_or_else(|| "live".into()),
            c.resident_id.map(|r| r.to_string()).unwrap_or_default(),
        ]);
    }
    Ok(csv.finish(encoding))
}

pub const INQUIRY_HEADER: [&str; 9] = [
    "問合せID",
    "受付日時",
    "住民ID",
    "通話ID",
    "対応者",
    "分類",
    "内容",
    "要対応",
    "相談者",
];

/// The inquiry log of the Japanese days `from..=to`.
pub async fn inquiries_file(
    store: &Store,
    from: NaiveDate,
    to: NaiveDate,
    encoding: Encoding,
) -> anyhow::Result<ExcelFile> {
    let (lo, hi) = day_bounds(from, to)?;
    let rows = store
        .inquiries_between(Some(&lo), Some(&hi), MAX_ROWS + 1)
        .await?;
    anyhow::ensure!(
        (rows.len() as i64) <= MAX_ROWS,
        "more than {MAX_ROWS} inquiries from {from} to {to}; export a shorter range"
    );
    let mut csv = ExcelCsv::new(&INQUIRY_HEADER);
    for i in &rows {
        let caller = if i.relationship.is_empty() {
            i.caller_kind.clone()
        } else {
            format!("{} ({})", i.caller_kind, i.relationship)
        };
        csv.row(&[
            i.id.to_string(),
            local(Some(&i.created_at)),
            i.resident_id.map(|r| r.to_string()).unwrap_or_default(),
            i.call_id.clone().unwrap_or_default(),
            i.user_name.clone(),
            i.category.clone(),
            i.note.clone(),
            if i.follow_up { "要" } else { "" }.to_string(),
            caller,
        ]);
    }
    Ok(csv.finish(encoding))
}
