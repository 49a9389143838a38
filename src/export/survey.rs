//! `madoguchi import survey FILE`: the city's intent survey (意向調査), one answer per resident:
//! whether they want a dose, whether they need the bus, and where they would board it. The
//! assignment (`madoguchi assign`) reads these answers.
//!
//! Columns (header row; UTF-8 with or without BOM, or Shift_JIS; Japanese names accepted):
//! `address_no` (宛名番号) or `ticket_no` (券番号), at least one per row; `intent` (接種意向:
//! `wants`/`declines`/`undecided`/`none`/`clinic` or 希望/希望しない/未定/未回答/個別接種);
//! `needs_transport` (送迎, 0/1 or 不要/要; blank keeps what the ledger has); `pickup` (乗車希望場所,
//! the stop the resident would board at; blank keeps what the ledger has).
//!
//! All or nothing, like the resident import: every row is checked (format, the resident exists,
//! the same resident twice) before anything is written, and the answers are written in one
//! transaction with one audit entry per resident whose answers changed.

use super::import::{decode, header_key, read_upload, rejected, ImportError, Problem};
use crate::domain::resident::{bounded_text, needs_transport_from_register, Intent};
use crate::domain::text::fold_trimmed;
use crate::domain::{AddressNo, TicketNo};
pub use crate::store::survey::{ResidentKey, SurveyAnswer};
use crate::store::Store;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a survey import did.
#[derive(Debug, Clone)]
pub struct SurveyReport {
    pub file: String,
    pub encoding: &'static str,
    /// Rows read.
    pub answers: usize,
    /// Residents whose answers changed (the rest already had them).
    pub changed: usize,
    pub wants: usize,
    pub needs_transport: usize,
    pub elapsed: Duration,
}

impl fmt::Display for SurveyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} answers from {} ({} residents changed; {} want a dose, {} need transport) in {:.1} s",
            self.file,
            self.answers,
            self.encoding,
            self.changed,
            self.wants,
            self.needs_transport,
            self.elapsed.as_secs_f64()
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Col {
    AddressNo,
    TicketNo,
    Intent,
    NeedsTransport,
    Pickup,
}

const COLUMNS: &[(Col, &str, &[&str])] = &[
    (Col::AddressNo, "address_no", &["宛名番号"]),
    (Col::TicketNo, "ticket_no", &["券番号", "接種券番号"]),
    (Col::Intent, "intent", &["接種意向", "意向", "接種希望"]),
    (
        Col::NeedsTransport,
        "needs_transport",
        &["送迎", "送迎要否", "送迎希望"],
    ),
    (
        Col::Pickup,
        "pickup",
        &["乗車希望場所", "希望乗車場所", "乗車場所", "pickup_stop"],
    ),
];

/// The longest pickup place kept.
const MAX_PICKUP: usize = 40;

fn problem(row: usize, header: &str, code: &'static str, reason: impl Into<String>) -> Problem {
    Problem {
        row,
        field: header.to_string(),
        column: code,
        reason: reason.into(),
    }
}

/// Decodes and checks a survey file without touching a database.
pub fn parse_survey(bytes: &[u8]) -> Result<(Vec<SurveyAnswer>, &'static str), ImportError> {
    let (text, encoding) = decode(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(rejected(vec![problem(1, "", "", e.to_string())])),
        None => return Err(rejected(vec![problem(1, "", "", "the file is empty")])),
    };
    // Which column holds what; the header as written, for messages.
    let mut at: HashMap<Col, (usize, String)> = HashMap::new();
    let mut problems = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let key = header_key(name);
        let Some((col, _, _)) = COLUMNS.iter().find(|(_, code, aliases)| {
            header_key(code) == key || aliases.iter().any(|a| header_key(a) == key)
        }) else {
            continue; // other columns (names, notes) are the clerk's, and ignored
        };
        if at.insert(*col, (i, name.to_string())).is_some() {
            problems.push(problem(1, name, "", "this column appears twice"));
        }
    }
    if !at.contains_key(&Col::Intent) {
        problems.push(problem(1, "", "intent", "no intent (接種意向) column"));
    }
    if !at.contains_key(&Col::AddressNo) && !at.contains_key(&Col::TicketNo) {
        problems.push(problem(
            1,
            "",
            "address_no",
            "no address_no (宛名番号) or ticket_no (券番号) column",
        ));
    }
    if !problems.is_empty() {
        return Err(rejected(problems));
    }
    // Every Col is in COLUMNS; the fallback only keeps this free of a panic.
    let code = |col: Col| {
        COLUMNS
            .iter()
            .find(|c| c.0 == col)
            .map_or("column", |c| c.1)
    };

    let mut answers = Vec::new();
    let mut seen: HashMap<ResidentKey, usize> = HashMap::new();
    for (i, record) in records.enumerate() {
        let row = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(problem(row, "", "", format!("not CSV: {e}")));
                continue;
            }
        };
        if record.iter().all(|f| f.trim().is_empty()) {
            continue; // Excel's trailing blank lines
        }
        let field = |col: Col| -> Option<(&str, &str)> {
            at.get(&col)
                .map(|(i, name)| (record.get(*i).unwrap_or(""), name.as_str()))
        };
        let mut bad = |col: Col, header: &str, reason: String| {
            problems.push(problem(row, header, code(col), reason));
        };
        let address = field(Col::AddressNo).filter(|(v, _)| !v.trim().is_empty());
        let ticket = field(Col::TicketNo).filter(|(v, _)| !v.trim().is_empty());
        let key = match (address, ticket) {
            (Some((v, h)), _) => match AddressNo::parse(v) {
                Ok(a) => Some(ResidentKey::AddressNo(a.as_str().to_string())),
                Err(e) => {
                    bad(Col::AddressNo, h, e);
                    None
                }
            },
            (None, Some((v, h))) => match TicketNo::parse(&fold_trimmed(v)) {
                Ok(t) => Some(ResidentKey::TicketNo(t.as_str().to_string())),
                Err(e) => {
                    bad(Col::TicketNo, h, e.to_string());
                    None
                }
            },
            (None, None) => {
                bad(
                    Col::AddressNo,
                    "",
                    "neither 宛名番号 nor 券番号 is given".into(),
                );
                None
            }
        };
        let (v, h) = field(Col::Intent).unwrap_or(("", ""));
        let intent = match Intent::from_register(v) {
            Ok(i) => Some(i),
            Err(e) => {
                bad(Col::Intent, h, e);
                None
            }
        };
        let needs_transport = match field(Col::NeedsTransport) {
            Some((v, _)) if v.trim().is_empty() => Some(None),
            Some((v, h)) => match needs_transport_from_register(v) {
                Ok(t) => Some(Some(t)),
                Err(e) => {
                    bad(Col::NeedsTransport, h, e);
                    None
                }
            },
            None => Some(None),
        };
        let pickup = match field(Col::Pickup) {
            Some((v, _)) if v.trim().is_empty() => Some(None),
            Some((v, h)) => match bounded_text(&fold_trimmed(v), MAX_PICKUP) {
                Ok(p) if p.chars().any(char::is_control) => {
                    bad(Col::Pickup, h, "control characters".into());
                    None
                }
                Ok(p) => Some(Some(p)),
                Err(e) => {
                    bad(Col::Pickup, h, e);
                    None
                }
            },
            None => Some(None),
        };
        let (Some(key), Some(intent), Some(needs_transport), Some(pickup)) =
            (key, intent, needs_transport, pickup)
        else {
            continue;
        };
        if let Some(first) = seen.insert(key.clone(), row) {
            problems.push(problem(
                row,
                "",
                "",
                format!("{key} already answered on row {first}"),
            ));
            continue;
        }
        answers.push(SurveyAnswer {
            row,
            key,
            intent,
            needs_transport,
            pickup,
        });
    }
    if !problems.is_empty() {
        return Err(rejected(problems));
    }
    Ok((answers, encoding))
}

/// Reads, checks and writes a survey file in one transaction.
pub async fn import_survey(store: &Store, path: &Path) -> Result<SurveyReport, ImportError> {
    let started = Instant::now();
    let (file, bytes) = read_upload(path).await?;
    let (answers, encoding) = parse_survey(&bytes).map_err(|e| e.with_file(&file))?;
    let outcome = store
        .apply_survey(&answers)
        .await
        .map_err(|source| ImportError::Database {
            file: file.clone(),
            source,
        })?;
    let changed = match outcome {
        Ok(changed) => changed,
        Err(unknown) => {
            let problems = unknown
                .into_iter()
                .map(|(row, why)| problem(row, "", "", why))
                .collect();
            return Err(rejected(problems).with_file(&file));
        }
    };
    let report = SurveyReport {
        file,
        encoding,
        answers: answers.len(),
        changed,
        wants: answers.iter().filter(|a| a.intent == Intent::Wants).count(),
        needs_transport: answers
            .iter()
            .filter(|a| a.needs_transport == Some(true))
            .count(),
        elapsed: started.elapsed(),
    };
    tracing::info!(file = %report.file, answers = report.answers, changed = report.changed, "survey imported");
    Ok(report)
}
