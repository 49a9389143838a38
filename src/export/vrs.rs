//! VRS and the city's health-management system (VACCINATION.md §1.4, §1.5).
//!
//! - [`vrs_csv`]: the bulk-upload CSV, one row per dose, in the layout of §1.5 (no public
//!   specification exists; the layout mirrors VRS's own export columns): a header, UTF-8
//!   without BOM, CRLF line ends, the exact VRS maker strings. Written once per batch by
//!   [`export_vrs`]; a batch is downloaded again from the stored file ([`batch_file`]).
//! - [`ledger_csv`]: the 予防接種台帳 layout of §1.4, one row per resident with a block of
//!   columns per dose.
//!
//! 接種自治体コード (where the dose was given) is written as the ticket's municipality: the
//! ledger serves one city whose venues give doses to its own residents.

use crate::domain::dose::vrs_maker;
use crate::domain::vaccine::jst;
use crate::domain::Product;
use crate::store::exports::{Batch, ExportRow};
use crate::store::vaccinations::Actor;
use crate::store::{parse_ts, Store};
use anyhow::Context;
use chrono::NaiveDate;

/// The header of the VRS upload (§1.5), column by column.
pub const VRS_HEADER: [&str; 11] = [
    "自治体コード",
    "券番号",
    "接種回数",
    "接種日",
    "接種自治体コード",
    "接種会場名",
    "接種医師名",
    "ワクチンメーカー",
    "ロット番号",
    "接種履歴登録日時",
    "個別宛名番号",
];

/// The widest 接種会場名 VRS takes (characters); longer names are cut.
pub const VENUE_NAME_MAX: usize = 30;

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn line(out: &mut String, fields: &[String]) {
    let joined: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&joined.join(","));
    out.push_str("\r\n");
}

/// `YYYYMMDD` of a stored `YYYY-MM-DD`.
fn yyyymmdd(date: &str) -> String {
    date.replace('-', "")
}

/// `YYYYMMDDHHMMSS` in Japan of a stored RFC 3339 UTC time.
fn stamp(ts: &str) -> String {
    parse_ts(ts)
        .map(|t| t.with_timezone(&jst()).format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default()
}

fn maker(product: &str) -> &'static str {
    Product::parse(product).map(vrs_maker).unwrap_or("")
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The VRS upload file of these records (§1.5).
pub fn vrs_csv(rows: &[ExportRow]) -> String {
    let mut out = String::new();
    line(
        &mut out,
        &VRS_HEADER.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    for r in rows {
        let x = &r.record;
        line(
            &mut out,
            &[
                x.municipality_code.clone(),
                x.ticket_no.clone(),
                x.dose.to_string(),
                yyyymmdd(&x.given_on),
                x.municipality_code.clone(),
                cut(&x.venue_name, VENUE_NAME_MAX),
                cut(&x.vaccinator, 20),
                maker(&x.product).to_string(),
                x.lot.clone(),
                stamp(&x.recorded_at),
                r.address_no.clone(),
            ],
        );
    }
    out
}

/// The columns of one dose's block in the 予防接種台帳 layout (§1.4).
const LEDGER_BLOCK: [&str; 8] = [
    "接種履歴登録日時",
    "接種日",
    "券番号",
    "接種自治体コード",
    "接種会場名",
    "接種医師名",
    "ワクチンメーカー",
    "ワクチンロット番号",
];

/// The 予防接種台帳 file (§1.4): 個別宛名番号, then for each dose 1…N (N the highest dose on
/// record, at least 2) its block of 8 columns; empty where a dose is not on record. `rows`
/// are the current records by resident and dose.
pub fn ledger_csv(rows: &[ExportRow]) -> String {
    let blocks = rows.iter().map(|r| r.record.dose).max().unwrap_or(2).max(2);
    let mut out = String::new();
    let mut header = vec!["個別宛名番号".to_string()];
    for n in 1..=blocks {
        for c in LEDGER_BLOCK {
            header.push(format!("{n}回目{c}"));
        }
    }
    line(&mut out, &header);
    let mut i = 0;
    while i < rows.len() {
        let resident = rows[i].record.resident_id;
        let mut fields = vec![rows[i].address_no.clone()];
        fields.resize(1 + 8 * blocks as usize, String::new());
        while i < rows.len() && rows[i].record.resident_id == resident {
            let x = &rows[i].record;
            let at = 1 + 8 * (x.dose as usize - 1);
            let block = [
                stamp(&x.recorded_at),
                yyyymmdd(&x.given_on),
                x.ticket_no.clone(),
                x.municipality_code.clone(),
                cut(&x.venue_name, VENUE_NAME_MAX),
                cut(&x.vaccinator, 20),
                maker(&x.product).to_string(),
                x.lot.clone(),
            ];
            for (k, v) in block.into_iter().enumerate() {
                fields[at + k] = v;
            }
            i += 1;
        }
        line(&mut out, &fields);
    }
    out
}

/// Writes the VRS batch of `day`: the records of that day no batch holds yet. `None` when
/// there is nothing new (then no batch is made).
pub async fn export_vrs(
    store: &Store,
    day: NaiveDate,
    actor: Actor<'_>,
) -> anyhow::Result<Option<Batch>> {
    store
        .export_vrs_batch(day, actor, vrs_csv)
        .await
        .with_context(|| format!("exporting the doses of {day} for VRS"))
}

/// A batch's file as first written.
pub async fn batch_file(store: &Store, id: i64) -> anyhow::Result<Option<Batch>> {
    Ok(store.export_batch(id).await?)
}

/// The 予防接種台帳 file of every current record.
pub async fn export_ledger(store: &Store) -> anyhow::Result<String> {
    Ok(ledger_csv(&store.ledger_rows().await?))
}

#[cfg(test)]
mod batch_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::vaccinations::VaccinationRow;

    fn row(resident: i64, dose: i64, venue: &str) -> ExportRow {
        ExportRow {
            record: VaccinationRow {
                id: resident * 10 + dose,
                resident_id: resident,
                dose,
                product: "moderna".into(),
                lot: "3004734".into(),
                vial_id: None,
                venue_id: 1,
                venue_name: venue.into(),
                vaccinator: "多々見\u{3000}良三".into(),
                injection_site: "left_arm".into(),
                given_at: "2021-06-03T01:05:00.000Z".into(),
                given_on: "2021-06-03".into(),
                municipality_code: "262021".into(),
                ticket_no: "0000123456".into(),
                recorded_at: "2021-06-03T01:06:07.890Z".into(),
                recorded_by: None,
                corrects_id: None,
                correction_reason: String::new(),
                superseded_at: None,
                export_batch_id: None,
            },
            address_no: format!("{resident:010}"),
        }
    }

    #[test]
    fn vrs_rows_follow_the_layout() {
        let csv = vrs_csv(&[row(7, 1, "舞鶴文化公園体育館"), row(8, 2, "会館, 東")]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "header, two rows, and the final CRLF");
        assert_eq!(lines[0], VRS_HEADER.join(","));
        assert_eq!(
            lines[1],
            "262021,0000123456,1,20210603,262021,舞鶴文化公園体育館,多々見\u{3000}良三,武田/モデルナ,3004734,20210603100607,0000000007"
        );
        assert!(lines[2].contains(",\"会館, 東\","), "{}", lines[2]);
        assert_eq!(lines[3], "");
        assert!(!csv.starts_with('\u{feff}'), "no BOM");
    }

    #[test]
    fn the_ledger_has_a_block_per_dose() {
        let csv = ledger_csv(&[row(7, 1, "A"), row(7, 2, "B"), row(8, 1, "A")]);
        let lines: Vec<Vec<&str>> = csv
            .trim_end_matches("\r\n")
            .split("\r\n")
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(lines[0].len(), 17);
        assert_eq!(lines[0][1], "1回目接種履歴登録日時");
        assert_eq!(lines[0][16], "2回目ワクチンロット番号");
        assert_eq!(lines[1][0], "0000000007");
        assert_eq!(lines[1][5], "A");
        assert_eq!(lines[1][13], "B");
        assert_eq!(lines[2][9], "", "resident 8 has no dose 2");
        assert!(lines.iter().all(|l| l.len() == 17));
    }
}
