//! `madoguchi bench assign`: the city's assignment of a synthetic city — N residents, the
//! demo's venues, slots, stops and runs sized for them — timed: reading, planning in memory,
//! writing in one transaction. Then a second run, which must assign nobody, and the capacity
//! checks (no slot or run over, every counter equal to its bookings and rides).

use crate::store::testing::TestDb;
use anyhow::Context;
use std::time::Instant;

pub async fn assign(residents: usize, engine: &str) -> anyhow::Result<()> {
    let db = TestDb::new(engine).await.with_context(|| {
        format!("a fresh {engine} database (postgres needs MADOGUCHI_TEST_POSTGRES_URL)")
    })?;
    let store = db.store.clone();
    let today = crate::domain::vaccine::jst_date(chrono::Utc::now());
    let t = Instant::now();
    let people = crate::demo::synth::residents_as_of(residents, 2021, today);
    store.bulk_insert_residents(&people).await?;
    drop(people);
    let cal = crate::demo::appointments::calendar(&store, today).await?;
    println!(
        "{engine}: {residents} residents, {} venues, {} slots, {} stops, {} runs set up in {:.1} s",
        cal.venues,
        cal.slots,
        cal.stops,
        cal.runs,
        t.elapsed().as_secs_f64()
    );
    let opts = crate::demo::appointments::assign_options(today);
    let t = Instant::now();
    let report = store.assign(&opts).await?;
    let total = t.elapsed().as_secs_f64();
    println!(
        "  assign: {} wanted a dose, {} assigned ({} bookings, {} rides), {} unassigned {:?}",
        report.considered,
        report.assigned,
        report.assigned * 2,
        report.rides,
        report.unassigned.len(),
        report.unassigned_by_reason
    );
    println!(
        "  assign took {total:.2} s: read {} ms, plan {} ms, write {} ms ({:.0} residents/s)",
        report.read_ms,
        report.plan_ms,
        report.write_ms,
        report.considered as f64 / total.max(1e-9)
    );
    let t = Instant::now();
    let again = store.assign(&opts).await?;
    println!(
        "  second run: {} assigned (must be 0), {} still unassigned, {:.2} s",
        again.assigned,
        again.unassigned.len(),
        t.elapsed().as_secs_f64()
    );
    let over = store.slots_over_capacity().await?;
    let slots = store.slot_count_mismatches().await?.len();
    let runs = store.run_count_mismatches().await?.len();
    println!(
        "  slots over capacity: {over}; slot counters off: {slots}; runs over seats or off: {runs}"
    );
    db.cleanup().await;
    anyhow::ensure!(
        again.assigned == 0 && over == 0 && slots == 0 && runs == 0,
        "a rule was broken"
    );
    Ok(())
}
