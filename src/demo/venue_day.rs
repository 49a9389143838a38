//! The demo's venue day: each demo venue gets half-hour slots from now on, booked with
//! residents of its 地区 who have no appointment yet, and a tray of vials; then a background
//! task works through the day as reception and the vaccinators would, at a pace a watcher can
//! follow: opens a vial when none has doses left, checks the next resident in, records the
//! dose of whoever waits. Everything goes through the store's own paths (booking, check-in,
//! vials, the dose's rules) and each change is pushed to venue screens and supervisors
//! ([`crate::http::venue::publish_progress`]), so the venue screen and the supervisor page
//! move as they would on a real day.

use super::appointments::VENUES;
use crate::domain::dose::{InjectionSite, LotNo};
use crate::domain::forecast::{bucket_of, BUCKET_MIN};
use crate::domain::Product;
use crate::http::AppState;
use crate::store::bookings::NewSlot;
use crate::store::vaccinations::{Actor, NewVaccination};
use crate::store::Store;
use chrono::{DateTime, Duration, Utc};
use std::collections::VecDeque;

/// Half-hour slots per venue in the simulated day.
pub const SLOTS: i64 = 8;
/// Seats (and residents booked) per slot.
pub const PER_SLOT: i64 = 6;
/// Vials each venue receives.
pub const VIALS: i64 = 20;

/// One venue's simulated day.
#[derive(Debug, Clone)]
pub struct DemoVenue {
    pub venue_id: i64,
    pub product: Product,
    pub lot: LotNo,
    /// Residents booked today, in slot order, not checked in yet.
    pub expected: VecDeque<i64>,
}

/// Makes today's slots, bookings and vials at every venue; returns what the task works on.
pub async fn prepare(store: &Store, now: DateTime<Utc>) -> anyhow::Result<Vec<DemoVenue>> {
    let first = bucket_of(now) - Duration::minutes(BUCKET_MIN * 2);
    let user = demo_user(store).await?;
    let actor = Actor {
        user_id: user,
        remote_addr: "demo",
    };
    let mut out = Vec::new();
    for venue in store.venues().await? {
        let product = VENUES
            .iter()
            .find(|(name, ..)| *name == venue.name)
            .map_or(Product::Pfizer, |v| v.3);
        let slots: Vec<NewSlot> = (0..SLOTS)
            .map(|i| {
                let starts_at = first + Duration::minutes(30 * i);
                NewSlot {
                    venue_id: venue.id,
                    starts_at,
                    ends_at: starts_at + Duration::minutes(30),
                    product,
                    capacity: PER_SLOT,
                }
            })
            .collect();
        let slot_ids = store.insert_slots(&slots).await?;
        let district = venue.districts.first().cloned().unwrap_or_default();
        let candidates: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM residents r WHERE r.district = $1 AND r.birth_date <= $2 \
             AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.resident_id = r.id) \
             ORDER BY r.id LIMIT $3",
        )
        .bind(district)
        .bind((now.date_naive() - Duration::days(366 * 20)).to_string())
        .bind(SLOTS * PER_SLOT)
        .fetch_all(&store.read)
        .await?;
        let mut expected = VecDeque::new();
        for (i, resident) in candidates.into_iter().enumerate() {
            let slot = slot_ids[i % slot_ids.len()];
            if let Ok(Ok(_)) = store.book(resident, 1, slot).await {
                expected.push_back((i % slot_ids.len(), resident));
            }
        }
        let mut expected: Vec<_> = expected.into_iter().collect();
        expected.sort();
        let lot = LotNo::parse(&format!("DM{:02}{:04}", product_no(product), venue.id))
            .map_err(|e| anyhow::anyhow!("demo lot: {e}"))?;
        store
            .receive_vials(
                venue.id,
                product,
                &lot,
                VIALS,
                i64::from(product.doses_per_vial(true)),
                now,
                actor,
            )
            .await?;
        out.push(DemoVenue {
            venue_id: venue.id,
            product,
            lot,
            expected: expected.into_iter().map(|(_, r)| r).collect(),
        });
    }
    Ok(out)
}

fn product_no(p: Product) -> u8 {
    match p {
        Product::Pfizer => 1,
        Product::Moderna => 2,
        Product::AstraZeneca => 3,
    }
}

async fn demo_user(store: &Store) -> anyhow::Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM users WHERE role = 'venue' ORDER BY id LIMIT 1")
            .fetch_optional(&store.read)
            .await?,
    )
}

/// Works through the venues' day: every `pace`, at each venue, one step (the dose of whoever
/// waits longest, else the next check-in, opening a vial first when none has a dose left),
/// until everyone booked is done. Runs until aborted.
pub async fn run(state: AppState, mut venues: Vec<DemoVenue>, pace: std::time::Duration) {
    let user = demo_user(&state.store).await.ok().flatten();
    let mut waiting: Vec<VecDeque<i64>> = vec![VecDeque::new(); venues.len()];
    let mut turn = 0u64;
    loop {
        tokio::time::sleep(pace).await;
        turn += 1;
        let mut busy = false;
        for (i, v) in venues.iter_mut().enumerate() {
            let actor = Actor {
                user_id: user,
                remote_addr: "demo",
            };
            let now = Utc::now();
            // Reception runs ahead of the vaccinators a little: a queue of two or three.
            let vaccinate =
                waiting[i].len() >= 3 || v.expected.is_empty() || turn.is_multiple_of(2);
            let step = if vaccinate && !waiting[i].is_empty() {
                give(&state.store, v, &mut waiting[i], now, actor).await
            } else if let Some(resident) = v.expected.pop_front() {
                match state.store.check_in(resident, v.venue_id, now, actor).await {
                    Ok(_) => {
                        waiting[i].push_back(resident);
                        Ok(true)
                    }
                    Err(e) => Err(anyhow::Error::from(e)),
                }
            } else {
                Ok(false)
            };
            match step {
                Ok(true) => {
                    busy = true;
                    crate::http::venue::publish_progress(&state, v.venue_id);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, venue = v.venue_id, "demo venue step failed"),
            }
        }
        if !busy && venues.iter().all(|v| v.expected.is_empty()) {
            tracing::info!("the demo's venue day is done");
            return;
        }
    }
}

/// Records the dose of whoever has waited longest, opening a vial first if none has a dose.
async fn give(
    store: &Store,
    v: &DemoVenue,
    waiting: &mut VecDeque<i64>,
    now: DateTime<Utc>,
    actor: Actor<'_>,
) -> anyhow::Result<bool> {
    let Some(resident) = waiting.pop_front() else {
        return Ok(false);
    };
    if store.doses_left(v.venue_id, now).await? == 0 {
        let vials = store
            .vials_of(v.venue_id, crate::domain::vaccine::jst_date(now), now)
            .await?;
        if let Some(next) = vials.iter().find(|x| x.state == "unopened") {
            let _ = store.open_vial(next.id, now, actor).await?;
        }
    }
    let dose = NewVaccination {
        resident_id: resident,
        dose: 1,
        product: v.product,
        lot: v.lot.clone(),
        vaccinator: "デモ 医師".into(),
        injection_site: InjectionSite::LeftArm,
        given_at: now,
        venue_id: Some(v.venue_id),
    };
    if let Err(refusal) = store.record_vaccination(&dose, actor).await? {
        tracing::info!(resident, reason = %refusal.reason, "demo dose refused");
    }
    Ok(true)
}
