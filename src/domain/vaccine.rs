//! ワクチンと接種間隔: the products, how many doses a vial gives, the interval between dose 1
//! and dose 2, the minimum age; and the rules a booking must satisfy (DESIGN §2, VACCINATION.md
//! §3). No I/O: the store calls these inside its write transaction, so the rule and the
//! decision are made on the same rows.
//!
//! Dates here are calendar dates in Japan (JST, UTC+9, no daylight saving): an interval of
//! "21 days" counts days on the venue's calendar, not 24-hour periods of stored UTC times.

use super::resident::code_enum;
use super::FieldError;
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

code_enum!(
    /// ワクチンの種類: the product (maker) of a slot and of every dose given in it.
    Product { Pfizer = "pfizer", Moderna = "moderna", AstraZeneca = "astrazeneca" }
);

code_enum!(
    /// 予約の状態: booked → checked in → vaccinated, or cancelled / no-show. Only `booked` and
    /// `checked_in` hold a seat ("live"); the database allows one live booking per dose.
    BookingStatus { Booked = "booked", CheckedIn = "checked_in", Vaccinated = "vaccinated", Cancelled = "cancelled", NoShow = "no_show" }
);

impl BookingStatus {
    /// Holds a seat in its slot and counts against the one-live-booking-per-dose rule.
    pub fn is_live(self) -> bool {
        matches!(self, BookingStatus::Booked | BookingStatus::CheckedIn)
    }
}

impl Product {
    /// A product code from a form or a file (`pfizer`, `moderna`, …), case and width folded.
    pub fn parse_field(field: &'static str, written: &str) -> Result<Product, FieldError> {
        let folded = super::text::fold_trimmed(written).to_ascii_lowercase();
        Product::parse(&folded).ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "unknown vaccine product {written:?}; expected one of {}",
                    Product::CODES.join(", ")
                ),
            )
        })
    }

    /// コミナティ, スパイクバックス, バキスゼブリア: the name staff and residents use.
    pub fn name_ja(self) -> &'static str {
        match self {
            Product::Pfizer => "ファイザー社製(コミナティ)",
            Product::Moderna => "モデルナ社製",
            Product::AstraZeneca => "アストラゼネカ社製(バキスゼブリア)",
        }
    }

    /// Doses drawn from one vial. Pfizer's label says 6 with a low-dead-volume syringe; Japan
    /// drew 5 with standard syringes until those arrived (the week of 2021-05-10), so the
    /// syringe in use decides.
    pub fn doses_per_vial(self, low_dead_volume_syringe: bool) -> u32 {
        match self {
            Product::Pfizer if low_dead_volume_syringe => 6,
            Product::Pfizer => 5,
            Product::Moderna => 10,
            Product::AstraZeneca => 10,
        }
    }

    /// The interval the city plans dose 2 at: Pfizer 3 weeks (same weekday), Moderna 4 weeks,
    /// AstraZeneca 8 weeks (the recommended end of its 4–12 week range).
    pub fn standard_interval_days(self) -> i64 {
        match self {
            Product::Pfizer => 21,
            Product::Moderna => 28,
            Product::AstraZeneca => 56,
        }
    }

    /// The earliest day dose 2 may be given, counted from dose 1: Pfizer day +19 (MHLW: a
    /// Thursday dose 1 allows the Tuesday three weeks later), Moderna day +27 (four weeks, a
    /// day early at most), AstraZeneca day +28 (four weeks).
    pub fn min_interval_days(self) -> i64 {
        match self {
            Product::Pfizer => 19,
            Product::Moderna => 27,
            Product::AstraZeneca => 28,
        }
    }

    /// The youngest age (in whole years on the day of the dose) the product was approved for:
    /// Pfizer and Moderna 12 (Pfizer from 2021-06, Moderna from 2021-08-03), AstraZeneca 40.
    pub fn min_age(self) -> u32 {
        match self {
            Product::Pfizer | Product::Moderna => 12,
            Product::AstraZeneca => 40,
        }
    }
}

/// When dose 2 may be given, from the date of dose 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dose2Window {
    /// The first legal day (dose 1 + the minimum interval).
    pub earliest: NaiveDate,
    /// The day the city plans it (dose 1 + the standard interval). There is no upper limit:
    /// a late dose 2 is given as soon as possible.
    pub standard: NaiveDate,
}

/// 2回目の接種可能日: the window for dose 2 of `product` after dose 1 on `dose1`.
pub fn dose2_window(dose1: NaiveDate, product: Product) -> Dose2Window {
    Dose2Window {
        earliest: dose1 + Duration::days(product.min_interval_days()),
        standard: dose1 + Duration::days(product.standard_interval_days()),
    }
}

/// Why a dose may not be booked where asked. Each reads as a sentence an agent can say to the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoseRuleError {
    #[error(
        "dose {next} must be the same vaccine as dose {prev} ({first}); this slot offers {offered}"
    )]
    DifferentProduct {
        prev: u8,
        next: u8,
        first: Product,
        offered: Product,
    },
    #[error(
        "dose {next} on {date} would be too early: with {product} it may be given from {earliest}, \
         {min} days after dose {prev} on {prev_date}"
    )]
    TooEarly {
        prev: u8,
        next: u8,
        product: Product,
        prev_date: NaiveDate,
        date: NaiveDate,
        earliest: NaiveDate,
        min: i64,
    },
    #[error("{product} is given from age {min_age}; the resident would be {age} on {date}")]
    TooYoung {
        product: Product,
        min_age: u32,
        age: u32,
        date: NaiveDate,
    },
}

impl DoseRuleError {
    /// A stable code for screens and tests.
    pub fn code(&self) -> &'static str {
        match self {
            DoseRuleError::DifferentProduct { .. } => "different_product",
            DoseRuleError::TooEarly { .. } => "too_early",
            DoseRuleError::TooYoung { .. } => "too_young",
        }
    }
}

/// The rule between two consecutive doses (N and N+1): the same product, and no earlier than
/// the minimum interval after dose N.
pub fn check_next_dose(
    prev_dose: u8,
    prev_product: Product,
    prev_date: NaiveDate,
    next_product: Product,
    next_date: NaiveDate,
) -> Result<(), DoseRuleError> {
    let next = prev_dose + 1;
    if next_product != prev_product {
        return Err(DoseRuleError::DifferentProduct {
            prev: prev_dose,
            next,
            first: prev_product,
            offered: next_product,
        });
    }
    let window = dose2_window(prev_date, prev_product);
    if next_date < window.earliest {
        return Err(DoseRuleError::TooEarly {
            prev: prev_dose,
            next,
            product: prev_product,
            prev_date,
            date: next_date,
            earliest: window.earliest,
            min: prev_product.min_interval_days(),
        });
    }
    Ok(())
}

/// Whole years of age on `on` (a birthday counts from the day itself; 29 February birthdays
/// count from 1 March in common years, as Japanese law reckons age the day before).
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> u32 {
    let mut years = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

/// The product's minimum age, on the day of the dose.
pub fn check_age(product: Product, birth: NaiveDate, on: NaiveDate) -> Result<(), DoseRuleError> {
    let age = age_on(birth, on);
    if age < product.min_age() {
        return Err(DoseRuleError::TooYoung {
            product,
            min_age: product.min_age(),
            age,
            date: on,
        });
    }
    Ok(())
}

/// Japan Standard Time, the venues' clock.
pub fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// The calendar date in Japan of an instant.
pub fn jst_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&jst()).date_naive()
}

/// The wall-clock time in Japan of an instant ("the same time of day" of dose 2).
pub fn jst_time(t: DateTime<Utc>) -> NaiveTime {
    t.with_timezone(&jst()).time()
}

/// The instant a Japanese calendar date begins.
pub fn jst_midnight(date: NaiveDate) -> DateTime<Utc> {
    jst()
        .from_local_datetime(&date.and_time(NaiveTime::MIN))
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| date.and_time(NaiveTime::MIN).and_utc())
}

/// The instant of a Japanese date and wall-clock time.
pub fn jst_at(date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    jst_midnight(date) + (time - NaiveTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn pfizer_dose2_is_three_weeks_never_before_day_19() {
        // Thursday 2021-06-03: standard Thursday 06-24, earliest Tuesday 06-22.
        let w = dose2_window(d("2021-06-03"), Product::Pfizer);
        assert_eq!(w.standard, d("2021-06-24"));
        assert_eq!(w.earliest, d("2021-06-22"));
        assert_eq!(w.earliest.weekday(), chrono::Weekday::Tue);
        assert!(check_next_dose(
            1,
            Product::Pfizer,
            d("2021-06-03"),
            Product::Pfizer,
            w.earliest
        )
        .is_ok());
        let err = check_next_dose(
            1,
            Product::Pfizer,
            d("2021-06-03"),
            Product::Pfizer,
            d("2021-06-21"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "too_early");
        assert!(err.to_string().contains("2021-06-22"), "{err}");
        // Late is legal: no upper limit.
        assert!(check_next_dose(
            1,
            Product::Pfizer,
            d("2021-06-03"),
            Product::Pfizer,
            d("2021-09-01")
        )
        .is_ok());
    }

    #[test]
    fn moderna_and_astrazeneca_intervals() {
        let w = dose2_window(d("2021-06-01"), Product::Moderna);
        assert_eq!((w.earliest, w.standard), (d("2021-06-28"), d("2021-06-29")));
        let w = dose2_window(d("2021-06-01"), Product::AstraZeneca);
        assert_eq!((w.earliest, w.standard), (d("2021-06-29"), d("2021-07-27")));
        for p in Product::ALL {
            assert!(p.min_interval_days() <= p.standard_interval_days());
        }
    }

    #[test]
    fn dose2_never_gets_another_product() {
        let err = check_next_dose(
            1,
            Product::Pfizer,
            d("2021-06-03"),
            Product::Moderna,
            d("2021-07-30"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "different_product");
        assert!(err.to_string().contains("same vaccine"), "{err}");
    }

    #[test]
    fn vials_and_ages() {
        assert_eq!(Product::Pfizer.doses_per_vial(false), 5);
        assert_eq!(Product::Pfizer.doses_per_vial(true), 6);
        assert_eq!(Product::Moderna.doses_per_vial(false), 10);
        assert_eq!(age_on(d("2009-06-04"), d("2021-06-03")), 11);
        assert_eq!(age_on(d("2009-06-03"), d("2021-06-03")), 12);
        assert!(check_age(Product::Pfizer, d("2009-06-03"), d("2021-06-03")).is_ok());
        assert_eq!(
            check_age(Product::AstraZeneca, d("1990-01-01"), d("2021-06-03"))
                .unwrap_err()
                .code(),
            "too_young"
        );
    }

    #[test]
    fn product_codes_parse_folded() {
        assert_eq!(
            Product::parse_field("product", " Pfizer ").unwrap(),
            Product::Pfizer
        );
        assert_eq!(
            Product::parse_field("product", "ＭＯＤＥＲＮＡ").unwrap(),
            Product::Moderna
        );
        assert_eq!(
            Product::parse_field("product", "sinovac")
                .unwrap_err()
                .field,
            "product"
        );
        assert!(BookingStatus::CheckedIn.is_live() && !BookingStatus::NoShow.is_live());
    }

    #[test]
    fn japan_dates_of_stored_instants() {
        let t = DateTime::parse_from_rfc3339("2021-06-02T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(jst_date(t), d("2021-06-03"));
        assert_eq!(jst_time(t), NaiveTime::from_hms_opt(0, 30, 0).unwrap());
        assert_eq!(
            jst_midnight(d("2021-06-03")).to_rfc3339(),
            "2021-06-02T15:00:00+00:00"
        );
        assert_eq!(jst_at(d("2021-06-24"), jst_time(t)), t + Duration::days(21));
    }
}
