//! `madoguchi export notices`: the assignment notices as a CSV for mail merge in Excel or Word
//! (差し込み印刷): UTF-8 with BOM (Excel opens it as UTF-8) or Shift_JIS (older Word and
//! printing-company templates). One row per resident with a live booking: name, kana, postal
//! code, address, and for each dose the venue, the date with weekday (`6月8日（火）`), the time,
//! and the pickup stop and time when they ride the bus.

use super::excel::{Encoding, ExcelCsv, ExcelFile};
use crate::domain::notice::{hm, md_weekday};
use crate::domain::vaccine::{jst_date, jst_time};
use crate::store::bookings::notices::{NoticeDose, NoticeRow};
use crate::store::{parse_ts, Store};
use chrono::NaiveDate;

pub const HEADER: &[&str] = &[
    "宛名番号",
    "氏名",
    "フリガナ",
    "郵便番号",
    "住所",
    "1回目会場",
    "1回目日付",
    "1回目時刻",
    "1回目乗車場所",
    "1回目乗車時刻",
    "2回目会場",
    "2回目日付",
    "2回目時刻",
    "2回目乗車場所",
    "2回目乗車時刻",
];

fn dose_fields(d: Option<&NoticeDose>) -> [String; 5] {
    let Some(d) = d else {
        return Default::default();
    };
    let starts = parse_ts(&d.starts_at);
    let pickup = d.pickup_at.as_deref().and_then(parse_ts);
    [
        d.venue.clone(),
        starts.map(|t| md_weekday(jst_date(t))).unwrap_or_default(),
        starts.map(|t| hm(jst_time(t))).unwrap_or_default(),
        d.stop.clone().unwrap_or_default(),
        pickup.map(|t| hm(jst_time(t))).unwrap_or_default(),
    ]
}

/// The notices file: CRLF lines, every cell safe to open in Excel (see [`super::excel`]).
pub fn notices_file(rows: &[NoticeRow], encoding: Encoding) -> ExcelFile {
    let mut csv = ExcelCsv::new(HEADER);
    for r in rows {
        let mut fields = vec![
            r.address_no.clone(),
            r.name.clone(),
            r.name_kana.clone(),
            r.postal_code.clone(),
            r.address.clone(),
        ];
        fields.extend(dose_fields(r.dose1.as_ref()));
        fields.extend(dose_fields(r.dose2.as_ref()));
        csv.row(&fields);
    }
    csv.finish(encoding)
}

/// The notices of residents whose first dose falls in `from`–`to` (all, without them).
pub async fn export_notices(
    store: &Store,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    encoding: Encoding,
) -> anyhow::Result<ExcelFile> {
    let rows = store.notices(from, to).await?;
    Ok(notices_file(&rows, encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_as_the_letter_will() {
        let row = NoticeRow {
            resident_id: 1,
            address_no: "0000000001".into(),
            name: "舞鶴 太郎".into(),
            name_kana: "マイヅル タロウ".into(),
            postal_code: "625-0036".into(),
            address: "京都府舞鶴市字浜1番地".into(),
            dose1: Some(NoticeDose {
                venue: "総合文化会館".into(),
                venue_address: String::new(),
                starts_at: "2021-06-08T05:30:00.000Z".into(),
                stop: Some("浜公民館前".into()),
                pickup_at: Some("2021-06-08T04:55:00.000Z".into()),
            }),
            dose2: None,
        };
        let utf8 = notices_file(std::slice::from_ref(&row), Encoding::Utf8Bom);
        assert_eq!(&utf8.bytes[..3], b"\xef\xbb\xbf");
        let text = std::str::from_utf8(&utf8.bytes[3..]).unwrap();
        let line = text.split("\r\n").nth(1).unwrap();
        assert!(
            line.contains("総合文化会館,6月8日（火）,14:30,浜公民館前,13:55"),
            "{line}"
        );
        let sjis = notices_file(&[row], Encoding::ShiftJis);
        assert_eq!(sjis.replaced, 0);
        assert_eq!(encoding_rs::SHIFT_JIS.decode(&sjis.bytes).0, text);
    }
}
