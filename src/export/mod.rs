//! 取込・出力: files in and out of the ledger. Clerks move data as CSV files (the resident
//! master from the 住民基本台帳 system, VRS uploads), so every reader here accepts what those
//! systems and Excel really write, and every rejection names the file, the row and the field.
//!
//! - [`import`]: `madoguchi import residents FILE`, the resident master CSV (UTF-8 or Shift_JIS),
//!   all or nothing.
//! - [`cdr`]: `madoguchi import cdr FILE`, Asterisk's `Master.csv`, filling in missed calls.
//! - [`vrs`]: `madoguchi export vrs` (the VRS upload, in batches) and `madoguchi export ledger`
//!   (the 予防接種台帳 layout).

pub mod cdr;
pub mod import;
pub mod vrs;

pub use import::{
    bench_import, import_residents, parse_residents, residents_csv, ImportError, ImportReport,
    Problem,
};

#[cfg(test)]
mod tests;
