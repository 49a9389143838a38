//! 通知書: how a notice writes a date and time (`6月8日（火）`, `14:30`), and the Shift_JIS
//! fallback for characters Excel's Japanese code page lacks. No I/O.

use chrono::{Datelike, NaiveDate, NaiveTime};

/// `6月8日（火）`: month, day and the weekday in kanji, with full-width brackets.
pub fn md_weekday(date: NaiveDate) -> String {
    const DAYS: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];
    format!(
        "{}月{}日（{}）",
        date.month(),
        date.day(),
        DAYS[date.weekday().num_days_from_monday() as usize]
    )
}

/// `14:30`.
pub fn hm(time: NaiveTime) -> String {
    time.format("%H:%M").to_string()
}

/// Text as Shift_JIS bytes; a character Shift_JIS cannot carry (髙, 﨑 in some fonts' forms,
/// emoji) becomes 〓 (the geta mark, the printed register's own stand-in). Returns the bytes
/// and how many characters were replaced.
pub fn to_shift_jis(text: &str) -> (Vec<u8>, usize) {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    if !unmappable {
        return (bytes.into_owned(), 0);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut replaced = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buf));
        if bad {
            replaced += 1;
            out.extend_from_slice(&encoding_rs::SHIFT_JIS.encode("〓").0);
        } else {
            out.extend_from_slice(&b);
        }
    }
    (out, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_on_a_letter() {
        let d = NaiveDate::from_ymd_opt(2021, 6, 8).unwrap();
        assert_eq!(md_weekday(d), "6月8日（火）");
        assert_eq!(hm(NaiveTime::from_hms_opt(9, 5, 0).unwrap()), "09:05");
    }

    #[test]
    fn shift_jis_with_a_stand_in() {
        let (b, n) = to_shift_jis("舞鶴 太郎");
        assert_eq!(n, 0);
        assert_eq!(encoding_rs::SHIFT_JIS.decode(&b).0, "舞鶴 太郎");
        let (b, n) = to_shift_jis("😀山");
        assert_eq!(n, 1);
        assert_eq!(encoding_rs::SHIFT_JIS.decode(&b).0, "〓山");
    }
}
