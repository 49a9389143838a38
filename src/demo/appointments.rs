//! 会場・コマ・送迎・予約 of the synthetic Maizuru: five venues, one per 地区 (the rural 加佐
//! and 大浦 on Moderna, the rest on Pfizer), half-hour slots from a template for the weeks
//! the doses need, pickup stops and bus runs for those who need the bus, and the city's
//! assignment (`madoguchi assign`) of dose 1 in the first four weeks and dose 2 at the same
//! venue and time at the product's standard interval — the way Maizuru assigned them,
//! instead of taking bookings. Names and addresses are illustrative, not the city's list.

use crate::domain::template::TemplateForm;
use crate::domain::vaccine::{age_on, jst_at};
use crate::domain::Product;
use crate::store::bookings::assign::AssignOptions;
use crate::store::Store;
use anyhow::Context;
use chrono::{Duration, NaiveDate, NaiveTime};

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
/// Days (from tomorrow) on which dose 1 is assigned; slots run longer, for dose 2.
pub const DOSE1_DAYS: i64 = 28;

#[derive(Debug, Clone, Default)]
pub struct AppointmentSummary {
    pub venues: usize,
    pub slots: usize,
    pub bookings: usize,
    pub stops: usize,
    pub runs: usize,
    pub rides: usize,
    /// Residents who want a dose the assignment could not place (too young, mostly).
    pub unassigned: usize,
}

/// The order 地区 are served in among residents of the same age (the city centre first).
pub const DISTRICT_ORDER: &[&str] = &["東", "中", "西", "加佐", "大浦"];

/// Towns per pickup stop.
const TOWNS_PER_STOP: usize = 6;

/// The slot times buses serve (JST): one morning and one afternoon run per venue and day.
pub const BUS_TIMES: &[(u32, u32)] = &[(10, 0), (14, 0)];

/// Creates the venues, their slots (from a template: 09:30–16:00 in half hours, lunch
/// 12:00–13:30, one seat a slot held for the call center), pickup stops for the towns whose
/// residents need the bus, a morning and an afternoon bus run per venue and day sized for
/// them, and then runs the city's assignment ([`Store::assign`]) for dose 1 in the first four
/// weeks: both doses for everyone who wants one, rides for those who need the bus.
pub async fn create(store: &Store, today: NaiveDate) -> anyhow::Result<AppointmentSummary> {
    let mut summary = calendar(store, today).await?;
    let report = store
        .assign(&assign_options(today))
        .await
        .context("assigning appointments")?;
    summary.bookings = report.assigned * 2;
    summary.rides = report.rides;
    summary.unassigned = report.unassigned.len();
    Ok(summary)
}

/// The assignment the demo runs: dose 1 in the four weeks from tomorrow.
pub fn assign_options(today: NaiveDate) -> AssignOptions {
    let first = today + Duration::days(1);
    AssignOptions {
        from: first,
        to: first + Duration::days(DOSE1_DAYS - 1),
        dry_run: false,
        district_order: DISTRICT_ORDER.iter().map(|d| d.to_string()).collect(),
    }
}

/// Everything [`create`] makes but the bookings: venues, slots, stops and runs.
pub async fn calendar(store: &Store, today: NaiveDate) -> anyhow::Result<AppointmentSummary> {
    let first = today + Duration::days(1);
    let wanting = store
        .residents_wanting_a_dose()
        .await
        .context("reading who wants a dose")?;
    let mut per_venue = vec![0usize; VENUES.len()];
    for (_, district, birth) in &wanting {
        let v = VENUES
            .iter()
            .position(|(_, _, served, _)| served.contains(&district.as_str()))
            .unwrap_or(0);
        let Ok(birth) = NaiveDate::parse_from_str(birth, "%Y-%m-%d") else {
            continue;
        };
        if age_on(birth, first) >= VENUES[v].3.min_age() {
            per_venue[v] += 1;
        }
    }
    let per_day = TIMES.len() as i64;
    let mut summary = AppointmentSummary::default();
    let mut venue_ids = Vec::new();
    for (v, (name, address, served, product)) in VENUES.iter().enumerate() {
        let venue = store
            .insert_venue(name, address, served)
            .await
            .with_context(|| format!("creating the venue {name}"))?;
        venue_ids.push(venue);
        summary.venues += 1;
        // Seats per slot for dose 1 across the first four weeks; doubled (plus spare for
        // rebooking and the seat held for the call center) because dose 1 and dose 2 share
        // the days where the two ranges meet.
        let per_slot = (per_venue[v] as u64)
            .div_ceil((DOSE1_DAYS * per_day) as u64)
            .max(1) as i64;
        let last_day = DOSE1_DAYS + product.standard_interval_days() + 7;
        let template = TemplateForm {
            from: first.to_string(),
            to: (first + Duration::days(last_day - 1)).to_string(),
            weekdays: Vec::new(),
            opens: "09:30".into(),
            closes: "16:00".into(),
            slot_minutes: 30,
            capacity: per_slot * 2 + 3,
            product: product.code().into(),
            lunch_from: Some("12:00".into()),
            lunch_to: Some("13:30".into()),
            held: 1,
        }
        .parse()
        .map_err(|e| anyhow::anyhow!("the demo's slot template: {e}"))?;
        let made = store
            .generate_slots(venue, &template)
            .await
            .with_context(|| format!("creating the slots of {name}"))?;
        summary.slots += made.created;
    }

    // Stops: the towns whose residents need the bus, a few towns to a stop, each served by
    // its district's venue (and, further away, by the others).
    let demand = store.transport_demand().await?;
    let mut towns_by_district: std::collections::BTreeMap<String, Vec<(String, i64)>> =
        Default::default();
    for (district, town, n) in demand {
        towns_by_district
            .entry(district)
            .or_default()
            .push((town, n));
    }
    let mut riders_per_venue = vec![0i64; VENUES.len()];
    let mut stops_per_venue: Vec<Vec<i64>> = vec![Vec::new(); VENUES.len()];
    for (district, towns) in &towns_by_district {
        let home = VENUES
            .iter()
            .position(|(_, _, served, _)| served.contains(&district.as_str()))
            .unwrap_or(0);
        for (k, chunk) in towns.chunks(TOWNS_PER_STOP).enumerate() {
            let names: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
            let minutes: Vec<(i64, i64)> = venue_ids
                .iter()
                .enumerate()
                .map(|(v, id)| {
                    (
                        *id,
                        if v == home {
                            10 + 5 * (k as i64 % 5)
                        } else {
                            40
                        },
                    )
                })
                .collect();
            let stop = store
                .insert_stop(&format!("{}集会所前", names[0]), &names, &minutes)
                .await
                .context("creating a pickup stop")?;
            summary.stops += 1;
            stops_per_venue[home].push(stop);
            riders_per_venue[home] += chunk.iter().map(|(_, n)| n).sum::<i64>();
        }
    }
    // Runs: each venue's stops, at the bus times, every day of its slots; seats for the
    // venue's riders spread over the first four weeks, doubled where doses 1 and 2 meet.
    for (v, (_, _, _, product)) in VENUES.iter().enumerate() {
        if stops_per_venue[v].is_empty() {
            continue;
        }
        let per_run = (riders_per_venue[v] as u64)
            .div_ceil((DOSE1_DAYS as u64) * BUS_TIMES.len() as u64)
            .max(1) as i64;
        // A bus seats at most 50: more buses where more ride.
        let need = per_run * 2 + 2;
        let buses = (need as u64).div_ceil(50).max(1) as i64;
        let seats = (need as u64).div_ceil(buses as u64) as i64;
        let last_day = DOSE1_DAYS + product.standard_interval_days() + 7;
        for day in 0..last_day {
            for (h, m) in BUS_TIMES {
                let time = NaiveTime::from_hms_opt(*h, *m, 0).context("a bus time")?;
                let starts = jst_at(first + Duration::days(day), time);
                for bus in 1..=buses {
                    store
                        .insert_run(
                            venue_ids[v],
                            starts,
                            &format!("{} {:02}:{:02}便 {bus}号車", VENUES[v].0, h, m),
                            seats,
                            &stops_per_venue[v],
                        )
                        .await
                        .context("creating a bus run")?;
                    summary.runs += 1;
                }
            }
        }
    }
    Ok(summary)
}
