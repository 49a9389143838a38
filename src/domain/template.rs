//! コマの雛形: a venue's slots generated from a template (days, hours, slot length, capacity,
//! product, an optional lunch break, seats held back for the call center). No I/O: the store
//! inserts what [`SlotTemplate::expand`] gives (`store/bookings/templates.rs`).

use super::vaccine::{jst_at, Product};
use super::FieldError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use serde::Deserialize;

/// The most slots one template may create (a year of a large venue is well under this).
pub const MAX_TEMPLATE_SLOTS: usize = 50_000;

/// A template as a planner writes it (JSON or CLI): dates `YYYY-MM-DD`, times `HH:MM`,
/// weekdays `mon`…`sun` (empty: every day).
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateForm {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub weekdays: Vec<String>,
    pub opens: String,
    pub closes: String,
    pub slot_minutes: i64,
    pub capacity: i64,
    pub product: String,
    #[serde(default)]
    pub lunch_from: Option<String>,
    #[serde(default)]
    pub lunch_to: Option<String>,
    #[serde(default)]
    pub held: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlotTemplate {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub weekdays: Vec<Weekday>,
    pub opens: NaiveTime,
    pub closes: NaiveTime,
    pub slot_minutes: i64,
    pub capacity: i64,
    pub product: Product,
    pub lunch: Option<(NaiveTime, NaiveTime)>,
    pub held: i64,
}

/// One slot a template gives: (starts, ends) in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateSlot {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

fn date(field: &'static str, s: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| FieldError::new(field, format!("{s:?} is not a date (YYYY-MM-DD)")))
}

fn time(field: &'static str, s: &str) -> Result<NaiveTime, FieldError> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map_err(|_| FieldError::new(field, format!("{s:?} is not a time (HH:MM)")))
}

fn weekday(s: &str) -> Result<Weekday, FieldError> {
    let w = match s.trim().to_ascii_lowercase().as_str() {
        "mon" | "月" => Weekday::Mon,
        "tue" | "火" => Weekday::Tue,
        "wed" | "水" => Weekday::Wed,
        "thu" | "木" => Weekday::Thu,
        "fri" | "金" => Weekday::Fri,
        "sat" | "土" => Weekday::Sat,
        "sun" | "日" => Weekday::Sun,
        _ => {
            return Err(FieldError::new(
                "weekdays",
                format!("{s:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)"),
            ))
        }
    };
    Ok(w)
}

impl TemplateForm {
    /// Checks every field; the first wrong one is named.
    pub fn parse(&self) -> Result<SlotTemplate, FieldError> {
        let from = date("from", &self.from)?;
        let to = date("to", &self.to)?;
        if to < from {
            return Err(FieldError::new("to", "to is before from"));
        }
        if (to - from).num_days() > 366 {
            return Err(FieldError::new("to", "a template covers at most a year"));
        }
        let weekdays = self
            .weekdays
            .iter()
            .flat_map(|w| w.split(','))
            .filter(|w| !w.trim().is_empty())
            .map(weekday)
            .collect::<Result<Vec<_>, _>>()?;
        let opens = time("opens", &self.opens)?;
        let closes = time("closes", &self.closes)?;
        if closes <= opens {
            return Err(FieldError::new("closes", "closes must be after opens"));
        }
        if !(5..=240).contains(&self.slot_minutes) {
            return Err(FieldError::new("slot_minutes", "slot_minutes is 5 to 240"));
        }
        if !(1..=10_000).contains(&self.capacity) {
            return Err(FieldError::new("capacity", "capacity is 1 to 10000"));
        }
        if self.held < 0 || self.held > self.capacity {
            return Err(FieldError::new(
                "held",
                "held (seats kept for the call center) is 0 to the capacity",
            ));
        }
        let product = Product::parse_field("product", &self.product)?;
        let lunch = match (&self.lunch_from, &self.lunch_to) {
            (None, None) => None,
            (Some(a), Some(b)) if a.trim().is_empty() && b.trim().is_empty() => None,
            (Some(a), Some(b)) => {
                let (a, b) = (time("lunch_from", a)?, time("lunch_to", b)?);
                if b <= a {
                    return Err(FieldError::new(
                        "lunch_to",
                        "lunch_to must be after lunch_from",
                    ));
                }
                Some((a, b))
            }
            (None, Some(_)) => {
                return Err(FieldError::new(
                    "lunch_from",
                    "give both lunch_from and lunch_to",
                ))
            }
            (Some(_), None) => {
                return Err(FieldError::new(
                    "lunch_to",
                    "give both lunch_from and lunch_to",
                ))
            }
        };
        let t = SlotTemplate {
            from,
            to,
            weekdays,
            opens,
            closes,
            slot_minutes: self.slot_minutes,
            capacity: self.capacity,
            product,
            lunch,
            held: self.held,
        };
        if t.expand().len() > MAX_TEMPLATE_SLOTS {
            return Err(FieldError::new(
                "to",
                format!("the template would create more than {MAX_TEMPLATE_SLOTS} slots"),
            ));
        }
        Ok(t)
    }
}

impl SlotTemplate {
    /// The slots, by start: on each chosen weekday from `from` to `to`, back to back from
    /// `opens`, each `slot_minutes` long and ending by `closes`, none overlapping the lunch
    /// break (a slot that would is moved to the break's end).
    pub fn expand(&self) -> Vec<TemplateSlot> {
        let mut out = Vec::new();
        let step = Duration::minutes(self.slot_minutes);
        let mut day = self.from;
        while day <= self.to {
            if self.weekdays.is_empty() || self.weekdays.contains(&day.weekday()) {
                let mut t = self.opens;
                loop {
                    if let Some((a, b)) = self.lunch {
                        if t < b && t + step > a {
                            t = b;
                        }
                    }
                    let end = t + step;
                    // NaiveTime wraps at midnight: a slot past it, or past closing, ends the day.
                    if end <= t || end > self.closes {
                        break;
                    }
                    out.push(TemplateSlot {
                        starts_at: jst_at(day, t),
                        ends_at: jst_at(day, end),
                    });
                    t = end;
                }
            }
            day += Duration::days(1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::vaccine::{jst_date, jst_time};

    fn form() -> TemplateForm {
        TemplateForm {
            from: "2021-06-07".into(),
            to: "2021-06-13".into(),
            weekdays: vec!["tue".into(), "thu,sat".into()],
            opens: "09:00".into(),
            closes: "16:00".into(),
            slot_minutes: 30,
            capacity: 20,
            product: "pfizer".into(),
            lunch_from: Some("12:00".into()),
            lunch_to: Some("13:00".into()),
            held: 2,
        }
    }

    #[test]
    fn days_hours_lunch_and_length() {
        let t = form().parse().unwrap();
        let slots = t.expand();
        // 3 days × (6 morning + 6 afternoon).
        assert_eq!(slots.len(), 36);
        let days: std::collections::BTreeSet<_> = slots
            .iter()
            .map(|s| jst_date(s.starts_at).to_string())
            .collect();
        assert_eq!(
            days.into_iter().collect::<Vec<_>>(),
            vec!["2021-06-08", "2021-06-10", "2021-06-12"]
        );
        assert!(slots.iter().all(|s| {
            let a = jst_time(s.starts_at);
            let b = jst_time(s.ends_at);
            (b <= NaiveTime::from_hms_opt(12, 0, 0).unwrap()
                || a >= NaiveTime::from_hms_opt(13, 0, 0).unwrap())
                && b <= NaiveTime::from_hms_opt(16, 0, 0).unwrap()
        }));
        assert_eq!(jst_time(slots[0].starts_at).to_string(), "09:00:00");
        assert_eq!(jst_time(slots[6].starts_at).to_string(), "13:00:00");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut f = form();
        f.held = 21;
        assert_eq!(f.parse().unwrap_err().field, "held");
        let mut f = form();
        f.weekdays = vec!["funday".into()];
        assert_eq!(f.parse().unwrap_err().field, "weekdays");
        let mut f = form();
        f.closes = "08:00".into();
        assert_eq!(f.parse().unwrap_err().field, "closes");
        let mut f = form();
        f.product = "sinovac".into();
        assert_eq!(f.parse().unwrap_err().field, "product");
        let mut f = form();
        f.lunch_to = None;
        assert_eq!(f.parse().unwrap_err().field, "lunch_to");
    }
}
