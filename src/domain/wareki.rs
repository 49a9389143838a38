//! 和暦: birth dates as elderly callers and their paper say them, `昭和25年6月6日`, and as
//! staff type them quickly, `S25.6.6` or `S250606`, or `25/6/6` with the era chosen beside the
//! field. Parsed into the Gregorian date the register keeps; a date the era never had (昭和64年
//! 1月8日: Heisei began that day) or the calendar never had (2月30日) is refused, not rolled
//! over into another day.

use super::text::fold_trimmed;
use chrono::{Datelike, NaiveDate};
use std::fmt;

/// 元号: the eras a living resident can be born in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    Meiji,
    Taisho,
    Showa,
    Heisei,
    Reiwa,
}

/// Each era with its first day, oldest first; an era ends the day before the next begins.
const ERAS: [(Era, (i32, u32, u32)); 5] = [
    (Era::Meiji, (1868, 1, 25)),
    (Era::Taisho, (1912, 7, 30)),
    (Era::Showa, (1926, 12, 25)),
    (Era::Heisei, (1989, 1, 8)),
    (Era::Reiwa, (2019, 5, 1)),
];

fn ymd((y, m, d): (i32, u32, u32)) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

impl Era {
    /// The era's first day.
    pub fn start(self) -> NaiveDate {
        ERAS.iter()
            .find(|(e, _)| *e == self)
            .map(|(_, d)| ymd(*d))
            .unwrap_or(NaiveDate::MIN)
    }

    /// The day after the era's last day (None: the era goes on).
    fn next_start(self) -> Option<NaiveDate> {
        let i = ERAS.iter().position(|(e, _)| *e == self)?;
        ERAS.get(i + 1).map(|(_, d)| ymd(*d))
    }

    pub fn kanji(self) -> &'static str {
        match self {
            Era::Meiji => "明治",
            Era::Taisho => "大正",
            Era::Showa => "昭和",
            Era::Heisei => "平成",
            Era::Reiwa => "令和",
        }
    }

    /// The era a form's era chooser or a query names: `showa`, `S`, `昭和` or `昭`.
    pub fn parse(name: &str) -> Option<Era> {
        let s = fold_trimmed(name);
        let lower = s.to_ascii_lowercase();
        [
            (Era::Meiji, ["meiji", "m", "明治", "明"]),
            (Era::Taisho, ["taisho", "t", "大正", "大"]),
            (Era::Showa, ["showa", "s", "昭和", "昭"]),
            (Era::Heisei, ["heisei", "h", "平成", "平"]),
            (Era::Reiwa, ["reiwa", "r", "令和", "令"]),
        ]
        .into_iter()
        .find(|(_, names)| names.contains(&lower.as_str()))
        .map(|(era, _)| era)
    }

    /// The era of a Gregorian date, and the year within it (1 for 元年).
    pub fn of(date: NaiveDate) -> Option<(Era, i32)> {
        ERAS.iter()
            .rev()
            .find(|(_, start)| date >= ymd(*start))
            .map(|(era, start)| (*era, date.year() - start.0 + 1))
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kanji())
    }
}

/// `昭和25年6月6日` for 1950-06-06 (`元年` for an era's first year).
pub fn format(date: NaiveDate) -> String {
    match Era::of(date) {
        Some((era, 1)) => format!("{era}元年{}月{}日", date.month(), date.day()),
        Some((era, y)) => format!("{era}{y}年{}月{}日", date.month(), date.day()),
        None => date.format("%Y-%m-%d").to_string(),
    }
}

/// A 和暦 date in any of the written forms, to its Gregorian date. `default_era` is the era
/// chosen beside the field, for a date typed without one (`25/6/6`).
///
/// Forms: `昭和25年6月6日`, `昭和元年12月25日`, `昭25.6.6`, `S25.6.6`, `s25/6/6`, `S25-6-6`,
/// `S250606` (era letter then YYMMDD), and without an era `25/6/6`, `25.6.6`, `25年6月6日`,
/// `250606`. Full-width digits and spaces are folded first.
pub fn parse(written: &str, default_era: Option<Era>) -> Result<NaiveDate, String> {
    let folded: String = fold_trimmed(written)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if folded.is_empty() {
        return Err("required".into());
    }
    let (era, rest) = split_era(&folded);
    let era = era.or(default_era).ok_or_else(|| {
        format!("{folded:?}: which era? write it (昭和25年6月6日, S25.6.6) or choose one")
    })?;
    let (year, month, day) = numbers(rest).ok_or_else(|| {
        format!("{folded:?} is not a date (昭和25年6月6日, S25.6.6, S250606, 25/6/6)")
    })?;
    if year == 0 {
        return Err(format!(
            "{folded:?}: there is no year 0 (the first is 元年)"
        ));
    }
    let gregorian = era.start().year() + year as i32 - 1;
    let date = NaiveDate::from_ymd_opt(gregorian, month, day)
        .ok_or_else(|| format!("no such date {}{year}年{month}月{day}日", era.kanji()))?;
    let outside = date < era.start() || era.next_start().is_some_and(|next| date >= next);
    if outside {
        let ran = match era.next_start().and_then(|next| next.pred_opt()) {
            Some(last) => format!("{} to {last}", era.start()),
            None => format!("{} on", era.start()),
        };
        return Err(format!(
            "{era}{year}年{month}月{day}日 is not a day of {era} (it ran from {ran})"
        ));
    }
    Ok(date)
}

/// The era written at the front, if any, and what follows it.
fn split_era(s: &str) -> (Option<Era>, &str) {
    for era in [Era::Meiji, Era::Taisho, Era::Showa, Era::Heisei, Era::Reiwa] {
        let kanji = era.kanji();
        if let Some(rest) = s.strip_prefix(kanji) {
            return (Some(era), rest);
        }
        let short = &kanji[..kanji
            .char_indices()
            .nth(1)
            .map(|(i, _)| i)
            .unwrap_or(kanji.len())];
        if let Some(rest) = s.strip_prefix(short) {
            return (Some(era), rest);
        }
    }
    let mut chars = s.chars();
    if let Some(first) = chars.next() {
        if first.is_ascii_alphabetic() {
            if let Some(era) = Era::parse(&first.to_string()) {
                let rest = chars.as_str();
                let rest = rest.strip_prefix(['.', '/', '-']).unwrap_or(rest);
                return (Some(era), rest);
            }
        }
    }
    (None, s)
}

/// Year (元 = 1), month, day from `25年6月6日`, `25.6.6`, `25/6/6`, `25-6-6` or `250606`.
fn numbers(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
        let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
        return Some((n(0..2)?, n(2..4)?, n(4..6)?));
    }
    let s = s.strip_suffix('日').unwrap_or(s);
    let parts: Vec<&str> = s.split(['年', '月', '.', '/', '-']).collect();
    if parts.len() != 3 {
        return None;
    }
    let number = |p: &str, max_len: usize| -> Option<u32> {
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let year = if parts[0] == "元" {
        1
    } else {
        number(parts[0], 2)?
    };
    Some((year, number(parts[1], 2)?, number(parts[2], 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_written_forms() {
        for s in [
            "昭和25年6月6日",
            "昭和２５年６月６日",
            " 昭和 25年 6月 6日 ",
            "昭25.6.6",
            "S25.6.6",
            "s25.6.6",
            "S25/6/6",
            "S.25.6.6",
            "S250606",
            "Ｓ２５０６０６",
        ] {
            assert_eq!(parse(s, None), Ok(d(1950, 6, 6)), "{s}");
        }
    }

    #[test]
    fn an_era_chosen_beside_the_field() {
        assert_eq!(parse("25/6/6", Some(Era::Showa)), Ok(d(1950, 6, 6)));
        assert_eq!(parse("25.6.6", Some(Era::Showa)), Ok(d(1950, 6, 6)));
        assert_eq!(parse("250606", Some(Era::Showa)), Ok(d(1950, 6, 6)));
        assert_eq!(parse("2/6/6", Some(Era::Heisei)), Ok(d(1990, 6, 6)));
        // An era written in the text wins over the one chosen.
        assert_eq!(parse("H2.6.6", Some(Era::Showa)), Ok(d(1990, 6, 6)));
        assert!(parse("25/6/6", None).unwrap_err().contains("era"));
        assert_eq!(Era::parse("showa"), Some(Era::Showa));
        assert_eq!(Era::parse("S"), Some(Era::Showa));
        assert_eq!(Era::parse("昭和"), Some(Era::Showa));
        assert_eq!(Era::parse("X"), None);
    }

    #[test]
    fn era_boundaries() {
        assert_eq!(parse("昭和64年1月7日", None), Ok(d(1989, 1, 7)));
        assert!(
            parse("昭和64年1月8日", None).is_err(),
            "Heisei began that day"
        );
        assert_eq!(parse("平成元年1月8日", None), Ok(d(1989, 1, 8)));
        assert_eq!(parse("H1.1.8", None), Ok(d(1989, 1, 8)));
        assert!(parse("平成元年1月7日", None).is_err(), "still Showa");
        assert_eq!(parse("昭和元年12月25日", None), Ok(d(1926, 12, 25)));
        assert!(parse("昭和元年12月24日", None).is_err(), "still Taisho");
        assert_eq!(parse("大正15年12月24日", None), Ok(d(1926, 12, 24)));
        assert_eq!(parse("平成31年4月30日", None), Ok(d(2019, 4, 30)));
        assert!(
            parse("平成31年5月1日", None).is_err(),
            "Reiwa began that day"
        );
        assert_eq!(parse("令和元年5月1日", None), Ok(d(2019, 5, 1)));
    }

    #[test]
    fn impossible_dates_are_refused() {
        for s in [
            "昭和25年2月30日",
            "昭和25年13月1日",
            "昭和25年6月0日",
            "昭和0年6月6日",
            "S250230",
            "S25.6",
            "S25.6.6.6",
            "S2506",
            "昭和二十五年6月6日",
            "Q25.6.6",
            "",
        ] {
            assert!(parse(s, Some(Era::Showa)).is_err(), "{s}");
        }
        // 29 February only in a leap year: 昭和23 = 1948 was one, 昭和25 = 1950 was not.
        assert_eq!(parse("S23.2.29", None), Ok(d(1948, 2, 29)));
        assert!(parse("S25.2.29", None).is_err());
    }

    #[test]
    fn gregorian_to_wareki_and_back() {
        assert_eq!(format(d(1950, 6, 6)), "昭和25年6月6日");
        assert_eq!(format(d(1989, 1, 8)), "平成元年1月8日");
        assert_eq!(format(d(1989, 1, 7)), "昭和64年1月7日");
        for date in [d(1926, 12, 25), d(1941, 3, 2), d(1989, 1, 7), d(2019, 5, 1)] {
            assert_eq!(parse(&format(date), None), Ok(date));
        }
    }
}
