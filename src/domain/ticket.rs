//! 接種券: the ticket identity, the pair (市区町村コード, 券番号).
//!
//! A 券番号 is unique only within its municipality, so the ledger keys a ticket by both.

use super::text::text_newtype;
use serde::{Deserialize, Serialize};

/// 全国地方公共団体コード (JIS X 0402): 6 digits, the last a check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MunicipalityCode(String);

/// 券番号: the 10-digit ticket number, leading zeros kept; no national check digit exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TicketNo(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("municipality code must be 6 digits, got {0:?}")]
    CodeShape(String),
    #[error("municipality code {0} fails its check digit (expected {1})")]
    CheckDigit(String, char),
    #[error("ticket number must be 10 digits (leading zeros kept), got {0:?}")]
    TicketShape(String),
}

/// The JIS X 0402 check digit of a 5-digit code: weights 6,5,4,3,2, last digit of 11 − (sum mod 11).
pub fn check_digit(code5: &[u8; 5]) -> char {
    let sum: u32 = code5
        .iter()
        .zip([6u32, 5, 4, 3, 2])
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    char::from(b'0' + ((11 - sum % 11) % 10) as u8)
}

impl MunicipalityCode {
    /// Parses a code as written (full-width digits folded).
    pub fn parse(s: &str) -> Result<Self, TicketError> {
        let s = super::text::fold_trimmed(s);
        let s = s.as_str();
        let b = s.as_bytes();
        if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
            return Err(TicketError::CodeShape(s.to_string()));
        }
        let expected = check_digit(&[b[0], b[1], b[2], b[3], b[4]]);
        if char::from(b[5]) != expected {
            return Err(TicketError::CheckDigit(s.to_string(), expected));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TicketNo {
    /// Parses a ticket number as written (full-width digits folded).
    pub fn parse(s: &str) -> Result<Self, TicketError> {
        let s = super::text::fold_trimmed(s);
        let s = s.as_str();
        if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TicketError::TicketShape(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(MunicipalityCode, TicketError);
text_newtype!(TicketNo, TicketError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_codes_pass() {
        for c in [
            "262021", "261009", "131016", "011002", "072095", "112038", "272205",
        ] {
            assert!(MunicipalityCode::parse(c).is_ok(), "{c}");
        }
    }

    #[test]
    fn wrong_check_digit_fails() {
        assert_eq!(
            MunicipalityCode::parse("262022"),
            Err(TicketError::CheckDigit("262022".into(), '1'))
        );
        assert!(matches!(
            MunicipalityCode::parse("26202"),
            Err(TicketError::CodeShape(_))
        ));
        assert!(matches!(
            MunicipalityCode::parse("26202a"),
            Err(TicketError::CodeShape(_))
        ));
    }

    #[test]
    fn ticket_keeps_leading_zeros() {
        assert_eq!(
            TicketNo::parse("0000012345").unwrap().as_str(),
            "0000012345"
        );
        assert!(TicketNo::parse("12345").is_err());
        assert!(TicketNo::parse("00000123456").is_err());
        assert!(TicketNo::parse("00000x2345").is_err());
        assert_eq!(
            TicketNo::parse("００００１２３４５６").unwrap().as_str(),
            "0000123456"
        );
        assert!(MunicipalityCode::parse("２６２０２１").is_ok());
    }
}
