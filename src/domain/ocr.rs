//! 接種券のOCR行: the 18 digits printed in OCR-B on a ticket, and carried by its QR code
//! (VACCINATION.md §1.3): 券種 (1) + 回数 (1) + 市町村コード (6, its last digit a JIS X 0402
//! check digit) + 券番号 (10). A barcode scanner types them as digits and Enter.
//!
//! The only check digit in the line is the municipality code's; the 券番号 has none (each
//! municipality numbers its own tickets). A scan with a wrong municipality check digit is a
//! misread (the tablets confused 1 and 4), never a ticket, so it is refused.

use super::ticket::{MunicipalityCode, TicketError, TicketNo};

/// The 18 digits of a ticket's OCR line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketLine {
    /// 券種: the kind of ticket, one digit as printed.
    pub kind: u8,
    /// 回数: the dose the ticket is for (1–9).
    pub dose: u8,
    pub municipality: MunicipalityCode,
    pub ticket: TicketNo,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcrError {
    #[error("an OCR line is 18 digits (券種, 回数, 市町村コード, 券番号), got {0} digits")]
    Length(usize),
    #[error("an OCR line holds digits only, got {0:?}")]
    NotDigits(String),
    #[error("回数 (the dose) must be 1 to 9, got 0")]
    Dose,
    #[error(transparent)]
    Ticket(#[from] TicketError),
}

impl TicketLine {
    /// Parses a scanned or typed line: full-width digits folded; spaces and hyphens between
    /// groups (as some printers space them) ignored.
    pub fn parse(written: &str) -> Result<TicketLine, OcrError> {
        let folded = super::text::fold_trimmed(written);
        let digits: String = folded
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OcrError::NotDigits(folded));
        }
        if digits.len() != 18 {
            return Err(OcrError::Length(digits.len()));
        }
        let b = digits.as_bytes();
        let kind = b[0] - b'0';
        let dose = b[1] - b'0';
        if dose == 0 {
            return Err(OcrError::Dose);
        }
        let municipality = MunicipalityCode::parse(&digits[2..8])?;
        let ticket = TicketNo::parse(&digits[8..18])?;
        Ok(TicketLine {
            kind,
            dose,
            municipality,
            ticket,
        })
    }

    /// The 18 digits again, as printed.
    pub fn digits(&self) -> String {
        format!(
            "{}{}{}{}",
            self.kind, self.dose, self.municipality, self.ticket
        )
    }
}

/// What a scanner (or a clerk) typed at reception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// 10 digits: the 券番号 alone (the barcode carries only this).
    Ticket(TicketNo),
    /// 18 digits: the OCR line or the QR code's content.
    Line(TicketLine),
}

impl Scan {
    /// 10 or 18 digits (full width folded, spaces and hyphens ignored).
    pub fn parse(written: &str) -> Result<Scan, OcrError> {
        let folded = super::text::fold_trimmed(written);
        let digits: String = folded
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Scan::Ticket(TicketNo::parse(&digits)?));
        }
        if digits.len() != 18 && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OcrError::Length(digits.len()));
        }
        Ok(Scan::Line(TicketLine::parse(&digits)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_line_parses_into_its_parts() {
        // 券種 1, dose 2, 舞鶴市 262021, 券番号 0000123456.
        let line = TicketLine::parse("122620210000123456").unwrap();
        assert_eq!(line.kind, 1);
        assert_eq!(line.dose, 2);
        assert_eq!(line.municipality.as_str(), "262021");
        assert_eq!(line.ticket.as_str(), "0000123456");
        assert_eq!(line.digits(), "122620210000123456");
        // Full width, and spaced as printed.
        assert_eq!(TicketLine::parse("１２ 262021 0000123456").unwrap(), line);
        // Other real municipalities.
        for code in ["131016", "011002", "272205"] {
            assert!(TicketLine::parse(&format!("11{code}9999999999")).is_ok());
        }
    }

    #[test]
    fn a_wrong_municipality_check_digit_is_refused() {
        // 262021 is 舞鶴市; 262024 (a 1 read as 4) fails its check digit.
        let err = TicketLine::parse("122620240000123456").unwrap_err();
        assert_eq!(
            err,
            OcrError::Ticket(TicketError::CheckDigit("262024".into(), '1'))
        );
        assert!(err.to_string().contains("check digit"), "{err}");
        assert_eq!(Scan::parse("122620240000123456").unwrap_err(), err);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert_eq!(
            TicketLine::parse("12262021000012345").unwrap_err(),
            OcrError::Length(17)
        );
        assert!(matches!(
            TicketLine::parse("1226202100001234x6"),
            Err(OcrError::NotDigits(_))
        ));
        assert_eq!(
            TicketLine::parse("102620210000123456").unwrap_err(),
            OcrError::Dose
        );
    }

    #[test]
    fn a_scan_is_a_ticket_number_or_a_line() {
        assert_eq!(
            Scan::parse("0000123456").unwrap(),
            Scan::Ticket(TicketNo::parse("0000123456").unwrap())
        );
        assert!(matches!(
            Scan::parse("122620210000123456"),
            Ok(Scan::Line(_))
        ));
        assert_eq!(Scan::parse("12345").unwrap_err(), OcrError::Length(5));
        assert!(Scan::parse("ヤマダ").is_err());
    }
}
