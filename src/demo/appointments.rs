//! 会場・コマ・予約 of the synthetic Maizuru: five venues, one per 地区 (the rural 加佐 and
//! 大浦 on Moderna, the rest on Pfizer), half-hour slots for eight weeks from tomorrow, and
//! every resident who wants a dose assigned dose 1 in the first four weeks and dose 2 at the
//! same venue and time at the product's standard interval — the way Maizuru assigned them,
//! instead of taking bookings. Names and addresses are illustrative, not the city's list.

use crate::domain::vaccine::{age_on, dose2_window, jst_at};
use crate::domain::Product;
use crate::store::bookings::NewSlot;
use crate::store::Store;
use anyhow::Context;
use chrono::{Duration, NaiveDate, NaiveTime};
use std::collections::HashMap;

/// (name, address, 地区 served, product)
pub const VENUES: &[(&str, &str, &[&str], Product)] = &[
    ("総合文化会館", "京都府舞鶴市字浜", &["東"], Product::Pfizer),
    (
        "中総合会館",
        "京都府舞鶴市字南田辺",
        &["中"],
        Product::Pfizer,
    ),
    (
        "西市民プラザ",
        "京都府舞鶴市字円満寺",
        &["西"],
        Product::Pfizer,
    ),
    (
        "加佐公民館",
        "京都府舞鶴市字地頭",
        &["加佐"],
        Product::Moderna,
    ),
    ("大浦会館", "京都府舞鶴市字平", &["大浦"], Product::Moderna),
];

/// The slots of a venue's day (JST): mornings and afternoons, half an hour each.
pub const TIMES: &[(u32, u32)] = &[
    (9, 30),
    (10, 0),
    (10, 30),
    (11, 0),
    (11, 30),
    (13, 30),
    (14, 0),
    (14, 30),
    (15, 0),
    (15, 30),
];

/// Days (from tomorrow) on which dose 1 is assigned; slots run twice as long, for dose 2.
pub const DOSE1_DAYS: i64 = 28;

#[derive(Debug, Clone, Default)]
pub struct AppointmentSummary {
    pub venues: usize,
    pub slots: usize,
    pub bookings: usize,
}

/// Creates the venues and slots, sized for the residents who want a dose, and books both
/// doses for each of them (those too young for their venue's product are left unassigned).
pub async fn create(store: &Store, today: NaiveDate) -> anyhow::Result<AppointmentSummary> {
    let first = today + Duration::days(1);
    let wanting = store
        .residents_wanting_a_dose()
        .await
        .context("reading who wants a dose")?;
    let mut by_venue: Vec<Vec<i64>> = vec![Vec::new(); VENUES.len()];
    for (id, district, birth) in &wanting {
        let v = VENUES
            .iter()
            .position(|(_, _, served, _)| served.contains(&district.as_str()))
            .unwrap_or(0);
        let Ok(birth) = NaiveDate::parse_from_str(birth, "%Y-%m-%d") else {
            continue;
        };
        if age_on(birth, first) >= VENUES[v].3.min_age() {
            by_venue[v].push(*id);
        }
    }
    let per_day = TIMES.len() as i64;
    let mut summary = AppointmentSummary::default();
    for (v, (name, address, served, product)) in VENUES.iter().enumerate() {
        let venue = store
            .insert_venue(name, address, served)
            .await
            .with_context(|| format!("creating the venue {name}"))?;
        summary.venues += 1;
        let residents = &by_venue[v];
        // Seats per slot for dose 1 across the first four weeks; doubled (plus a few spare for
        // rebooking) because dose 1 and dose 2 share the days where the two ranges meet.
        let per_slot = (residents.len() as u64)
            .div_ceil((DOSE1_DAYS * per_day) as u64)
            .max(1) as i64;
        let capacity = per_slot * 2 + 2;
        let last_day = DOSE1_DAYS + product.standard_interval_days();
        let mut new = Vec::new();
        for day in 0..last_day {
            for (h, m) in TIMES {
                let time = NaiveTime::from_hms_opt(*h, *m, 0).context("a slot time")?;
                let starts = jst_at(first + Duration::days(day), time);
                new.push(NewSlot {
                    venue_id: venue,
                    starts_at: starts,
                    ends_at: starts + Duration::minutes(30),
                    product: *product,
                    capacity,
                });
            }
        }
        let ids = store
            .insert_slots(&new)
            .await
            .with_context(|| format!("creating the slots of {name}"))?;
        summary.slots += ids.len();
        let slot_of: HashMap<(NaiveDate, usize), i64> = new
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(i, (s, id))| {
                (
                    (
                        crate::domain::vaccine::jst_date(s.starts_at),
                        i % TIMES.len(),
                    ),
                    *id,
                )
            })
            .collect();
        let mut assignments = Vec::with_capacity(residents.len() * 2);
        for (j, resident) in residents.iter().enumerate() {
            let k = j as i64 / per_slot;
            let day1 = first + Duration::days(k / per_day);
            let time = (k % per_day) as usize;
            let day2 = dose2_window(day1, *product).standard;
            if let (Some(s1), Some(s2)) = (slot_of.get(&(day1, time)), slot_of.get(&(day2, time))) {
                assignments.push((*resident, 1, *s1));
                assignments.push((*resident, 2, *s2));
            }
        }
        summary.bookings += store
            .assign_bookings(&assignments)
            .await
            .with_context(|| format!("assigning appointments at {name}"))?;
    }
    Ok(summary)
}
