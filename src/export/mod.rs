//! 取込・出力: files in and out of the ledger. Clerks move data as CSV files (the resident
//! master from the 住民基本台帳 system, VRS uploads), so every reader here accepts what those
//! systems and Excel really write, and every rejection names the file, the row and the field.
//!
//! - [`import`]: `madoguchi import residents FILE`, the resident master CSV (UTF-8 or Shift_JIS),
//!   all or nothing.
//! - [`cdr`]: `madoguchi import cdr FILE`, Asterisk's `Master.csv`, filling in missed calls.
//! - [`survey`]: `madoguchi import survey FILE`, the intent survey (意向調査), all or nothing.
//! - [`logs`]: `madoguchi export calls` and `export inquiries`, for Excel ([`excel`]: UTF-8 with
//!   BOM or Shift_JIS, formulas neutralised).
//! - [`notices`]: `madoguchi export notices`, the assignment notices for mail merge.
//! - [`vrs`]: `madoguchi export vrs` (the VRS upload, in batches) and `madoguchi export ledger`
//!   (the 予防接種台帳 layout).

pub mod cdr;
pub mod excel;
pub mod import;
pub mod logs;
pub mod notices;
pub mod survey;
pub mod vrs;
pub mod vsys;

pub use import::{
    bench_import, import_residents, parse_residents, residents_csv, ImportError, ImportReport,
    Problem,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod survey_tests;
