//! `madoguchi import cdr FILE`: Asterisk's own call records (`cdr_csv`'s `Master.csv`) fill in
//! the calls madoguchi missed while it could not see the PBX (an outage longer than the
//! resync could cover, a server that was down).
//!
//! `Master.csv` has no header; its columns are `accountcode, src, dst, dcontext, clid, channel,
//! dstchannel, lastapp, lastdata, start, answer, end, duration, billsec, disposition, amaflags`,
//! then `uniqueid` and `userfield` when `cdr.conf` has `loguniqueid = yes` and
//! `loguserfield = yes` (both are needed here: the uniqueid is how a record finds its call).
//! One call can have several records (one per agent a queue rang); they share the caller's
//! uniqueid, which is the Linkedid madoguchi keys the call by (`ami:<uniqueid>`).
//!
//! Idempotent: a call the log already has as ended is left as it is; one it has open is
//! completed through the forward-only upsert; one it does not have is added. A file with a bad
//! record changes nothing and names every bad row and field.

use crate::domain::Extension;
use crate::store::{calls::CallRow, ts, Store};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CdrReport {
    pub records: usize,
    pub calls: usize,
    pub added: usize,
    pub completed: usize,
    pub already_logged: usize,
}

impl std::fmt::Display for CdrReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records, {} calls: {} added, {} completed, {} already logged",
            self.records, self.calls, self.added, self.completed, self.already_logged
        )
    }
}

/// The record of one leg, as far as madoguchi reads it.
#[derive(Debug)]
struct Leg {
    src: String,
    dst: String,
    dstchannel: String,
    lastapp: String,
    lastdata: String,
    start: DateTime<Utc>,
    answer: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
    disposition: String,
    uniqueid: String,
}

/// Reads the records; `offset` is the zone of the times (`cdr.conf` `usegmtime`: UTC; else the
/// PBX's local time, in Japan +09:00).
fn parse(text: &str, offset: FixedOffset) -> Result<Vec<Leg>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut legs = Vec::new();
    let mut problems = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("row {row}: not CSV: {e}"));
                continue;
            }
        };
        if record.len() < 17 {
            problems.push(format!(
                "row {row}, uniqueid: missing ({} columns; set loguniqueid = yes in cdr.conf)",
                record.len()
            ));
            continue;
        }
        let get = |i: usize| record.get(i).unwrap_or("").trim().to_string();
        let time = |i: usize, field: &str, problems: &mut Vec<String>| -> Option<DateTime<Utc>> {
            let v = get(i);
            if v.is_empty() {
                return None;
            }
            match NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M:%S") {
                Ok(t) => t
                    .and_local_timezone(offset)
                    .single()
                    .map(|t| t.with_timezone(&Utc)),
                Err(_) => {
                    problems.push(format!(
                        "row {row}, {field}: {v:?} is not YYYY-MM-DD HH:MM:SS"
                    ));
                    None
                }
            }
        };
        let before = problems.len();
        let start = time(9, "start", &mut problems);
        let answer = time(10, "answer", &mut problems);
        let end = time(11, "end", &mut problems);
        let uniqueid = get(16);
        if uniqueid.is_empty() {
            problems.push(format!("row {row}, uniqueid: empty"));
        }
        let (Some(start), Some(end)) = (start, end) else {
            if problems.len() == before {
                problems.push(format!("row {row}, start/end: missing"));
            }
            continue;
        };
        if problems.len() > before {
            continue;
        }
        legs.push(Leg {
            src: get(1),
            dst: get(2),
            dstchannel: get(6),
            lastapp: get(7),
            lastdata: get(8),
            start,
            answer,
            end,
            disposition: get(14).to_ascii_uppercase(),
            uniqueid,
        });
    }
    if problems.is_empty() {
        Ok(legs)
    } else {
        Err(problems)
    }
}

/// The calls the records describe, keyed as the AMI link keys them.
fn calls(legs: Vec<Leg>) -> Vec<CallRow> {
    let mut by_call: BTreeMap<String, Vec<Leg>> = BTreeMap::new();
    for leg in legs {
        by_call.entry(leg.uniqueid.clone()).or_default().push(leg);
    }
    by_call
        .into_iter()
        .map(|(id, legs)| {
            let first = &legs[0];
            let ext =
                |l: &Leg| Extension::from_device(&l.dstchannel).map(|e| e.as_str().to_string());
            let answered = legs
                .iter()
                .filter(|l| l.disposition == "ANSWERED" && !l.dstchannel.is_empty())
                .min_by_key(|l| l.answer);
            let mut offered: Vec<String> = Vec::new();
            for l in &legs {
                if let Some(e) = ext(l) {
                    if !offered.contains(&e) {
                        offered.push(e);
                    }
                }
            }
            let queue = legs
                .iter()
                .find(|l| l.lastapp.eq_ignore_ascii_case("Queue"))
                .map(|l| l.lastdata.split(',').next().unwrap_or("").to_string())
                .filter(|q| !q.is_empty());
            let any = |d: &str| legs.iter().any(|l| l.disposition == d);
            let outcome = if answered.is_some() {
                "answered"
            } else if any("BUSY") {
                "busy"
            } else if any("FAILED") || any("CONGESTION") {
                "failed"
            } else if queue.is_some() {
                "abandoned"
            } else {
                "no_answer"
            };
            let started = legs.iter().map(|l| l.start).min().unwrap_or(first.start);
            let ended = legs.iter().map(|l| l.end).max().unwrap_or(first.end);
            let answered_at = answered.and_then(|l| l.answer);
            CallRow {
                id: format!("ami:{id}"),
                direction: "inbound".into(),
                caller_number: first.src.clone(),
                caller_e164: crate::domain::PhoneNumber::from_caller_id(&first.src)
                    .map(|n| n.as_str().to_string()),
                dialled: first.dst.clone(),
                queue,
                agents_offered: offered,
                answered_by: answered.and_then(ext),
                started_at: ts(started),
                answered_at: answered_at.map(ts),
                ended_at: Some(ts(ended)),
                hold_s: answered_at.map(|a| (a - started).num_seconds().max(0)),
                outcome: Some(outcome.into()),
                ..CallRow::default()
            }
        })
        .collect()
}

/// Imports `Master.csv`: all or nothing (see the module doc).
pub async fn import_cdr(store: &Store, path: &Path, utc: bool) -> anyhow::Result<CdrReport> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the file: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let offset = if utc {
        FixedOffset::east_opt(0)
    } else {
        FixedOffset::east_opt(9 * 3600)
    }
    .ok_or_else(|| anyhow::anyhow!("time zone"))?;
    let legs = parse(&text, offset).map_err(|problems| {
        anyhow::anyhow!(
            "{}: {} (nothing imported)",
            path.display(),
            problems.join("; ")
        )
    })?;
    let records = legs.len();
    let calls = calls(legs);
    let mut report = CdrReport {
        records,
        calls: calls.len(),
        ..CdrReport::default()
    };
    let mut write = Vec::new();
    for c in calls {
        match store.call(&c.id).await? {
            Some(known) if known.ended_at.is_some() => report.already_logged += 1,
            Some(_) => {
                report.completed += 1;
                write.push(c);
            }
            None => {
                report.added += 1;
                write.push(c);
            }
        }
    }
    store.upsert_calls(&write).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = r#""","0773621111","0773689225","from-trunk","""舞鶴"" <0773621111>","PJSIP/trunk-00000001","PJSIP/201-00000002","Queue","vaccine,t","2021-05-10 09:00:00","2021-05-10 09:00:12","2021-05-10 09:03:00",180,168,"ANSWERED","DOCUMENTATION","1620604800.1",""
"","0773621111","0773689225","from-trunk","""舞鶴"" <0773621111>","PJSIP/trunk-00000001","PJSIP/202-00000003","Queue","vaccine,t","2021-05-10 09:00:00","","2021-05-10 09:00:12",12,0,"NO ANSWER","DOCUMENTATION","1620604800.1",""
"","09011112222","0773689225","from-trunk","","PJSIP/trunk-00000004","","Queue","vaccine,t","2021-05-10 09:05:00","","2021-05-10 09:05:40",40,0,"NO ANSWER","DOCUMENTATION","1620605100.4",""
"#;

    #[test]
    fn records_become_calls_keyed_like_the_ami_link() {
        let legs = parse(MASTER, FixedOffset::east_opt(9 * 3600).unwrap()).unwrap();
        let calls = calls(legs);
        assert_eq!(calls.len(), 2);
        let a = &calls[0];
        assert_eq!(a.id, "ami:1620604800.1");
        assert_eq!(a.outcome.as_deref(), Some("answered"));
        assert_eq!(a.answered_by.as_deref(), Some("201"));
        assert_eq!(a.agents_offered, vec!["201".to_string(), "202".to_string()]);
        assert_eq!(a.started_at, "2021-05-10T00:00:00.000Z", "JST is UTC+9");
        assert_eq!(a.hold_s, Some(12));
        assert_eq!(a.queue.as_deref(), Some("vaccine"));
        assert_eq!(calls[1].outcome.as_deref(), Some("abandoned"));
    }

    #[test]
    fn a_bad_record_is_named_and_nothing_passes() {
        let bad = format!("{MASTER}\"\",\"1\",\"2\",\"c\",\"\",\"ch\",\"\",\"Dial\",\"\",\"yesterday\",\"\",\"2021-05-10 09:05:40\",1,0,\"NO ANSWER\",\"\",\"9.9\",\"\"\n\"\",\"1\"\n");
        let problems = parse(&bad, FixedOffset::east_opt(0).unwrap()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("row 4, start:"), "{problems:?}");
        assert!(problems[1].starts_with("row 5, uniqueid:"), "{problems:?}");
    }
}
