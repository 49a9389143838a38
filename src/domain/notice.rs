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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_on_a_letter() {
        let d = NaiveDate::from_ymd_opt(2021, 6, 8).unwrap();
        assert_eq!(md_weekday(d), "6月8日（火）");
        assert_eq!(hm(NaiveTime::from_hms_opt(9, 5, 0).unwrap()), "09:05");
    }
}
