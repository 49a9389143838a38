//! 接種記録の規則: what a dose recorded at a venue must satisfy, and the values it is written
//! with (lot number, vaccinator, injection site, the VRS maker string). No I/O: the store calls
//! [`check_dose`] inside the write transaction that records the dose, on the resident's rows
//! as they are in that transaction.
//!
//! The rules (VACCINATION.md §3): a dose is recorded once; dose N+1 needs dose N on record and
//! comes no earlier than the product's minimum interval after it; dose 2 is the product of
//! dose 1 (boosters may mix, from [`BOOSTER_MIN_MONTHS`] months after the previous dose); the
//! resident is at least the product's minimum age on the day.

use super::resident::code_enum;
use super::vaccine::{check_age, check_next_dose, DoseRuleError, Product};
use super::FieldError;
use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// The most doses a record may carry (VRS 接種回数 is one digit).
pub const MAX_DOSE: u8 = 9;

/// A booster (dose 3 on) comes at least this many months after the previous dose: the rule
/// from 2022-05-25 (it was 8, then 7 and 6 months before that).
pub const BOOSTER_MIN_MONTHS: u32 = 5;

/// Hours a vial stays usable after it is opened (diluted): Pfizer's 6 hours at room
/// temperature, applied to every product.
pub const VIAL_HOURS: i64 = 6;

code_enum!(
    /// 接種部位.
    InjectionSite { LeftArm = "left_arm", RightArm = "right_arm", LeftThigh = "left_thigh", RightThigh = "right_thigh" }
);

impl InjectionSite {
    pub fn name_ja(self) -> &'static str {
        match self {
            InjectionSite::LeftArm => "左上腕",
            InjectionSite::RightArm => "右上腕",
            InjectionSite::LeftThigh => "左大腿",
            InjectionSite::RightThigh => "右大腿",
        }
    }

    /// A site from a form: the code or the Japanese name; empty is the left arm (the usual).
    pub fn parse_field(field: &'static str, written: &str) -> Result<InjectionSite, FieldError> {
        let s = super::text::fold_trimmed(written).to_ascii_lowercase();
        if s.is_empty() {
            return Ok(InjectionSite::LeftArm);
        }
        InjectionSite::parse(&s)
            .or_else(|| {
                InjectionSite::ALL
                    .iter()
                    .copied()
                    .find(|x| x.name_ja() == s)
            })
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    format!(
                        "unknown injection site {written:?}; expected one of {}",
                        InjectionSite::CODES.join(", ")
                    ),
                )
            })
    }
}

/// ロット番号: up to 20 letters and digits as printed on the vial (`FA4597`, `3004734`),
/// folded to upper case and half width.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LotNo(String);

impl LotNo {
    pub fn parse(written: &str) -> Result<LotNo, String> {
        let s = super::text::fold_trimmed(written).to_ascii_uppercase();
        if s.is_empty() {
            return Err("the lot number is empty".into());
        }
        if s.chars().count() > 20 {
            return Err(format!("a lot number has at most 20 characters, got {s:?}"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "a lot number is letters A-Z and digits only, got {written:?}"
            ));
        }
        Ok(LotNo(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LotNo {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        LotNo::parse(&s)
    }
}
impl From<LotNo> for String {
    fn from(v: LotNo) -> String {
        v.0
    }
}
impl std::fmt::Display for LotNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// 接種医師名: 1 to 20 characters (the VRS column), runs of spaces made one ideographic space
/// (a name's kanji are kept as written: see [`super::text`]), no control characters.
pub fn vaccinator(written: &str) -> Result<String, String> {
    let s = super::text::one_space(written);
    if s.is_empty() {
        return Err("name the vaccinator (the doctor who gave the dose)".into());
    }
    if s.chars().count() > 20 {
        return Err(format!(
            "the vaccinator's name has at most 20 characters (VRS), got {}",
            s.chars().count()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("the vaccinator's name has a control character".into());
    }
    Ok(s)
}

/// The VRS preset maker string (VACCINATION.md §1.4, §1.5), exactly.
pub fn vrs_maker(product: Product) -> &'static str {
    match product {
        Product::Pfizer => "ファイザー",
        Product::Moderna => "武田/モデルナ",
        Product::AstraZeneca => "アストラゼネカ",
    }
}

/// A dose on record, as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenDose {
    pub dose: u8,
    pub product: Product,
    pub given_on: NaiveDate,
}

/// Why a dose may not be recorded. Each reads as a sentence for the venue screen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoseRefusal {
    #[error("dose {dose} of this resident is already recorded (given on {given_on}); correct that record instead")]
    AlreadyRecorded { dose: u8, given_on: NaiveDate },
    #[error("dose {dose} needs dose {prev} on record first")]
    PreviousMissing { dose: u8, prev: u8 },
    #[error(
        "dose {dose} on {date} would be too early: a booster may be given from {earliest}, \
         {months} months after dose {prev} on {prev_date}"
    )]
    BoosterTooEarly {
        dose: u8,
        prev: u8,
        date: NaiveDate,
        prev_date: NaiveDate,
        earliest: NaiveDate,
        months: u32,
    },
    #[error("{0}")]
    Rule(#[from] DoseRuleError),
}

impl DoseRefusal {
    /// A stable code for screens and tests.
    pub fn code(&self) -> &'static str {
        match self {
            DoseRefusal::AlreadyRecorded { .. } => "already_recorded",
            DoseRefusal::PreviousMissing { .. } => "previous_dose_missing",
            DoseRefusal::BoosterTooEarly { .. } => "too_early",
            DoseRefusal::Rule(e) => e.code(),
        }
    }
}

/// The dose a screen proposes: one after the highest on record.
pub fn proposed_dose(history: &[GivenDose]) -> u8 {
    history
        .iter()
        .map(|d| d.dose)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
        .min(MAX_DOSE)
}

/// The rules for recording dose `dose` of `product` on `on`, given the resident's current
/// records (`history`) and birth date.
pub fn check_dose(
    history: &[GivenDose],
    birth: NaiveDate,
    dose: u8,
    product: Product,
    on: NaiveDate,
) -> Result<(), DoseRefusal> {
    if let Some(same) = history.iter().find(|d| d.dose == dose) {
        return Err(DoseRefusal::AlreadyRecorded {
            dose,
            given_on: same.given_on,
        });
    }
    check_age(product, birth, on)?;
    if dose <= 1 {
        return Ok(());
    }
    let prev = dose - 1;
    let Some(before) = history.iter().find(|d| d.dose == prev) else {
        return Err(DoseRefusal::PreviousMissing { dose, prev });
    };
    if dose == 2 {
        check_next_dose(1, before.product, before.given_on, product, on)?;
        return Ok(());
    }
    let earliest = before
        .given_on
        .checked_add_months(Months::new(BOOSTER_MIN_MONTHS))
        .unwrap_or(NaiveDate::MAX);
    if on < earliest {
        return Err(DoseRefusal::BoosterTooEarly {
            dose,
            prev,
            date: on,
            prev_date: before.given_on,
            earliest,
            months: BOOSTER_MIN_MONTHS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn given(dose: u8, product: Product, on: &str) -> GivenDose {
        GivenDose {
            dose,
            product,
            given_on: d(on),
        }
    }

    const BIRTH: &str = "1941-03-02";

    #[test]
    fn each_refusal_has_its_code() {
        let h = [given(1, Product::Pfizer, "2021-06-03")];
        let birth = d(BIRTH);
        let code = |dose, p, on| {
            check_dose(&h, birth, dose, p, d(on))
                .err()
                .map(|e| e.code())
        };
        assert_eq!(
            code(1, Product::Pfizer, "2021-06-24"),
            Some("already_recorded")
        );
        assert_eq!(code(2, Product::Pfizer, "2021-06-21"), Some("too_early"));
        assert_eq!(code(2, Product::Pfizer, "2021-06-22"), None);
        assert_eq!(
            code(2, Product::Moderna, "2021-07-22"),
            Some("different_product")
        );
        assert_eq!(
            code(3, Product::Pfizer, "2022-01-01"),
            Some("previous_dose_missing")
        );
        assert_eq!(
            check_dose(&[], d("2010-01-01"), 1, Product::Pfizer, d("2021-06-03"))
                .unwrap_err()
                .code(),
            "too_young"
        );
        assert_eq!(
            check_dose(&[], birth, 2, Product::Pfizer, d("2021-06-03"))
                .unwrap_err()
                .to_string(),
            "dose 2 needs dose 1 on record first"
        );
    }

    #[test]
    fn boosters_may_mix_but_wait_five_months() {
        let h = [
            given(1, Product::Pfizer, "2021-06-03"),
            given(2, Product::Pfizer, "2021-06-24"),
        ];
        let birth = d(BIRTH);
        let err = check_dose(&h, birth, 3, Product::Moderna, d("2021-11-23")).unwrap_err();
        assert_eq!(err.code(), "too_early");
        assert!(err.to_string().contains("2021-11-24"), "{err}");
        assert!(check_dose(&h, birth, 3, Product::Moderna, d("2021-11-24")).is_ok());
        assert_eq!(proposed_dose(&h), 3);
        assert_eq!(proposed_dose(&[]), 1);
    }

    #[test]
    fn values_are_folded_and_checked() {
        assert_eq!(LotNo::parse(" ｆａ４５９７ ").unwrap().as_str(), "FA4597");
        assert!(LotNo::parse("").is_err());
        assert!(LotNo::parse("FA-4597").is_err());
        assert!(LotNo::parse(&"A".repeat(21)).is_err());
        assert_eq!(
            vaccinator("  多々見 \u{3000}良三 ").unwrap(),
            "多々見\u{3000}良三"
        );
        assert!(vaccinator(" ").is_err());
        assert!(vaccinator(&"医".repeat(21)).is_err());
        assert_eq!(
            InjectionSite::parse_field("site", "右上腕").unwrap(),
            InjectionSite::RightArm
        );
        assert_eq!(
            InjectionSite::parse_field("site", "").unwrap(),
            InjectionSite::LeftArm
        );
        assert!(InjectionSite::parse_field("site", "nose").is_err());
        assert_eq!(vrs_maker(Product::Moderna), "武田/モデルナ");
    }
}
