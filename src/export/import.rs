//! 住民データ取込: `madoguchi import residents FILE`, the resident master CSV.
//!
//! The clerk's file comes out of the 住民基本台帳 system or a spreadsheet, so it is read the way
//! such files really are: UTF-8 with or without a BOM, or Shift_JIS (Windows-31J, what Excel on
//! Japanese Windows saves as "CSV"); header names in English or Japanese.
//!
//! All or nothing: every row is checked before anything is written, every problem is listed as
//! `row N, field: reason`, and one bad row rejects the whole file with the ledger unchanged. A
//! half-imported register would leave callers who "are not in the system" with no way for the
//! clerk to tell which half went in.
//!
//! **Row numbers** are the file's line numbers as a text editor or Excel shows them: the header
//! is row 1, so the first resident is row 2 (a quoted field spanning lines counts as the line
//! where its record starts). Blank lines and rows whose fields are all empty (Excel leaves
//! `,,,,` lines behind) are skipped but still counted.
//!
//! Columns (header row; order free; matched ignoring case, spaces, `_`, `-` and full-width
//! forms, so `電話番号１` and `Phone 1` both work):
//!
//! | column | Japanese aliases | required | value |
//! | --- | --- | --- | --- |
//! | `address_no` | 宛名番号 | yes | 宛名番号, 1–20 letters, digits or `-` |
//! | `municipality_code` | 市区町村コード, 自治体コード, 市町村コード, 団体コード | yes | 6 digits, JIS X 0402 check digit |
//! | `ticket_no` | 券番号, 接種券番号 | yes | exactly 10 digits, leading zeros kept |
//! | `name` | 氏名 | yes | kanji name |
//! | `name_kana` | 氏名カナ, フリガナ, カナ氏名, 氏名フリガナ | yes | katakana; hiragana and half-width ｶﾅ are converted |
//! | `birth_date` | 生年月日 | yes | `YYYY-MM-DD` (also `YYYY/M/D`, as Excel writes it) |
//! | `sex` | 性別 | yes | `M`/`F` (also 男/女) |
//! | `postal_code` | 郵便番号 | no | 7 digits, hyphen and 〒 optional; stored `NNN-NNNN` |
//! | `address` | 住所 | no | |
//! | `town` | 町名 | no | 町名 |
//! | `district` | 地区 | no | 地区 |
//! | `phone1` | 電話番号1, 電話番号 | no | any Japanese spelling; needs its area code |
//! | `phone2` | 電話番号2, 携帯電話番号 | no | same |
//! | `intent` | 接種意向 | no | `wants`/`declines`/`undecided`/`none`/`clinic` (also 希望/希望しない/未定/未回答/個別接種); empty = `none` |
//! | `needs_transport` | 送迎要否, 送迎 | no | `0`/`1` (also 不要/要); empty = 0 |
//! | `household_no` | 世帯番号 | no | 世帯番号; residents sharing it form a household |
//!
//! `household_no` goes beyond the DESIGN contract: registers carry a 世帯番号, and the agent's
//! household pick-list is better for it. Unknown columns are an error rather than ignored: a
//! misspelt `phone 1` silently dropped would lose every resident's phone.

use crate::domain::resident::{
    bounded_text, needs_transport_from_register, person_name, NewResident,
};
use crate::domain::text::fold_trimmed;
use crate::domain::{
    AddressNo, BirthDate, Intent, Kana, MunicipalityCode, PhoneNumber, PostalCode, Sex, TicketNo,
};
use crate::store::Store;
use chrono::NaiveDate;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How many problems an error lists; the count says how many there were in all.
pub const MAX_LISTED_PROBLEMS: usize = 200;

/// One thing wrong with the file: where, which column, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line number in the file, the header being row 1.
    pub row: usize,
    /// The column as the file's header wrote it (what the clerk sees in Excel); empty when the
    /// problem is the row or the file as a whole.
    pub field: String,
    /// The column's code name (`birth_date`), for programs; empty like `field`.
    pub column: &'static str,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "row {}: {}", self.row, self.reason)
        } else {
            write!(f, "row {}, {}: {}", self.row, self.field, self.reason)
        }
    }
}

/// Why an import was refused. In every case nothing was written.
///
/// The first line of `Display` is one line naming the file, the first bad row and its field,
/// which is what the CLI prints before exiting non-zero; further lines list every problem.
#[derive(Debug)]
pub enum ImportError {
    /// The file could not be read at all.
    Read {
        file: String,
        source: std::io::Error,
    },
    /// The file was read and is wrong: encoding, header or rows. `problems` is sorted by row and
    /// holds at most [`MAX_LISTED_PROBLEMS`]; `total` counts them all.
    Rejected {
        file: String,
        problems: Vec<Problem>,
        total: usize,
    },
    /// The rows were fine but the database refused them (a concurrent import took a ticket, the
    /// database is down). The transaction rolled back.
    Database { file: String, source: anyhow::Error },
}

impl ImportError {
    /// The problems found in the file (empty for read and database failures).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ImportError::Rejected { problems, .. } => problems,
            _ => &[],
        }
    }

    pub(crate) fn with_file(mut self, name: &str) -> Self {
        match &mut self {
            ImportError::Read { file, .. }
            | ImportError::Rejected { file, .. }
            | ImportError::Database { file, .. } => *file = name.to_string(),
        }
        self
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Read { file, source } => {
                write!(f, "{file}: cannot read the file: {source}")
            }
            ImportError::Database { file, source } => {
                let cause = format!("{source:#}").replace('\n', " ");
                write!(
                    f,
                    "{file}: the database refused the import, nothing was imported: {cause}"
                )
            }
            ImportError::Rejected {
                file,
                problems,
                total,
            } => {
                let Some(first) = problems.first() else {
                    return write!(f, "{file}: rejected, nothing was imported");
                };
                if *total == 1 {
                    return write!(f, "{file}: {first} (nothing was imported)");
                }
                write!(
                    f,
                    "{file}: {first} ({total} problems in all, nothing was imported)"
                )?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                if *total > problems.len() {
                    write!(f, "\n  … and {} more", total - problems.len())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Read { source, .. } => Some(source),
            ImportError::Database { source, .. } => Some(source.as_ref()),
            ImportError::Rejected { .. } => None,
        }
    }
}

/// What an import did, for the clerk's terminal.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub file: String,
    /// `UTF-8`, `UTF-8 (BOM)` or `Shift_JIS`.
    pub encoding: &'static str,
    pub residents: usize,
    pub phones: usize,
    pub households: usize,
    pub elapsed: Duration,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: imported {} residents ({} phones, {} households) from {} in {:.1} s",
            self.file,
            self.residents,
            self.phones,
            self.households,
            self.encoding,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The file an import reads, whole, and its name for the messages; a file that cannot be read
/// is an [`ImportError::Read`] naming it.
pub(crate) async fn read_upload(path: &Path) -> Result<(String, Vec<u8>), ImportError> {
    let file = path.display().to_string();
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok((file, bytes)),
        Err(source) => Err(ImportError::Read { file, source }),
    }
}

/// Reads, checks and imports a resident master file in one transaction.
pub async fn import_residents(store: &Store, path: &Path) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let (file, bytes) = read_upload(path).await?;
    let parsed = parse(&bytes).map_err(|e| e.with_file(&file))?;
    let mut problems = parsed.problems;
    problems.extend(
        already_in_ledger(store, &parsed.columns, &parsed.rows)
            .await
            .map_err(|e| e.with_file(&file))?,
    );
    if !problems.is_empty() {
        return Err(rejected(problems).with_file(&file));
    }
    let residents: Vec<NewResident> = parsed.rows.into_iter().map(|(_, r)| r).collect();
    let phones = residents.iter().map(|r| r.phones.len()).sum();
    let households = count_households(&residents);
    store
        .bulk_insert_residents(&residents)
        .await
        .map_err(|source| ImportError::Database {
            file: file.clone(),
            source,
        })?;
    let report = ImportReport {
        file,
        encoding: parsed.encoding,
        residents: residents.len(),
        phones,
        households,
        elapsed: started.elapsed(),
    };
    tracing::info!(file = %report.file, residents = report.residents, encoding = report.encoding, "residents imported");
    Ok(report)
}

/// Decodes and checks a resident file without touching a database. Duplicates against the
/// ledger are checked by [`import_residents`] only; everything else is checked here.
pub fn parse_residents(bytes: &[u8]) -> Result<Vec<NewResident>, ImportError> {
    let parsed = parse(bytes)?;
    if !parsed.problems.is_empty() {
        return Err(rejected(parsed.problems));
    }
    Ok(parsed.rows.into_iter().map(|(_, r)| r).collect())
}

fn count_households(residents: &[NewResident]) -> usize {
    let mut seen = std::collections::HashSet::new();
    residents
        .iter()
        .filter(|r| match &r.household_no {
            Some(h) => seen.insert(h.as_str()),
            None => true,
        })
        .count()
}

pub(crate) fn rejected(mut problems: Vec<Problem>) -> ImportError {
    problems.sort_by_key(|p| p.row);
    let total = problems.len();
    problems.truncate(MAX_LISTED_PROBLEMS);
    ImportError::Rejected {
        file: "<input>".into(),
        problems,
        total,
    }
}

/// Rows that collide with residents already in the ledger: the same 宛名番号, or the same
/// (市区町村コード, 券番号).
async fn already_in_ledger(
    store: &Store,
    columns: &Columns,
    rows: &[(usize, NewResident)],
) -> Result<Vec<Problem>, ImportError> {
    let db_err = |source| ImportError::Database {
        file: String::new(),
        source,
    };
    let address_nos: Vec<&AddressNo> = rows.iter().map(|(_, r)| &r.address_no).collect();
    let tickets: Vec<_> = rows
        .iter()
        .map(|(_, r)| (&r.municipality_code, &r.ticket_no))
        .collect();
    let taken_nos = store
        .existing_address_nos(&address_nos)
        .await
        .map_err(db_err)?;
    let taken_tickets = store.existing_tickets(&tickets).await.map_err(db_err)?;
    let mut problems = Vec::new();
    for (row, r) in rows {
        if taken_nos.contains(r.address_no.as_str()) {
            problems.push(problem(
                columns,
                Col::AddressNo,
                *row,
                format!("{} is already in the ledger", r.address_no),
            ));
        }
        let key = (
            r.municipality_code.as_str().to_string(),
            r.ticket_no.as_str().to_string(),
        );
        if taken_tickets.contains(&key) {
            problems.push(problem(
                columns,
                Col::TicketNo,
                *row,
                format!("ticket {} {} is already in the ledger", key.0, key.1),
            ));
        }
    }
    Ok(problems)
}

// ---------------------------------------------------------------------------------------------
// Columns

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    AddressNo,
    MunicipalityCode,
    TicketNo,
    Name,
    NameKana,
    BirthDate,
    Sex,
    PostalCode,
    Address,
    Town,
    District,
    Phone1,
    Phone2,
    Intent,
    NeedsTransport,
    HouseholdNo,
}

struct ColumnSpec {
    col: Col,
    code: &'static str,
    aliases: &'static [&'static str],
    required: bool,
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec {
        col: Col::AddressNo,
        code: "address_no",
        aliases: &["宛名番号"],
        required: true,
    },
    ColumnSpec {
        col: Col::MunicipalityCode,
        code: "municipality_code",
        aliases: &[
            "市区町村コード",
            "自治体コード",
            "市町村コード",
            "団体コード",
        ],
        required: true,
    },
    ColumnSpec {
        col: Col::TicketNo,
        code: "ticket_no",
        aliases: &["券番号", "接種券番号"],
        required: true,
    },
    ColumnSpec {
        col: Col::Name,
        code: "name",
        aliases: &["氏名"],
        required: true,
    },
    ColumnSpec {
        col: Col::NameKana,
        code: "name_kana",
        aliases: &["氏名カナ", "フリガナ", "カナ氏名", "氏名フリガナ"],
        required: true,
    },
    ColumnSpec {
        col: Col::BirthDate,
        code: "birth_date",
        aliases: &["生年月日"],
        required: true,
    },
    ColumnSpec {
        col: Col::Sex,
        code: "sex",
        aliases: &["性別"],
        required: true,
    },
    ColumnSpec {
        col: Col::PostalCode,
        code: "postal_code",
        aliases: &["郵便番号"],
        required: false,
    },
    ColumnSpec {
        col: Col::Address,
        code: "address",
        aliases: &["住所"],
        required: false,
    },
    ColumnSpec {
        col: Col::Town,
        code: "town",
        aliases: &["町名"],
        required: false,
    },
    ColumnSpec {
        col: Col::District,
        code: "district",
        aliases: &["地区"],
        required: false,
    },
    ColumnSpec {
        col: Col::Phone1,
        code: "phone1",
        aliases: &["電話番号1", "電話番号"],
        required: false,
    },
    ColumnSpec {
        col: Col::Phone2,
        code: "phone2",
        aliases: &["電話番号2", "携帯電話番号"],
        required: false,
    },
    ColumnSpec {
        col: Col::Intent,
        code: "intent",
        aliases: &["接種意向"],
        required: false,
    },
    ColumnSpec {
        col: Col::NeedsTransport,
        code: "needs_transport",
        aliases: &["送迎要否", "送迎"],
        required: false,
    },
    ColumnSpec {
        col: Col::HouseholdNo,
        code: "household_no",
        aliases: &["世帯番号"],
        required: false,
    },
];

/// The form a header name is compared in: full-width folded, lowercase, without spaces, `_`, `-`.
pub(crate) fn header_key(s: &str) -> String {
    crate::domain::text::fold_width(s)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn spec_for(header: &str) -> Option<&'static ColumnSpec> {
    let key = header_key(header);
    COLUMNS
        .iter()
        .find(|s| header_key(s.code) == key || s.aliases.iter().any(|a| header_key(a) == key))
}

// ---------------------------------------------------------------------------------------------
// Decoding

struct Parsed {
    encoding: &'static str,
    columns: Columns,
    rows: Vec<(usize, NewResident)>,
    problems: Vec<Problem>,
}

fn file_problem(row: usize, reason: impl Into<String>) -> ImportError {
    rejected(vec![Problem {
        row,
        field: String::new(),
        column: "",
        reason: reason.into(),
    }])
}

/// UTF-8 (with or without BOM) when the bytes are valid UTF-8, else Shift_JIS, else an error
/// naming the line of the first byte that fits neither.
pub(crate) fn decode(
    bytes: &[u8],
) -> Result<(std::borrow::Cow<'_, str>, &'static str), ImportError> {
    let line_of = |offset: usize| {
        bytes[..offset.min(bytes.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    };
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(file_problem(
            1,
            "the file is UTF-16 (Excel's \"Unicode text\"); save it as CSV UTF-8 or CSV",
        ));
    }
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return match std::str::from_utf8(rest) {
            Ok(s) => Ok((s.into(), "UTF-8 (BOM)")),
            Err(e) => Err(file_problem(
                line_of(e.valid_up_to() + 3),
                format!(
                    "the file starts with a UTF-8 BOM but byte {} is not UTF-8",
                    e.valid_up_to() + 3
                ),
            )),
        };
    }
    let utf8_error = match std::str::from_utf8(bytes) {
        Ok(s) => return Ok((s.into(), "UTF-8")),
        Err(e) => e,
    };
    if let Some(s) =
        encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes)
    {
        return Ok((s.into_owned().into(), "Shift_JIS"));
    }
    // Neither: name the line where Shift_JIS decoding broke (UTF-8's point if it got further).
    let mut decoder = encoding_rs::SHIFT_JIS.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() * 2);
    let (_, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    let offset = read.max(utf8_error.valid_up_to());
    Err(file_problem(
        line_of(offset),
        format!("the file is neither UTF-8 nor Shift_JIS (bad byte near offset {offset})"),
    ))
}

fn parse(bytes: &[u8]) -> Result<Parsed, ImportError> {
    let (text, encoding) = decode(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(file_problem(1, format!("cannot read the header: {e}"))),
        None => return Err(file_problem(1, "the file is empty: a header row is needed")),
    };
    let header_row = header.position().map_or(1, |p| p.line() as usize);
    let columns = read_header(&header, header_row)?;
    let width = header.len();

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut seen_address: HashMap<String, usize> = HashMap::new();
    let mut seen_ticket: HashMap<(String, String), usize> = HashMap::new();
    let today = chrono::Utc::now().date_naive();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let row = e.position().map_or(0, |p| p.line() as usize);
                problems.push(Problem {
                    row,
                    field: String::new(),
                    column: "",
                    reason: format!("unreadable: {e}"),
                });
                continue;
            }
        };
        let row = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() != width {
            problems.push(Problem {
                row,
                field: String::new(),
                column: "",
                reason: format!("has {} fields, the header has {width}", record.len()),
            });
            continue;
        }
        // Duplicates are found on the raw keys, so a clash is named even when the earlier row
        // has other faults.
        let mut dup = false;
        let raw = |col: Col| fold_trimmed(columns.get(col, &record).unwrap_or(""));
        let address_key = raw(Col::AddressNo);
        if !address_key.is_empty() {
            if let Some(first) = seen_address.get(&address_key) {
                problems.push(problem(
                    &columns,
                    Col::AddressNo,
                    row,
                    format!("{address_key} is also on row {first}"),
                ));
                dup = true;
            } else {
                seen_address.insert(address_key, row);
            }
        }
        let ticket_key = (raw(Col::MunicipalityCode), raw(Col::TicketNo));
        if !ticket_key.1.is_empty() {
            if let Some(first) = seen_ticket.get(&ticket_key) {
                problems.push(problem(
                    &columns,
                    Col::TicketNo,
                    row,
                    format!("ticket {} is also on row {first}", ticket_key.1),
                ));
                dup = true;
            } else {
                seen_ticket.insert(ticket_key, row);
            }
        }
        match parse_row(&columns, &record, row, today) {
            Ok(r) if !dup => rows.push((row, r)),
            Ok(_) => {}
            Err(mut p) => problems.append(&mut p),
        }
    }
    Ok(Parsed {
        encoding,
        columns,
        rows,
        problems,
    })
}

/// Where each known column sits, and its header as the file spells it.
struct Columns {
    at: Vec<(Col, usize, String)>,
}

impl Columns {
    fn get<'r>(&self, col: Col, record: &'r csv::StringRecord) -> Option<&'r str> {
        self.at
            .iter()
            .find(|(c, _, _)| *c == col)
            .and_then(|(_, i, _)| record.get(*i))
    }
    fn header(&self, col: Col) -> String {
        self.at
            .iter()
            .find(|(c, _, _)| *c == col)
            .map(|(_, _, h)| h.clone())
            .unwrap_or_else(|| code_of(col).to_string())
    }
}

fn code_of(col: Col) -> &'static str {
    COLUMNS.iter().find(|s| s.col == col).map_or("", |s| s.code)
}

fn read_header(header: &csv::StringRecord, row: usize) -> Result<Columns, ImportError> {
    let mut at: Vec<(Col, usize, String)> = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        let written = raw
            .trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}')
            .to_string();
        let head = |reason: String| Problem {
            row,
            field: written.clone(),
            column: "",
            reason,
        };
        if written.is_empty() {
            problems.push(Problem {
                row,
                field: format!("column {}", i + 1),
                column: "",
                reason: "the header is empty; every column needs a name".into(),
            });
            continue;
        }
        match spec_for(&written) {
            None => problems.push(head(format!(
                "unknown column (expected: {})",
                COLUMNS
                    .iter()
                    .map(|s| s.code)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Some(spec) => {
                if let Some((_, j, other)) = at.iter().find(|(c, _, _)| *c == spec.col) {
                    problems.push(head(format!(
                        "names the same column as {other:?} (column {})",
                        j + 1
                    )));
                } else {
                    at.push((spec.col, i, written.clone()));
                }
            }
        }
    }
    let missing: Vec<&str> = COLUMNS
        .iter()
        .filter(|s| s.required && !at.iter().any(|(c, _, _)| *c == s.col))
        .map(|s| s.code)
        .collect();
    for m in missing {
        let spec = COLUMNS.iter().find(|s| s.code == m);
        let aliases = spec.map(|s| s.aliases.join(" / ")).unwrap_or_default();
        problems.push(Problem {
            row,
            field: m.to_string(),
            column: spec.map_or("", |s| s.code),
            reason: format!("required column is missing (also accepted as {aliases})"),
        });
    }
    if problems.is_empty() {
        Ok(Columns { at })
    } else {
        Err(rejected(problems))
    }
}

fn problem(columns: &Columns, col: Col, row: usize, reason: String) -> Problem {
    Problem {
        row,
        field: columns.header(col),
        column: code_of(col),
        reason,
    }
}

// ---------------------------------------------------------------------------------------------
// Values

fn parse_row(
    columns: &Columns,
    record: &csv::StringRecord,
    row: usize,
    today: NaiveDate,
) -> Result<NewResident, Vec<Problem>> {
    let mut problems = Vec::new();
    let field = |col: Col| -> &str { columns.get(col, record).map(clean).unwrap_or("") };
    // Each check records its own problem and yields None, so one row reports all its faults.
    macro_rules! check {
        ($col:expr, $result:expr) => {
            match $result {
                Ok(v) => Some(v),
                Err(reason) => {
                    problems.push(problem(columns, $col, row, reason));
                    None
                }
            }
        };
    }
    let address_no = check!(Col::AddressNo, AddressNo::parse(field(Col::AddressNo)));
    let municipality_code = check!(
        Col::MunicipalityCode,
        MunicipalityCode::parse(field(Col::MunicipalityCode)).map_err(|e| e.to_string())
    );
    let ticket_no = check!(Col::TicketNo, ticket_no(field(Col::TicketNo)));
    let name = check!(Col::Name, person_name(field(Col::Name)));
    let name_kana = check!(Col::NameKana, Kana::parse(field(Col::NameKana)));
    let birth_date = check!(
        Col::BirthDate,
        BirthDate::parse(field(Col::BirthDate), today)
    );
    let sex = check!(Col::Sex, Sex::from_register(field(Col::Sex)));
    let postal_code = check!(
        Col::PostalCode,
        PostalCode::parse_optional(field(Col::PostalCode))
    );
    let address = check!(Col::Address, bounded_text(field(Col::Address), 200));
    let town = check!(Col::Town, bounded_text(field(Col::Town), 50));
    let district = check!(Col::District, bounded_text(field(Col::District), 50));
    let phone1 = check!(Col::Phone1, phone(field(Col::Phone1), "home"));
    let phone2 = check!(Col::Phone2, phone(field(Col::Phone2), "other"));
    let intent = check!(Col::Intent, Intent::from_register(field(Col::Intent)));
    let needs_transport = check!(
        Col::NeedsTransport,
        needs_transport_from_register(field(Col::NeedsTransport))
    );
    let household_no = check!(
        Col::HouseholdNo,
        bounded_text(&fold_trimmed(field(Col::HouseholdNo)), 20)
    );
    let (
        Some(address_no),
        Some(municipality_code),
        Some(ticket_no),
        Some(name),
        Some(name_kana),
        Some(birth_date),
        Some(sex),
        Some(postal_code),
        Some(address),
        Some(town),
        Some(district),
        Some(phone1),
        Some(phone2),
        Some(intent),
        Some(needs_transport),
        Some(household_no),
    ) = (
        address_no,
        municipality_code,
        ticket_no,
        name,
        name_kana,
        birth_date,
        sex,
        postal_code,
        address,
        town,
        district,
        phone1,
        phone2,
        intent,
        needs_transport,
        household_no,
    )
    else {
        return Err(problems);
    };
    Ok(NewResident {
        address_no,
        municipality_code,
        ticket_no,
        name,
        name_kana,
        birth_date,
        sex,
        postal_code,
        address,
        town,
        district,
        household_no: (!household_no.is_empty()).then_some(household_no),
        intent,
        needs_transport,
        notes: String::new(),
        phones: phone1.into_iter().chain(phone2).collect(),
    })
}

/// Trims ASCII and ideographic spaces: registers pad fixed-width fields with either.
fn clean(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace())
}

fn ticket_no(s: &str) -> Result<TicketNo, String> {
    let s = fold_trimmed(s);
    match TicketNo::parse(&s) {
        Ok(t) => Ok(t),
        Err(_) if !s.is_empty() && s.len() < 10 && s.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!(
            "must be 10 digits, got {s:?} ({} digits: did a spreadsheet drop the leading zeros?)",
            s.len()
        ))
        }
        Err(e) => Err(e.to_string()),
    }
}

type PhoneEntry = (PhoneNumber, String, &'static str);

/// A register number must be a full number: a short one is a typo or Excel's dropped zero.
fn phone(s: &str, landline_kind: &'static str) -> Result<Option<PhoneEntry>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let number = PhoneNumber::parse_register(s)?;
    let kind = if number.is_mobile() {
        "mobile"
    } else {
        landline_kind
    };
    Ok(Some((number, s.to_string(), kind)))
}

// ---------------------------------------------------------------------------------------------
// Writing the same format (round trips, the benchmark, `madoguchi demo` sample files)

/// The English header, in the DESIGN order, plus `household_no`.
pub const HEADER: [&str; 16] = [
    "address_no",
    "municipality_code",
    "ticket_no",
    "name",
    "name_kana",
    "birth_date",
    "sex",
    "postal_code",
    "address",
    "town",
    "district",
    "phone1",
    "phone2",
    "intent",
    "needs_transport",
    "household_no",
];

/// Writes residents as a UTF-8 resident CSV that [`parse_residents`] reads back (the first two
/// phones, as written).
pub fn residents_csv(residents: &[NewResident]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(residents.len() * 200));
    w.write_record(HEADER)?;
    for r in residents {
        let birth = r.birth_date.iso();
        let phone = |i: usize| r.phones.get(i).map_or("", |p| p.1.as_str());
        w.write_record([
            r.address_no.as_str(),
            r.municipality_code.as_str(),
            r.ticket_no.as_str(),
            &r.name,
            r.name_kana.as_str(),
            &birth,
            r.sex.code(),
            r.postal_code.as_ref().map_or("", |p| p.as_str()),
            &r.address,
            &r.town,
            &r.district,
            phone(0),
            phone(1),
            r.intent.code(),
            if r.needs_transport { "1" } else { "0" },
            r.household_no.as_deref().unwrap_or(""),
        ])?;
    }
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?)
}

// ---------------------------------------------------------------------------------------------
// Benchmark

/// Timings of one [`bench_import`] run.
#[derive(Debug, Clone)]
pub struct ImportBench {
    pub rows: usize,
    pub bytes: usize,
    /// Synthesising the residents and writing the CSV (not part of an import).
    pub prepare: Duration,
    /// Decoding and checking every row.
    pub parse: Duration,
    /// Looking for the rows' 宛名番号 and tickets in the ledger.
    pub check: Duration,
    /// The one insert transaction.
    pub insert: Duration,
}

impl fmt::Display for ImportBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.parse + self.check + self.insert;
        write!(
            f,
            "import {} rows ({:.1} MB): parse {:.2} s, ledger check {:.2} s, insert {:.2} s, total {:.2} s ({:.0} rows/s); preparing the file took {:.2} s",
            self.rows,
            self.bytes as f64 / 1e6,
            self.parse.as_secs_f64(),
            self.check.as_secs_f64(),
            self.insert.as_secs_f64(),
            total.as_secs_f64(),
            self.rows as f64 / total.as_secs_f64().max(1e-9),
            self.prepare.as_secs_f64(),
        )
    }
}

/// Imports a resident CSV through the real path (text → parse → ledger check → one
/// transaction) and times each step; `prepare` is how long making the file took (the caller,
/// e.g. the benchmark with its synthetic city, made it). Use an empty database.
pub async fn bench_import(
    store: &Store,
    csv: &str,
    prepare: Duration,
) -> anyhow::Result<ImportBench> {
    let t = Instant::now();
    let parsed = parse(csv.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(parsed.problems.is_empty(), "{}", rejected(parsed.problems));
    let parse_time = t.elapsed();
    let t = Instant::now();
    let clashes = already_in_ledger(store, &parsed.columns, &parsed.rows)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        clashes.is_empty(),
        "run the import benchmark on an empty database: {}",
        rejected(clashes)
    );
    let check = t.elapsed();
    let residents: Vec<NewResident> = parsed.rows.into_iter().map(|(_, r)| r).collect();
    let t = Instant::now();
    store.bulk_insert_residents(&residents).await?;
    Ok(ImportBench {
        rows: residents.len(),
        bytes: csv.len(),
        prepare,
        parse: parse_time,
        check,
        insert: t.elapsed(),
    })
}
