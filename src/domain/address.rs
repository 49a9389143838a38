//! 宛名番号 and 郵便番号: the register's person id and the postal code.

use super::text::fold_trimmed;
use super::text::text_newtype;
use serde::{Deserialize, Serialize};

/// 宛名番号: the municipal person id, 1–20 letters, digits or `-` (widths folded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddressNo(String);

impl AddressNo {
    pub fn parse(written: &str) -> Result<AddressNo, String> {
        let s = fold_trimmed(written);
        if s.is_empty() {
            return Err("required".into());
        }
        if s.len() > 20 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("must be 1-20 letters, digits or '-', got {s:?}"));
        }
        Ok(AddressNo(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 郵便番号: 7 digits, stored `NNN-NNNN`; written with or without the hyphen or `〒`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PostalCode(String);

impl PostalCode {
    pub fn parse(written: &str) -> Result<PostalCode, String> {
        let folded = fold_trimmed(written);
        let digits: String = folded
            .trim_start_matches('〒')
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .collect();
        if digits.len() != 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("must be 7 digits like 625-0080, got {written:?}"));
        }
        Ok(PostalCode(format!("{}-{}", &digits[..3], &digits[3..])))
    }

    /// An optional field: empty means none.
    pub fn parse_optional(written: &str) -> Result<Option<PostalCode>, String> {
        if fold_trimmed(written).is_empty() {
            return Ok(None);
        }
        PostalCode::parse(written).map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(AddressNo, String);
text_newtype!(PostalCode, String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_numbers() {
        assert_eq!(
            AddressNo::parse(" ０１２３-AB ").unwrap().as_str(),
            "0123-AB"
        );
        assert!(AddressNo::parse("").is_err());
        assert!(AddressNo::parse("12 34").is_err());
        assert!(AddressNo::parse(&"1".repeat(21)).is_err());
    }

    #[test]
    fn postal_codes() {
        for s in [
            "625-0080",
            "6250080",
            "〒625-0080",
            "６２５－００８０",
            "〒６２５００８０",
        ] {
            assert_eq!(PostalCode::parse(s).unwrap().as_str(), "625-0080", "{s}");
        }
        assert!(PostalCode::parse("625-008").is_err());
        assert!(PostalCode::parse("abc-defg").is_err());
        assert_eq!(PostalCode::parse_optional(" ").unwrap(), None);
        assert!(PostalCode::parse_optional("12").is_err());
    }
}
