//! 生年月日: a birth date as registers and callers write it.

use super::text::fold_trimmed;
use super::wareki::{self, Era};
use chrono::NaiveDate;
use serde::Serialize;
use std::fmt;

/// The oldest age the register accepts: a birth date further back is a typo.
pub const MAX_AGE_YEARS: u32 = 125;

/// A birth date: not in the future, not more than [`MAX_AGE_YEARS`] ago. Stored `YYYY-MM-DD`.
/// Not `Deserialize`: the bounds need today's date, so it is made only by [`BirthDate::parse`]
/// or [`BirthDate::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    /// Parses `YYYY-MM-DD`, also `YYYY/M/D` as Excel writes it, with full-width digits folded.
    /// `today` bounds it (the caller reads the clock; the domain does not).
    pub fn parse(written: &str, today: NaiveDate) -> Result<BirthDate, String> {
        let s = fold_trimmed(written);
        if s.is_empty() {
            return Err("required".into());
        }
        let parts: Vec<&str> = s.split(['-', '/']).collect();
        let shape_ok = parts.len() == 3
            && parts[0].len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && parts[1].len() <= 2
            && parts[2].len() <= 2;
        if !shape_ok {
            return Err(format!("must be YYYY-MM-DD, got {s:?}"));
        }
        let num = |p: &str| p.parse::<u32>().unwrap_or(0);
        let date = NaiveDate::from_ymd_opt(num(parts[0]) as i32, num(parts[1]), num(parts[2]))
            .ok_or_else(|| format!("no such date {s}"))?;
        BirthDate::new(date, today).map_err(|why| format!("{s} {why}"))
    }

    /// What a person types in a search: the Gregorian forms of [`BirthDate::parse`], or 和暦
    /// (`昭和25年6月6日`, `S25.6.6`, `S250606`, or `25/6/6` with `era` chosen beside the field),
    /// see [`wareki::parse`].
    pub fn parse_written(
        written: &str,
        era: Option<Era>,
        today: NaiveDate,
    ) -> Result<BirthDate, String> {
        let s = fold_trimmed(written);
        let b = s.as_bytes();
        if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
            // 19500606: Gregorian, as a scanner or a spreadsheet writes it.
            let dashed = format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..]);
            return BirthDate::parse(&dashed, today);
        }
        // Four digits then a separator is a Gregorian year; 250606 is 和暦 (YYMMDD).
        let gregorian =
            b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && !b[4].is_ascii_digit();
        if gregorian {
            return BirthDate::parse(&s, today);
        }
        let date = wareki::parse(&s, era)?;
        BirthDate::new(date, today).map_err(|why| format!("{} {why}", wareki::format(date)))
    }

    /// A date already held as a date (a synthetic register, a test), with the same bounds.
    pub fn new(date: NaiveDate, today: NaiveDate) -> Result<BirthDate, String> {
        if date > today {
            return Err("is in the future".into());
        }
        if today.years_since(date).is_some_and(|y| y > MAX_AGE_YEARS) {
            return Err(format!("is more than {MAX_AGE_YEARS} years ago"));
        }
        Ok(BirthDate(date))
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// The stored form, `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }
}

impl fmt::Display for BirthDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2021, 5, 1).unwrap()
    }

    #[test]
    fn spellings() {
        for s in [
            "1941-03-02",
            "1941/3/2",
            "１９４１－０３－０２",
            " 1941-3-02 ",
        ] {
            assert_eq!(
                BirthDate::parse(s, today()).unwrap().iso(),
                "1941-03-02",
                "{s}"
            );
        }
    }

    #[test]
    fn wareki_or_gregorian() {
        let showa = Some(Era::Showa);
        for s in [
            "1950-06-06",
            "昭和25年6月6日",
            "S25.6.6",
            "S250606",
            "25/6/6",
        ] {
            assert_eq!(
                BirthDate::parse_written(s, showa, today()).unwrap().iso(),
                "1950-06-06",
                "{s}"
            );
        }
        assert!(BirthDate::parse_written("25/6/6", None, today()).is_err());
        assert!(BirthDate::parse_written("昭和64年1月8日", None, today()).is_err());
        assert!(BirthDate::parse_written("R5.1.1", None, today())
            .unwrap_err()
            .contains("future"));
    }

    #[test]
    fn refusals() {
        assert!(BirthDate::parse("", today()).is_err());
        assert!(BirthDate::parse("41-03-02", today()).is_err());
        assert!(BirthDate::parse("1941-02-30", today()).is_err());
        assert!(BirthDate::parse("2021-05-02", today())
            .unwrap_err()
            .contains("future"));
        assert!(BirthDate::parse("1890-01-01", today())
            .unwrap_err()
            .contains("125"));
        assert!(BirthDate::parse("2021-05-01", today()).is_ok());
    }
}
