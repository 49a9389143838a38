//! 電話番号: Japanese phone numbers, normalised once at the edge.
//!
//! A caller ID arrives in many spellings (`0773-62-2300`, `+81773622300`, full-width digits,
//! `(0773)62-2300`); the ledger stores one key per number so that a lookup finds every resident
//! on it. Japanese numbers become E.164 (`+81…`); other international numbers keep their `+`;
//! short numbers (an internal extension, a test trunk's `123`) keep their digits, so they still
//! match exactly. Withheld or unknown caller IDs resolve to no one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A normalised phone number: the lookup key stored in `phones.e164`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

/// Why a written number could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the caller withheld the number or the PBX did not know it")]
    Withheld,
    #[error("not a phone number: {0:?}")]
    Invalid(String),
}

/// Which kind of number a resident gave: 自宅 (home), 携帯 (mobile), 家族 (a family member's
/// number they call from), or other. The codes are the `phones.kind` CHECK's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneKind {
    Home,
    Mobile,
    Family,
    Other,
}

impl PhoneKind {
    pub const ALL: &'static [PhoneKind] = &[
        PhoneKind::Home,
        PhoneKind::Mobile,
        PhoneKind::Family,
        PhoneKind::Other,
    ];

    pub fn parse(code: &str) -> Option<PhoneKind> {
        PhoneKind::ALL
            .iter()
            .copied()
            .find(|k| k.code() == code.trim())
    }

    pub fn code(self) -> &'static str {
        match self {
            PhoneKind::Home => "home",
            PhoneKind::Mobile => "mobile",
            PhoneKind::Family => "family",
            PhoneKind::Other => "other",
        }
    }
}

/// Caller-ID spellings that mean "no number": they must never match a resident.
const WITHHELD: &[&str] = &[
    "",
    "anonymous",
    "<unknown>",
    "unknown",
    "restricted",
    "private",
    "unavailable",
    "withheld",
    "非通知",
    "公衆電話",
    "表示圏外",
];

impl PhoneNumber {
    /// Parses a number as a person or a PBX wrote it.
    pub fn parse(written: &str) -> Result<Self, PhoneError> {
        let folded: String = super::text::fold_width(written.trim())
            .chars()
            .map(fold_dash)
            .collect();
        let lower = folded.trim().to_lowercase();
        if WITHHELD.contains(&lower.as_str()) {
            return Err(PhoneError::Withheld);
        }
        let mut plus = false;
        let mut digits = String::with_capacity(folded.len());
        for (i, c) in folded.trim().chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => plus = true,
                ' ' | '-' | '(' | ')' | '.' | '/' => {}
                _ => return Err(PhoneError::Invalid(written.to_string())),
            }
        }
        if digits.is_empty() || digits.len() > 15 {
            return Err(PhoneError::Invalid(written.to_string()));
        }
        let e164 = if plus {
            match digits.strip_prefix("81") {
                // "+81 (0)773 …": a trunk zero written after the country code.
                Some(rest) => format!("+81{}", rest.strip_prefix('0').unwrap_or(rest)),
                None => format!("+{digits}"),
            }
        } else if let Some(rest) = digits.strip_prefix("010") {
            // 010 is Japan's international call prefix.
            format!("+{rest}")
        } else if let Some(rest) = digits.strip_prefix('0') {
            if (9..=10).contains(&rest.len()) {
                format!("+81{rest}")
            } else if rest.starts_with('0') && rest.len() > 3 {
                format!("+{}", &rest[1..])
            } else {
                digits
            }
        } else if digits.starts_with("81") && (11..=12).contains(&digits.len()) {
            format!("+{digits}")
        } else {
            digits
        };
        Ok(PhoneNumber(e164))
    }

    /// Parses a number from the resident register: a full number with its area code, since a
    /// short one there is a typo or a spreadsheet's dropped leading zero.
    pub fn parse_register(written: &str) -> Result<Self, String> {
        let number =
            Self::parse(written).map_err(|_| format!("not a phone number: {written:?}"))?;
        if !number.as_str().starts_with('+') {
            return Err(format!(
                "{written:?} has no area code (did a spreadsheet drop the leading 0?)"
            ));
        }
        Ok(number)
    }

    /// Parses a caller ID; withheld, unknown or garbage numbers give `None` (no one matches).
    pub fn from_caller_id(written: &str) -> Option<Self> {
        Self::parse(written).ok()
    }

    /// The stored key: E.164 (`+81773622300`) or the digits of a short number.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domestic spelling a Japanese agent reads aloud (`0773622300`).
    pub fn national(&self) -> String {
        match self.0.strip_prefix("+81") {
            Some(rest) => format!("0{rest}"),
            None => self.0.clone(),
        }
    }

    /// True for 090/080/070 mobiles.
    pub fn is_mobile(&self) -> bool {
        ["+8190", "+8180", "+8170"]
            .iter()
            .any(|p| self.0.starts_with(p))
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The caller's name as the PBX gave it, or nothing: the withheld markers above (`<unknown>`,
/// `anonymous`, …) and a name that only repeats the number say nothing an agent should read
/// aloud.
pub fn caller_display_name(name: &str) -> String {
    let n = name.trim();
    let lower = n.to_lowercase();
    let placeholder = WITHHELD.contains(&lower.as_str()) || lower == "<anonymous>";
    if placeholder
        || n.chars()
            .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
    {
        String::new()
    } else {
        n.to_string()
    }
}

/// The dashes people type between digit groups (the prolonged-sound mark ー from a kana IME,
/// the minus sign, the hyphens and dashes NFKC leaves alone) are all separators.
fn fold_dash(c: char) -> char {
    match c {
        'ー' | '‐' | '‑' | '−' | '―' | '–' | '—' => '-',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_kinds_are_the_schema_codes() {
        for k in PhoneKind::ALL {
            assert_eq!(PhoneKind::parse(k.code()), Some(*k));
        }
        assert_eq!(PhoneKind::parse(" mobile "), Some(PhoneKind::Mobile));
        assert_eq!(PhoneKind::parse("fax"), None);
        assert_eq!(PhoneKind::parse(""), None);
    }

    fn key(s: &str) -> String {
        PhoneNumber::parse(s).unwrap().as_str().to_string()
    }

    #[test]
    fn spellings_of_city_hall_agree() {
        for s in [
            "0773-62-2300",
            "0773622300",
            "+81773622300",
            "81773622300",
            "(0773)62-2300",
            "０７７３－６２－２３００",
            "+81 (0)773 62 2300",
            "０７７３ー６２ー２３００",
        ] {
            assert_eq!(key(s), "+81773622300", "{s}");
        }
    }

    #[test]
    fn mobiles() {
        assert_eq!(key("090-1234-5678"), "+819012345678");
        assert!(PhoneNumber::parse("090-1234-5678").unwrap().is_mobile());
        assert!(!PhoneNumber::parse("0773-62-2300").unwrap().is_mobile());
        assert_eq!(key("819012345678"), "+819012345678");
    }

    #[test]
    fn withheld_resolves_to_no_one() {
        for s in [
            "anonymous",
            "Anonymous",
            "<unknown>",
            "unknown",
            "",
            "  ",
            "Restricted",
        ] {
            assert_eq!(PhoneNumber::parse(s), Err(PhoneError::Withheld), "{s:?}");
            assert!(PhoneNumber::from_caller_id(s).is_none());
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            PhoneNumber::parse("abc"),
            Err(PhoneError::Invalid(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("12+34"),
            Err(PhoneError::Invalid(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("1234567890123456"),
            Err(PhoneError::Invalid(_))
        ));
    }

    #[test]
    fn foreign_and_short_numbers_keep_their_identity() {
        assert_eq!(key("+31150010001"), "+31150010001");
        assert_eq!(key("123"), "123");
        assert_eq!(key("777"), "777");
        assert_eq!(key("010-31-150010001"), "+31150010001");
    }

    #[test]
    fn register_numbers_need_an_area_code() {
        assert!(PhoneNumber::parse_register("0773-62-2300").is_ok());
        assert!(PhoneNumber::parse_register("773622300").is_err());
        assert!(PhoneNumber::parse_register("abc").is_err());
    }

    #[test]
    fn national_spelling() {
        assert_eq!(
            PhoneNumber::parse("+81773622300").unwrap().national(),
            "0773622300"
        );
    }
}
