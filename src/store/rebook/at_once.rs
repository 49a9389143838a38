//! A move in one statement, on PostgreSQL: the usual move an agent makes (dose 1 into
//! another slot, dose 2 following to its standard day, no bus ride) read first and then
//! written in one statement that holds only if what was read still holds.
//!
//! The transaction of [`super`] takes a dozen round trips to the server for such a move and
//! holds the bookings' and slots' locks across most of them; here a move takes three round
//! trips (two reads and the write) on one connection, a refusal two, and the locks are held
//! only inside the one statement. What it saves is the round trips and the time locks are
//! held, which grow with the distance to the server; the rows a move must change cost the
//! same either way (see the README's benchmark section for what each costs on this machine).
//!
//! 1. One read, unlocked: the booking, the resident's other bookings and birth date, and the
//!    slot asked for.
//! 2. The decision, in Rust, by the same rules as the transaction: the booking is live, the
//!    slot is open, the age rule ([`rules_with`]); dose 2's seat is the first of
//!    [`dose2_candidates`] on the standard day, as [`dose2_seat`] tries them.
//! 3. One statement (autocommit, so one transaction): it locks the bookings (dose order) and
//!    then every slot involved (id order, the order every change locks slots in), and changes
//!    anything only if the bookings are still where they were and live, the new slots still
//!    open with a seat, no ride came, no other dose 2 came, and the call named exists. Then it
//!    moves the seats (one UPDATE with each slot's net change), points the bookings at their
//!    new slots, and writes the key's answer (with the slots as the UPDATE left them), the
//!    audit line and the inquiry.
//!
//! What the read shows as a refusal (closed, too young, full) is stored as the key's answer in
//! one INSERT: the refusal was true when read. Anything else — a rider, dose 2 kept or outside
//! its standard day, a booking not live, a statement whose conditions no longer held — goes
//! to the transaction, which decides it whole (`None` here). A twin with the same key collides
//! on the answer's key like the transaction's does.
//!
//! [`dose2_seat`]: super::super::bookings::dose2_seat

use super::super::bookings::{
    closed, dose2_candidates, full, locked_from_row, row_in, rules_with, slot_from_row,
    slot_from_row_as, LockedBooking, MoveAnswer, MoveOutcome, Refusal, Slot, SlotFacts,
};
use super::super::{now, Engine, Store, StoreError};
use super::{change_note, detail_of, ChangeBy};
use crate::domain::vaccine::dose2_window;
use crate::domain::BookingStatus;
use anyhow::Context;
use chrono::NaiveDate;
use sqlx::Row;

/// The read: the resident's bookings (the one to move among them) with their slots and live
/// rides, the resident's birth date, and the slot asked for (`t_*`, null when there is none).
const READ: &str = "SELECT b.id, b.resident_id, b.dose, b.slot_id, b.status, s.venue_id, \
     v.name AS venue_name, s.starts_at, s.product, \
     (SELECT COUNT(*) FROM rides x WHERE x.booking_id = b.id AND x.status = 'booked') AS rides, \
     r.birth_date, t.id AS t_id, t.venue_id AS t_venue_id, t.starts_at AS t_starts_at, \
     t.ends_at AS t_ends_at, t.product AS t_product, t.capacity AS t_capacity, \
     t.booked AS t_booked, t.closed AS t_closed, t.held AS t_held, tv.name AS t_venue_name \
     FROM bookings b JOIN slots s ON s.id = b.slot_id JOIN venues v ON v.id = s.venue_id \
     JOIN residents r ON r.id = b.resident_id \
     LEFT JOIN slots t ON t.id = $2 LEFT JOIN venues tv ON tv.id = t.venue_id \
     WHERE b.resident_id = (SELECT resident_id FROM bookings WHERE id = $1) ORDER BY b.id";

/// The write (see the module doc). `$15..$17`: dose 1's booking, its slot, its new slot;
/// `$18..$20` the same for dose 2 (0, 0, 0 when no dose 2 moves); `$21` how many bookings
/// move. `$14` = 1: write the audit line and the inquiry.
const WRITE: &str = "WITH lb AS (SELECT id FROM bookings \
     WHERE ((id = $15 AND slot_id = $16) OR (id = $18 AND slot_id = $19)) \
     AND status IN ('booked', 'checked_in') ORDER BY dose FOR UPDATE), \
     sl AS (SELECT id, booked, capacity, closed FROM slots WHERE id IN ($16, $17, $19, $20) \
     ORDER BY id FOR NO KEY UPDATE), \
     go AS (SELECT (SELECT COUNT(*) FROM lb) = $21 \
     AND (SELECT COUNT(*) FROM sl WHERE id IN ($17, $20) AND booked < capacity AND closed = 0) \
     = $21 \
     AND NOT EXISTS (SELECT 1 FROM rides WHERE booking_id IN ($15, $18) AND status = 'booked') \
     AND NOT EXISTS (SELECT 1 FROM bookings WHERE resident_id = $8 AND dose = 2 \
     AND status IN ('booked', 'checked_in') AND id <> $18) \
     AND ($11::text IS NULL OR EXISTS (SELECT 1 FROM calls WHERE call_key = $11)) AS ok), \
     moved AS (UPDATE slots SET booked = slots.booked \
     + (CASE WHEN slots.id = $17 THEN 1 ELSE 0 END) - (CASE WHEN slots.id = $16 THEN 1 ELSE 0 END) \
     + (CASE WHEN slots.id = $20 THEN 1 ELSE 0 END) - (CASE WHEN slots.id = $19 THEN 1 ELSE 0 END) \
     FROM sl WHERE slots.id = sl.id AND (SELECT ok FROM go) \
     RETURNING slots.id, slots.venue_id, slots.starts_at, slots.ends_at, slots.product, \
     slots.capacity, slots.booked, slots.closed, slots.held), \
     pointed AS (UPDATE bookings SET slot_id = CASE WHEN id = $15 THEN $17 ELSE $20 END, \
     updated_at = $5 WHERE id IN (SELECT id FROM lb) AND (SELECT ok FROM go)), \
     answer AS (INSERT INTO booking_moves (idempotency_key, booking_id, slot_id, answer, created_at) \
     SELECT $1, $2, $3, jsonb_set($4::jsonb, '{slots}', COALESCE((SELECT jsonb_agg(jsonb_build_object(\
     'id', id, 'venue_id', venue_id, 'starts_at', starts_at, 'ends_at', ends_at, \
     'product', product, 'capacity', capacity, 'booked', booked, 'closed', closed <> 0, \
     'held', held) ORDER BY id) FROM moved), '[]'::jsonb))::text, $5 WHERE (SELECT ok FROM go)), \
     audit AS (INSERT INTO audit_entries (at, user_id, action, resident_id, detail, remote_addr) \
     SELECT $5, $6, $7, $8, $9, $10 WHERE (SELECT ok FROM go) AND $14 = 1), \
     inquiry AS (INSERT INTO inquiries (resident_id, call_key, user_id, category, note, \
     follow_up, caller_kind, relationship, created_at) \
     SELECT $8, $11, $6, $12, $13, 0, 'self', '', $5 WHERE (SELECT ok FROM go) AND $14 = 1) \
     SELECT id, venue_id, starts_at, ends_at, product, capacity, booked, closed, held \
     FROM moved ORDER BY id";

/// A refusal as the key's answer, when the call named (`$6`, if any) exists.
const REFUSE: &str = "INSERT INTO booking_moves (idempotency_key, booking_id, slot_id, answer, \
     created_at) SELECT $1, $2, $3, $4, $5 \
     WHERE $6::text IS NULL OR EXISTS (SELECT 1 FROM calls WHERE call_key = $6)";

/// What the read found.
pub(super) struct Seen {
    booking: LockedBooking,
    /// The resident's live dose 2, when the booking is dose 1 and has one.
    dose2: Option<LockedBooking>,
    birth: Option<NaiveDate>,
    /// The slot asked for, with its venue's name.
    target: Option<(SlotFacts, String)>,
}

/// A move decided from the read: `(booking, from, to)` for dose 1 and, when it follows, dose 2.
pub(super) struct Plan {
    moves: Vec<(i64, i64, i64)>,
    before: Vec<crate::store::bookings::BookingRow>,
    after: Vec<crate::store::bookings::BookingRow>,
}

pub(super) enum Decision {
    Move(Plan),
    Refuse(Refusal),
    /// For the transaction to decide.
    Whole,
}

impl Store {
    /// A move by the path of the module doc; `Ok(None)` when the transaction must decide it.
    pub(super) async fn move_at_once(
        &self,
        booking_id: i64,
        slot_id: i64,
        key: &str,
        by: Option<ChangeBy<'_>>,
    ) -> Result<Option<MoveAnswer>, StoreError> {
        if self.engine != Engine::Postgres {
            return Ok(None);
        }
        // One connection for the reads and the write: a statement on a connection of its
        // own would cost a second round trip, sqlx's check of the connection on its return.
        let mut conn = self.write.acquire().await?;
        let Some(seen) = seen(&mut conn, booking_id, slot_id).await? else {
            return Ok(None);
        };
        let plan = match decide(&mut conn, &seen).await? {
            Decision::Whole => return Ok(None),
            Decision::Refuse(refusal) => {
                let outcome = MoveOutcome::Refused(refusal);
                let answer = serde_json::to_string(&outcome).context("encoding a move's answer")?;
                let stored = sqlx::query(REFUSE)
                    .bind(key.to_string())
                    .bind(booking_id)
                    .bind(slot_id)
                    .bind(answer)
                    .bind(now())
                    .bind(by.and_then(|b| b.call_id).map(str::to_string))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                // None stored: the call named is unknown, which the transaction reports.
                return Ok((stored == 1).then_some(MoveAnswer {
                    outcome,
                    replayed: false,
                }));
            }
            Decision::Move(plan) => plan,
        };
        write(&mut conn, &seen, plan, key, (booking_id, slot_id), by).await
    }
}

/// The write of the module doc, step 3: `None` when something read no longer holds, and then
/// nothing was written. `asked` is the request as `booking_moves` records it.
pub(super) async fn write(
    conn: &mut sqlx::AnyConnection,
    seen: &Seen,
    plan: Plan,
    key: &str,
    asked: (i64, i64),
    by: Option<ChangeBy<'_>>,
) -> Result<Option<MoveAnswer>, StoreError> {
    let pending = MoveOutcome::Moved {
        bookings: plan.after.clone(),
        slots: Vec::new(),
        rides: Vec::new(),
    };
    let note = change_note(&plan.before, &pending);
    let answer = serde_json::to_string(&pending).context("encoding a move's answer")?;
    let (b1, f1, t1) = plan.moves[0];
    let (b2, f2, t2) = plan.moves.get(1).copied().unwrap_or((0, 0, 0));
    let rows = sqlx::query(WRITE)
        .bind(key.to_string())
        .bind(asked.0)
        .bind(asked.1)
        .bind(answer)
        .bind(now())
        .bind(by.map(|b| b.user_id))
        .bind("move_booking")
        .bind(seen.booking.resident_id)
        .bind(by.map(|b| detail_of(&note, b)).unwrap_or_default())
        .bind(by.map(|b| b.remote_addr.to_string()).unwrap_or_default())
        .bind(by.and_then(|b| b.call_id).map(str::to_string))
        .bind("appointment_change")
        .bind(note.clone())
        .bind(i64::from(by.is_some()))
        .bind(b1)
        .bind(f1)
        .bind(t1)
        .bind(b2)
        .bind(f2)
        .bind(t2)
        .bind(plan.moves.len() as i64)
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let slots: Vec<Slot> = rows.iter().map(slot_from_row).collect::<Result<_, _>>()?;
    Ok(Some(MoveAnswer {
        outcome: MoveOutcome::Moved {
            bookings: plan.after,
            slots,
            rides: Vec::new(),
        },
        replayed: false,
    }))
}

/// The read of the module doc, step 1; `None` when there is no such booking.
pub(super) async fn seen(
    conn: &mut sqlx::AnyConnection,
    booking_id: i64,
    slot_id: i64,
) -> Result<Option<Seen>, StoreError> {
    let rows = sqlx::query(READ)
        .bind(booking_id)
        .bind(slot_id)
        .fetch_all(&mut *conn)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let birth: Option<String> = first.try_get("birth_date")?;
    let target = match first.try_get::<Option<i64>, _>("t_id")? {
        Some(_) => Some((
            SlotFacts::of(slot_from_row_as(first, "t_")?)?,
            first.try_get("t_venue_name")?,
        )),
        None => None,
    };
    let mut booking = None;
    let mut dose2 = None;
    for row in &rows {
        let b = locked_from_row(row)?;
        let live = BookingStatus::parse(&b.status).is_some_and(BookingStatus::is_live);
        if b.id == booking_id {
            booking = Some(b);
        } else if b.dose == 2 && live {
            dose2 = Some(b);
        }
    }
    let Some(booking) = booking else {
        return Ok(None);
    };
    Ok(Some(Seen {
        dose2: if booking.dose == 1 { dose2 } else { None },
        booking,
        birth: birth.and_then(|b| NaiveDate::parse_from_str(&b, "%Y-%m-%d").ok()),
        target,
    }))
}

/// The decision of the module doc, step 2.
pub(super) async fn decide(
    conn: &mut sqlx::AnyConnection,
    seen: &Seen,
) -> Result<Decision, StoreError> {
    let b = &seen.booking;
    let live = BookingStatus::parse(&b.status).is_some_and(BookingStatus::is_live);
    let (Some((target, venue_name)), Some(birth)) = (&seen.target, seen.birth) else {
        return Ok(Decision::Whole);
    };
    if !live || b.dose != 1 || b.has_ride || target.slot.id == b.slot_id {
        return Ok(Decision::Whole);
    }
    if target.slot.closed {
        return Ok(Decision::Refuse(closed()));
    }
    if let Err(refusal) = rules_with(birth, target, None) {
        return Ok(Decision::Refuse(refusal));
    }
    if target.slot.booked >= target.slot.capacity {
        return Ok(Decision::Refuse(full(&target.slot)));
    }
    let mut moves = vec![(b.id, b.slot_id, target.slot.id)];
    let mut before = vec![b.row.clone()];
    let mut after = vec![row_in(&b.row, &target.slot, venue_name)];
    if let Some(d2) = &seen.dose2 {
        if d2.has_ride {
            return Ok(Decision::Whole);
        }
        let standard = dose2_window(target.date(), target.product).standard;
        let candidates =
            dose2_candidates(&mut *conn, target, Some(d2), standard, standard, standard).await?;
        // As dose2_seat tries them: the first that is dose 2's own slot (kept: for the
        // transaction) or has a seat.
        let Some(to) = candidates
            .into_iter()
            .find(|c| c.id == d2.slot_id || c.booked < c.capacity)
        else {
            return Ok(Decision::Whole);
        };
        if to.id == d2.slot_id {
            return Ok(Decision::Whole);
        }
        moves.push((d2.id, d2.slot_id, to.id));
        before.push(d2.row.clone());
        after.push(row_in(&d2.row, &to, venue_name));
    }
    Ok(Decision::Move(Plan {
        moves,
        before,
        after,
    }))
}
