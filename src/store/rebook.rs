//! 予約変更 from the agent's screen: the changes an agent makes while the caller is on the line
//! (move, "move us both", cancel, book), the slots offered instead of a booking, and the
//! planner's edit of one slot.
//!
//! Every change is one write transaction that holds every rule ([`super::bookings`]: a seat is
//! taken only by the conditional UPDATE, dose 2 follows dose 1, dose 2 keeps dose 1's product
//! and interval) and, in the same transaction, writes its audit line and an inquiry
//! (`appointment_change` / `appointment_cancel`) against the current call, whose note says
//! what changed, so the change and its record stand or fall together.
//!
//! Idempotency: each change carries the client's key. The first answer is kept in
//! `booking_moves` and returned for any retry, which then changes nothing. A move's key is
//! stored as sent (the same keys as [`Store::move_booking`]); the other changes prefix theirs
//! (`cancel:`, `book:`, `together:`) so that one key cannot answer two kinds of change. In the
//! row, `booking_id` is the booking changed (the resident for `book:`) and `slot_id` the slot
//! asked for (0 for a cancel): the same key sent for another request is refused as invalid.
//!
//! A refusal rolls back to a savepoint taken after the booking was locked, then stores the
//! refusal as the key's answer in the same transaction: one round of the writer per request.
//! A twin request with the same key that committed first (it held the booking's lock, or the
//! writer) makes this one's answer row collide with its own: this one is then rolled back
//! whole and answers with the twin's answer.

use super::bookings::{
    booking_from_row, bookings_by_id, closed, dose2_seat, full, lock_booking, lock_live_dose,
    record_answer, release_seat, retryable, rules_given, seat_taken, slot_from_row, slots_by_id,
    stored_answer, transport, BookingRow, Dose2Seat, LockedBooking, MoveAnswer, MoveOptions,
    MoveOutcome, Refusal, Slot, Target, BOOKING_SELECT, SLOT_COLUMNS,
};
use super::{now, parse_ts, ts, Engine, Store, StoreError, WriteTx};
use crate::domain::vaccine::{check_age, dose2_window, jst_date, jst_midnight, jst_time};
use crate::domain::{BookingStatus, Product};
use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

mod at_once;

/// Who makes a change, from where, and on which call: the audit line and the inquiry.
#[derive(Debug, Clone, Copy)]
pub struct ChangeBy<'a> {
    pub user_id: i64,
    /// The call the agent is on (its `call_key`), when there is one.
    pub call_id: Option<&'a str>,
    pub remote_addr: &'a str,
}

/// One change an agent asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Into another slot; dose 1 takes dose 2 along, and a ride follows (or is released when
    /// `release_ride`: the resident comes without the bus).
    Move {
        booking_id: i64,
        slot_id: i64,
        release_ride: bool,
    },
    /// "Move us both": two residents of one household into the same slot, or neither.
    Together {
        booking_id: i64,
        with_booking_id: i64,
        slot_id: i64,
    },
    /// Cancel a booking; cancelling dose 1 cancels the live dose 2 that follows it.
    Cancel { booking_id: i64 },
    /// Book a dose for a resident with none live; booking dose 1 books dose 2 after it when
    /// the resident has none.
    Book {
        resident_id: i64,
        dose: i64,
        slot_id: i64,
    },
}

impl Change {
    fn stored_key(&self, key: &str) -> String {
        match self {
            Change::Move { .. } => key.to_string(),
            Change::Together { .. } => format!("together:{key}"),
            Change::Cancel { .. } => format!("cancel:{key}"),
            Change::Book { .. } => format!("book:{key}"),
        }
    }

    /// `(booking_id, slot_id)` as `booking_moves` records the request.
    fn subject(&self) -> (i64, i64) {
        match *self {
            Change::Move {
                booking_id,
                slot_id,
                ..
            }
            | Change::Together {
                booking_id,
                slot_id,
                ..
            } => (booking_id, slot_id),
            Change::Cancel { booking_id } => (booking_id, 0),
            Change::Book {
                resident_id,
                slot_id,
                ..
            } => (resident_id, slot_id),
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Change::Move { .. } => "move_booking",
            Change::Together { .. } => "move_together",
            Change::Cancel { .. } => "cancel_booking",
            Change::Book { .. } => "book",
        }
    }
}

/// What a change did, for the audit line and the inquiry: the resident it was about, the
/// others it touched, and a note in the words an agent would write.
struct Done {
    outcome: MoveOutcome,
    residents: Vec<i64>,
    note: String,
    category: &'static str,
}

/// A slot offered instead of a booking, with its venue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alternative {
    #[serde(flatten)]
    pub slot: Slot,
    pub venue_name: String,
    /// At the booking's own venue (offered first).
    pub same_venue: bool,
}

/// A household member's live bookings, for "move us both".
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Member {
    pub resident_id: i64,
    pub name: String,
    pub name_kana: String,
    pub bookings: Vec<BookingRow>,
}

/// The slots an agent may offer instead of a booking.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alternatives {
    pub booking: BookingRow,
    pub resident_id: i64,
    /// Same venue first, nearest day to the booking first; then the other venues, nearest
    /// first. Full slots are listed (the seats may come free while the agent looks).
    pub slots: Vec<Alternative>,
    /// The other members of the resident's household and their live bookings.
    pub household: Vec<Member>,
}

const WEEKDAY_JA: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];

/// An appointment as an agent reads it out: 6月8日（火）14:30 (JST).
pub fn appointment_ja(t: DateTime<Utc>) -> String {
    let d = jst_date(t);
    format!(
        "{}月{}日（{}）{}",
        d.month(),
        d.day(),
        WEEKDAY_JA[d.weekday().num_days_from_monday() as usize],
        jst_time(t).format("%H:%M")
    )
}

fn booking_ja(b: &BookingRow) -> String {
    let when = parse_ts(&b.starts_at)
        .map(appointment_ja)
        .unwrap_or_else(|| b.starts_at.clone());
    format!("{when} {}", b.venue_name)
}

/// How many slots of each kind (same venue, other venues) an answer offers at most.
pub const ALTERNATIVES_PER_GROUP: i64 = 40;

/// How far from the booking's day alternatives are looked for.
pub const ALTERNATIVES_DAYS: i64 = 90;

impl Store {
    /// 予約変更 with its record: the change, its audit line and its inquiry in one write
    /// transaction (see the module doc). A retry with the same key returns the first answer.
    pub async fn change_booking(
        &self,
        change: &Change,
        idempotency_key: &str,
        by: ChangeBy<'_>,
    ) -> Result<MoveAnswer, StoreError> {
        self.change_booking_by(change, idempotency_key, Some(by))
            .await
    }

    /// [`Store::change_booking`]; without `by` (the store's own callers: the city's tools and
    /// tests) no audit line or inquiry is written.
    pub(super) async fn change_booking_by(
        &self,
        change: &Change,
        idempotency_key: &str,
        by: Option<ChangeBy<'_>>,
    ) -> Result<MoveAnswer, StoreError> {
        let key = change.stored_key(idempotency_key);
        let (subject, slot) = change.subject();
        // No look-up of the key first: a retry runs as a change whose answer row then collides
        // with the first answer's, so it is rolled back whole and answers with that one (a
        // retry is rare; a look-up on every change would cost every change a round trip).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_change(change, &key, by).await {
                Ok(answer) => return Ok(answer),
                Err(e) if retryable(&e) && attempt < 5 => {
                    tracing::debug!(?change, attempt, "change retried after a deadlock");
                }
                // A request with the same key committed first: its answer.
                Err(StoreError::Conflict { constraint }) if constraint == "booking_moves_pkey" => {
                    let outcome = stored_answer(&self.write, &key, subject, slot)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("idempotency key vanished"))?;
                    return Ok(MoveAnswer {
                        outcome,
                        replayed: true,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_change(
        &self,
        change: &Change,
        key: &str,
        by: Option<ChangeBy<'_>>,
    ) -> Result<MoveAnswer, StoreError> {
        if let Change::Move {
            booking_id,
            slot_id,
            ..
        } = *change
        {
            if let Some(answer) = self.move_at_once(booking_id, slot_id, key, by).await? {
                return Ok(answer);
            }
        }
        if let Some(call) = by.and_then(|b| b.call_id) {
            let known: Option<i64> = sqlx::query_scalar("SELECT id FROM calls WHERE call_key = $1")
                .bind(call.to_string())
                .fetch_optional(&self.read)
                .await?;
            if known.is_none() {
                return Err(StoreError::Invalid { field: "call_id" });
            }
        }
        let (subject, slot) = change.subject();
        let mut tx = self.begin_write().await?;
        // Lock what the change is about first: on PostgreSQL a twin with the same key has
        // committed by the time the lock is ours, and recording the answer below collides
        // with its answer (see the module doc).
        let locked = match *change {
            Change::Move { booking_id, .. }
            | Change::Cancel { booking_id }
            | Change::Together { booking_id, .. } => Some(
                lock_booking(&mut tx, booking_id)
                    .await?
                    .ok_or(StoreError::NotFound)?,
            ),
            Change::Book { resident_id, .. } => {
                let sql = format!("SELECT id FROM residents WHERE id = $1{}", tx.for_update());
                sqlx::query(&sql)
                    .bind(resident_id)
                    .fetch_optional(tx.conn())
                    .await?
                    .ok_or(StoreError::Invalid {
                        field: "resident_id",
                    })?;
                None
            }
        };
        sqlx::query("SAVEPOINT change").execute(tx.conn()).await?;
        let result = match (change, &locked) {
            (
                Change::Move {
                    slot_id,
                    release_ride,
                    ..
                },
                Some(b),
            ) => self.do_move(&mut tx, b, *slot_id, *release_ride).await?,
            (
                Change::Together {
                    with_booking_id,
                    slot_id,
                    ..
                },
                Some(b),
            ) => {
                self.do_together(&mut tx, b, *with_booking_id, *slot_id)
                    .await?
            }
            (Change::Cancel { .. }, Some(b)) => do_cancel(&mut tx, b).await?,
            (
                Change::Book {
                    resident_id,
                    dose,
                    slot_id,
                },
                None,
            ) => self.do_book(&mut tx, *resident_id, *dose, *slot_id).await?,
            _ => unreachable!("a booking is locked for every change but a new booking"),
        };
        let done = match result {
            Ok(done) => done,
            Err(refusal) => {
                sqlx::query("ROLLBACK TO SAVEPOINT change")
                    .execute(tx.conn())
                    .await?;
                let outcome = MoveOutcome::Refused(refusal);
                record_answer(&mut tx, key, subject, slot, &outcome).await?;
                tx.commit().await?;
                return Ok(MoveAnswer {
                    outcome,
                    replayed: false,
                });
            }
        };
        let Some(by) = by else {
            record_answer(&mut tx, key, subject, slot, &done.outcome).await?;
            tx.commit().await?;
            return Ok(MoveAnswer {
                outcome: done.outcome,
                replayed: false,
            });
        };
        record_change(&mut tx, change, key, &done, by).await?;
        tx.commit().await?;
        Ok(MoveAnswer {
            outcome: done.outcome,
            replayed: false,
        })
    }

    async fn do_move(
        &self,
        tx: &mut WriteTx,
        booking: &LockedBooking,
        slot_id: i64,
        release_ride: bool,
    ) -> Result<Result<Done, Refusal>, StoreError> {
        let opts = MoveOptions { release_ride };
        let moved = match self.move_in(tx, booking, slot_id, opts).await? {
            Ok(moved) => moved,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let note = change_note(&moved.before, &moved.outcome);
        let outcome = moved.outcome;
        Ok(Ok(Done {
            outcome,
            residents: vec![booking.resident_id],
            note,
            category: "appointment_change",
        }))
    }

    async fn do_together(
        &self,
        tx: &mut WriteTx,
        first: &LockedBooking,
        with_booking_id: i64,
        slot_id: i64,
    ) -> Result<Result<Done, Refusal>, StoreError> {
        if with_booking_id == first.id {
            return Err(StoreError::Invalid {
                field: "with_booking_id",
            });
        }
        let second = lock_booking(tx, with_booking_id)
            .await?
            .ok_or(StoreError::Invalid {
                field: "with_booking_id",
            })?;
        let households: Vec<(i64, Option<String>)> = sqlx::query(
            "SELECT id, household_no FROM residents WHERE id = $1 OR id = $2 ORDER BY id",
        )
        .bind(first.resident_id)
        .bind(second.resident_id)
        .fetch_all(tx.conn())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("household_no")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let same_household = households.len() == 2
            && households[0].1.as_deref().is_some_and(|h| !h.is_empty())
            && households[0].1 == households[1].1;
        if !same_household {
            return Ok(Err(Refusal::new(
                "not_household",
                "Those two bookings are not of one household, so they cannot be moved \
                 together; nothing was changed.",
            )));
        }
        let mut before = Vec::new();
        let mut bookings = Vec::new();
        let mut changed = Vec::new();
        let mut rides = Vec::new();
        for (i, b) in [first, &second].into_iter().enumerate() {
            match self.move_in(tx, b, slot_id, MoveOptions::default()).await? {
                Ok(super::bookings::MoveDone {
                    outcome:
                        MoveOutcome::Moved {
                            bookings: bs,
                            slots,
                            rides: rs,
                        },
                    before: was,
                }) => {
                    before.extend(was);
                    rides.extend(rs);
                    bookings.extend(bs);
                    changed.extend(slots.iter().map(|s| s.id));
                }
                Ok(super::bookings::MoveDone {
                    outcome: MoveOutcome::Refused(r),
                    ..
                })
                | Err(r) => {
                    if i == 1 && r.reason == "slot_full" {
                        return Ok(Err(Refusal::new(
                            "slot_full",
                            "That time has only one seat left, not two for both of you; \
                             nothing was changed. Please offer another time.",
                        )));
                    }
                    return Ok(Err(r));
                }
            }
        }
        changed.sort_unstable();
        changed.dedup();
        let slots = if changed.is_empty() {
            Vec::new()
        } else {
            slots_by_id(tx, &changed).await?
        };
        let outcome = MoveOutcome::Moved {
            bookings,
            slots,
            rides,
        };
        let note = format!("一緒に変更: {}", change_note(&before, &outcome));
        Ok(Ok(Done {
            outcome,
            residents: vec![first.resident_id, second.resident_id],
            note,
            category: "appointment_change",
        }))
    }

    async fn do_book(
        &self,
        tx: &mut WriteTx,
        resident_id: i64,
        dose: i64,
        slot_id: i64,
    ) -> Result<Result<Done, Refusal>, StoreError> {
        if !(1..=2).contains(&dose) {
            return Err(StoreError::Invalid { field: "dose" });
        }
        if let Some(live) = lock_live_dose(tx, resident_id, dose).await? {
            let shown = bookings_by_id(tx, &[live.id]).await?;
            let when = shown.first().map(booking_ja).unwrap_or_default();
            return Ok(Err(Refusal::new(
                "already_booked",
                format!(
                    "This resident already has a dose {dose} appointment ({when}); nothing was \
                     changed. Move that appointment instead."
                ),
            )));
        }
        let target = Target::read(tx, slot_id, resident_id)
            .await?
            .ok_or(StoreError::Invalid { field: "slot_id" })?;
        if target.facts.slot.closed {
            return Ok(Err(closed()));
        }
        if let Err(refusal) =
            rules_given(tx, resident_id, target.birth, dose, &target.facts).await?
        {
            return Ok(Err(refusal));
        }
        if seat_taken(tx, slot_id).await?.is_none() {
            return Ok(Err(full(&target.facts.slot)));
        }
        let mut ids = vec![insert_booking(tx, resident_id, dose, slot_id).await?];
        let mut changed = vec![slot_id];
        if dose == 1 && !has_dose2(tx, resident_id).await? {
            match dose2_seat(tx, &target.facts, None, false).await? {
                Ok(Dose2Seat::Taken(slot2)) => {
                    ids.push(insert_booking(tx, resident_id, 2, slot2.id).await?);
                    changed.push(slot2.id);
                }
                Ok(_) => return Err(anyhow::anyhow!("a new dose 2 was not given a seat").into()),
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        let bookings = bookings_by_id(tx, &ids).await?;
        let slots = slots_by_id(tx, &changed).await?;
        let note = format!(
            "予約: {}",
            bookings
                .iter()
                .map(|b| format!("{}回目 {}", b.dose, booking_ja(b)))
                .collect::<Vec<_>>()
                .join("、")
        );
        Ok(Ok(Done {
            outcome: MoveOutcome::Moved {
                bookings,
                slots,
                rides: Vec::new(),
            },
            residents: vec![resident_id],
            note,
            category: "appointment_change",
        }))
    }

    /// The slots to offer instead of booking `booking_id` (see [`Alternatives`]): open, in the
    /// future, that the rules allow the resident (age; for dose 2, dose 1's product and the
    /// minimum interval).
    pub async fn alternatives(
        &self,
        booking_id: i64,
        from: DateTime<Utc>,
    ) -> Result<Alternatives, StoreError> {
        let row = sqlx::query(&format!("{BOOKING_SELECT} WHERE b.id = $1",))
            .bind(booking_id)
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        let booking = booking_from_row(&row)?;
        let resident_id: i64 = sqlx::query_scalar("SELECT resident_id FROM bookings WHERE id = $1")
            .bind(booking_id)
            .fetch_one(&self.read)
            .await?;
        let birth: Option<String> =
            sqlx::query_scalar("SELECT birth_date FROM residents WHERE id = $1")
                .bind(resident_id)
                .fetch_optional(&self.read)
                .await?;
        let birth = birth.and_then(|b| NaiveDate::parse_from_str(&b, "%Y-%m-%d").ok());
        let at = parse_ts(&booking.starts_at).unwrap_or(from);
        // Dose 2 keeps dose 1's product and interval.
        let mut product: Option<Product> = None;
        let mut earliest = from;
        if booking.dose == 2 {
            let row = sqlx::query(
                "SELECT s.product, s.starts_at FROM bookings b JOIN slots s ON s.id = b.slot_id \
                 WHERE b.resident_id = $1 AND b.dose = 1 \
                 AND b.status IN ('booked', 'checked_in', 'vaccinated') ORDER BY b.id DESC LIMIT 1",
            )
            .bind(resident_id)
            .fetch_optional(&self.read)
            .await?;
            if let Some(row) = row {
                let p: String = row.try_get("product")?;
                let s: String = row.try_get("starts_at")?;
                if let (Some(p), Some(s)) = (Product::parse(&p), parse_ts(&s)) {
                    product = Some(p);
                    earliest = earliest.max(jst_midnight(dose2_window(jst_date(s), p).earliest));
                }
            }
        }
        let horizon_end = at.max(earliest) + Duration::days(ALTERNATIVES_DAYS);
        let mut slots = Vec::new();
        for same in [true, false] {
            // Nearest after the booking's time, and nearest before it (but not in the past).
            let mut group: Vec<(i64, Alternative)> = Vec::new();
            for after in [true, false] {
                if !after && earliest >= at {
                    continue;
                }
                let (order, lo, hi) = if after {
                    ("ASC", ts(at.max(earliest)), ts(horizon_end))
                } else {
                    ("DESC", ts(earliest), ts(at))
                };
                let sql = format!(
                    "SELECT s.id, s.venue_id, s.starts_at, s.ends_at, s.product, s.capacity, \
                     s.booked, s.closed, s.held, v.name AS venue_name FROM slots s \
                     JOIN venues v ON v.id = s.venue_id \
                     WHERE s.starts_at >= $1 AND s.starts_at < $2 AND s.closed = 0 \
                     AND s.id <> $3 AND s.venue_id {same_sql} $4 \
                     AND ($5 = '' OR s.product = $5) \
                     ORDER BY s.starts_at {order}, s.venue_id, s.id LIMIT $6",
                    same_sql = if same { "=" } else { "<>" },
                );
                let rows = sqlx::query(&sql)
                    .bind(lo)
                    .bind(hi)
                    .bind(booking.slot_id)
                    .bind(booking.venue_id)
                    .bind(product.map(|p| p.code()).unwrap_or("").to_string())
                    .bind(ALTERNATIVES_PER_GROUP)
                    .fetch_all(&self.read)
                    .await?;
                for r in &rows {
                    let slot = slot_from_row(r)?;
                    let Some(starts) = parse_ts(&slot.starts_at) else {
                        continue;
                    };
                    if let (Some(birth), Some(p)) = (birth, Product::parse(&slot.product)) {
                        if check_age(p, birth, jst_date(starts)).is_err() {
                            continue;
                        }
                    }
                    let distance = (starts - at).num_minutes().abs();
                    group.push((
                        distance,
                        Alternative {
                            slot,
                            venue_name: r.try_get("venue_name")?,
                            same_venue: same,
                        },
                    ));
                }
            }
            group.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.slot.starts_at.cmp(&b.1.slot.starts_at))
                    .then(a.1.slot.id.cmp(&b.1.slot.id))
            });
            slots.extend(
                group
                    .into_iter()
                    .take(ALTERNATIVES_PER_GROUP as usize)
                    .map(|(_, a)| a),
            );
        }
        let household = self.household_of(resident_id).await?;
        Ok(Alternatives {
            booking,
            resident_id,
            slots,
            household,
        })
    }

    /// The slots with these ids as they are now, in one read (for `slot_update`).
    pub async fn slots_now(&self, ids: &[i64]) -> Result<Vec<Slot>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        // Integers only: inlined, one statement for any count.
        let rows = sqlx::query(&format!(
            "SELECT {SLOT_COLUMNS} FROM slots WHERE id IN ({}) ORDER BY id",
            list.join(",")
        ))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(slot_from_row).collect::<Result<_, _>>()?)
    }

    /// The other members of a resident's household (same 世帯番号) with their live bookings.
    pub async fn household_of(&self, resident_id: i64) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.name, r.name_kana FROM residents r \
             JOIN residents me ON me.id = $1 \
             WHERE r.household_no = me.household_no AND me.household_no <> '' AND r.id <> me.id \
             ORDER BY r.birth_date, r.id LIMIT 20",
        )
        .bind(resident_id)
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let bookings = sqlx::query(&format!(
                "{BOOKING_SELECT} WHERE b.resident_id = $1 AND b.status IN ('booked', 'checked_in') \
                 ORDER BY b.dose, b.id"
            ))
            .bind(id)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(booking_from_row)
            .collect::<Result<_, _>>()?;
            out.push(Member {
                resident_id: id,
                name: r.try_get("name")?,
                name_kana: r.try_get("name_kana")?,
                bookings,
            });
        }
        Ok(out)
    }
}

/// "1回目 6月8日（火）14:30 会場 → 6月10日（木）09:30 会場" per booking that moved.
/// The change's record, in its transaction: the key's answer, and for each resident it was
/// about an audit line and an inquiry against the current call. On PostgreSQL, where every
/// statement is a round trip to the server, the usual change (one resident) writes all three
/// in one statement.
async fn record_change(
    tx: &mut WriteTx,
    change: &Change,
    key: &str,
    done: &Done,
    by: ChangeBy<'_>,
) -> Result<(), StoreError> {
    let (subject, slot) = change.subject();
    let at = now();
    let detail = detail_of(&done.note, by);
    if let (Engine::Postgres, [resident]) = (tx.engine(), done.residents.as_slice()) {
        let answer = serde_json::to_string(&done.outcome).context("encoding a move's answer")?;
        sqlx::query(
            "WITH answer AS (INSERT INTO booking_moves \
             (idempotency_key, booking_id, slot_id, answer, created_at) \
             VALUES ($1, $2, $3, $4, $5)), \
             audit AS (INSERT INTO audit_entries (at, user_id, action, resident_id, detail, \
             remote_addr) VALUES ($5, $6, $7, $8, $9, $10)) \
             INSERT INTO inquiries (resident_id, call_key, user_id, category, note, follow_up, \
             caller_kind, relationship, created_at) \
             VALUES ($8, $11, $6, $12, $13, 0, 'self', '', $5)",
        )
        .bind(key.to_string())
        .bind(subject)
        .bind(slot)
        .bind(answer)
        .bind(at)
        .bind(by.user_id)
        .bind(change.action())
        .bind(*resident)
        .bind(detail)
        .bind(by.remote_addr.to_string())
        .bind(by.call_id.map(str::to_string))
        .bind(done.category)
        .bind(done.note.clone())
        .execute(tx.conn())
        .await?;
        return Ok(());
    }
    record_answer(tx, key, subject, slot, &done.outcome).await?;
    for resident in &done.residents {
        sqlx::query(
            "INSERT INTO audit_entries (at, user_id, action, resident_id, detail, remote_addr) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(at.clone())
        .bind(by.user_id)
        .bind(change.action())
        .bind(*resident)
        .bind(detail.clone())
        .bind(by.remote_addr.to_string())
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO inquiries (resident_id, call_key, user_id, category, note, \
             follow_up, caller_kind, relationship, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, 'self', '', $6)",
        )
        .bind(*resident)
        .bind(by.call_id.map(str::to_string))
        .bind(by.user_id)
        .bind(done.category)
        .bind(done.note.clone())
        .bind(at.clone())
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// The audit line's detail: the change's note and the call it was made on.
fn detail_of(note: &str, by: ChangeBy<'_>) -> String {
    match by.call_id {
        Some(call) => format!("{note} [call {call}]"),
        None => note.to_string(),
    }
}

fn change_note(before: &[BookingRow], outcome: &MoveOutcome) -> String {
    let MoveOutcome::Moved { bookings, .. } = outcome else {
        return String::new();
    };
    let parts: Vec<String> = bookings
        .iter()
        .filter_map(|after| {
            let was = before.iter().find(|b| b.id == after.id)?;
            (was.slot_id != after.slot_id).then(|| {
                format!(
                    "{}回目 {} → {}",
                    after.dose,
                    booking_ja(was),
                    booking_ja(after)
                )
            })
        })
        .collect();
    if parts.is_empty() {
        "予約変更: 変更なし（同じ枠）".to_string()
    } else {
        format!("予約変更: {}", parts.join("、"))
    }
}

/// Cancels a booking and, for dose 1, the live dose 2 that follows it; the seats come free.
async fn do_cancel(
    tx: &mut WriteTx,
    booking: &LockedBooking,
) -> Result<Result<Done, Refusal>, StoreError> {
    if !BookingStatus::parse(&booking.status).is_some_and(BookingStatus::is_live) {
        return Ok(Err(Refusal::new(
            "booking_not_live",
            format!(
                "This booking is {} and cannot be cancelled; nothing was changed.",
                booking.status.replace('_', " ")
            ),
        )));
    }
    let mut targets = vec![(booking.id, booking.slot_id)];
    if booking.dose == 1 {
        if let Some(d2) = lock_live_dose(tx, booking.resident_id, 2).await? {
            targets.push((d2.id, d2.slot_id));
        }
    }
    let ids: Vec<i64> = targets.iter().map(|t| t.0).collect();
    let before = bookings_by_id(tx, &ids).await?;
    let mut slots: Vec<i64> = targets.iter().map(|t| t.1).collect();
    slots.sort_unstable();
    let at = now();
    for (id, _) in &targets {
        sqlx::query("UPDATE bookings SET status = 'cancelled', updated_at = $1 WHERE id = $2")
            .bind(at.clone())
            .bind(*id)
            .execute(tx.conn())
            .await?;
    }
    // In id order, as every change touches slot rows (no deadlock between two of them).
    for slot in &slots {
        release_seat(tx, *slot).await?;
    }
    // A cancelled booking's bus seat comes free too.
    let mut rides = Vec::new();
    for id in &ids {
        let live =
            sqlx::query("SELECT id, run_id FROM rides WHERE booking_id = $1 AND status = 'booked'")
                .bind(*id)
                .fetch_all(tx.conn())
                .await?;
        for r in &live {
            let (ride, run): (i64, i64) = (r.try_get("id")?, r.try_get("run_id")?);
            transport::release_ride(tx, ride, run).await?;
            rides.push(transport::ride_change(tx, ride).await?);
        }
    }
    let bookings = bookings_by_id(tx, &ids).await?;
    let changed = slots_by_id(tx, &slots).await?;
    let note = format!(
        "キャンセル: {}",
        before
            .iter()
            .map(|b| format!("{}回目 {}", b.dose, booking_ja(b)))
            .collect::<Vec<_>>()
            .join("、")
    );
    Ok(Ok(Done {
        outcome: MoveOutcome::Moved {
            bookings,
            slots: changed,
            rides,
        },
        residents: vec![booking.resident_id],
        note,
        category: "appointment_cancel",
    }))
}

async fn insert_booking(
    tx: &mut WriteTx,
    resident_id: i64,
    dose: i64,
    slot_id: i64,
) -> Result<i64, StoreError> {
    let at = now();
    Ok(sqlx::query_scalar(
        "INSERT INTO bookings (resident_id, dose, slot_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'booked', $4, $4) RETURNING id",
    )
    .bind(resident_id)
    .bind(dose)
    .bind(slot_id)
    .bind(at)
    .fetch_one(tx.conn())
    .await?)
}

/// A live or given dose 2: then booking dose 1 books no dose 2 after it.
async fn has_dose2(tx: &mut WriteTx, resident_id: i64) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM bookings WHERE resident_id = $1 AND dose = 2 \
         AND status IN ('booked', 'checked_in', 'vaccinated')",
    )
    .bind(resident_id)
    .fetch_one(tx.conn())
    .await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::store::testing::{sample_residents, TestDb};

    /// 09:30 and 14:00 JST on `days` days from 2031-06-03, `capacity` seats each; slot ids
    /// by (day, 0 = 09:30 | 1 = 14:00).
    async fn calendar(
        s: &Store,
        venue: i64,
        product: Product,
        days: i64,
        capacity: i64,
    ) -> Vec<[i64; 2]> {
        let first = NaiveDate::from_ymd_opt(2031, 6, 3).unwrap();
        crate::store::testing::calendar(s, venue, product, first, days, capacity).await
    }

    struct Setup {
        db: TestDb,
        residents: Vec<i64>,
        user: i64,
        cal: Vec<[i64; 2]>,
        venue: i64,
    }

    /// Four residents (two households of two), an agent, a call "c-1", a venue with 60 days
    /// of Pfizer slots of `capacity` seats.
    async fn setup(engine: &str, capacity: i64) -> Setup {
        let db = TestDb::new(engine).await.unwrap();
        let s = &db.store;
        s.insert_residents(&sample_residents(4)).await.unwrap();
        let residents: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
            .fetch_all(&s.read)
            .await
            .unwrap();
        let user = s
            .upsert_user("agent", "", "x", Role::Agent, None)
            .await
            .unwrap();
        sqlx::query("INSERT INTO calls (call_key, started_at) VALUES ('c-1', $1)")
            .bind(now())
            .execute(&s.write)
            .await
            .unwrap();
        let venue = s
            .insert_venue("中総合会館", "舞鶴市字浜", &["東"])
            .await
            .unwrap();
        let cal = calendar(s, venue, Product::Pfizer, 60, capacity).await;
        Setup {
            db,
            residents,
            user,
            cal,
            venue,
        }
    }

    fn by(user: i64) -> ChangeBy<'static> {
        ChangeBy {
            user_id: user,
            call_id: Some("c-1"),
            remote_addr: "127.0.0.1:1",
        }
    }

    async fn count(s: &Store, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&s.read).await.unwrap()
    }

    fn moved(a: &MoveAnswer) -> &Vec<BookingRow> {
        match &a.outcome {
            MoveOutcome::Moved { bookings, .. } => bookings,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    fn refused(a: &MoveAnswer) -> &Refusal {
        match &a.outcome {
            MoveOutcome::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A move from the screen: both doses move, one audit line and one inquiry against the
    /// call name the change; a refusal and a retry write neither; an unknown call changes
    /// nothing.
    async fn a_move_is_audited_and_attached_to_the_call(engine: &str) {
        let t = setup(engine, 2).await;
        let s = &t.db.store;
        let r = t.residents[0];
        let d1 = s.book(r, 1, t.cal[0][0]).await.unwrap().unwrap();
        s.book(r, 2, t.cal[21][0]).await.unwrap().unwrap();
        let change = Change::Move {
            booking_id: d1,
            slot_id: t.cal[3][1],
            release_ride: false,
        };
        let a = s.change_booking(&change, "k1", by(t.user)).await.unwrap();
        assert_eq!(moved(&a).len(), 2, "{engine}: dose 2 followed");
        let now_booked = s.bookings_of(r).await.unwrap();
        assert_eq!(
            (now_booked[0].slot_id, now_booked[1].slot_id),
            (t.cal[3][1], t.cal[24][1])
        );
        let note: String = sqlx::query_scalar(
            "SELECT note FROM inquiries WHERE call_key = 'c-1' AND category = 'appointment_change'",
        )
        .fetch_one(&s.read)
        .await
        .unwrap();
        // 2031-06-03 is a Tuesday; day 3 is Friday 6 June, 14:00.
        assert!(
            note.contains("1回目 6月3日（火）09:30 中総合会館 → 6月6日（金）14:00 中総合会館"),
            "{engine}: {note}"
        );
        assert!(note.contains("2回目"), "{note}");
        assert_eq!(
            count(
                s,
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'move_booking'"
            )
            .await,
            1
        );

        // A retry: the first answer, nothing written again.
        let again = s.change_booking(&change, "k1", by(t.user)).await.unwrap();
        assert!(again.replayed && again.outcome == a.outcome, "{engine}");
        // Into a full slot: refused, nothing written.
        let other = s
            .book(t.residents[2], 1, t.cal[5][0])
            .await
            .unwrap()
            .unwrap();
        s.book(t.residents[3], 1, t.cal[5][0])
            .await
            .unwrap()
            .unwrap();
        let full = Change::Move {
            booking_id: d1,
            slot_id: t.cal[5][0],
            release_ride: false,
        };
        let no = s.change_booking(&full, "k2", by(t.user)).await.unwrap();
        assert_eq!(refused(&no).reason, "slot_full", "{engine}");
        assert!(refused(&no).message.contains("nothing was changed"));
        let no_again = s.change_booking(&full, "k2", by(t.user)).await.unwrap();
        assert!(no_again.replayed && no_again.outcome == no.outcome);
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM inquiries").await,
            1,
            "{engine}"
        );
        assert_eq!(count(s, "SELECT COUNT(*) FROM audit_entries").await, 1);
        // An unknown call: refused as invalid before anything changes.
        let err = s
            .change_booking(
                &Change::Move {
                    booking_id: other,
                    slot_id: t.cal[6][0],
                    release_ride: false,
                },
                "k3",
                ChangeBy {
                    call_id: Some("no-such-call"),
                    ..by(t.user)
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { field: "call_id" }),
            "{err:?}"
        );
        assert_eq!(
            s.bookings_of(t.residents[2]).await.unwrap()[0].slot_id,
            t.cal[5][0]
        );
        assert!(
            s.slot_count_mismatches().await.unwrap().is_empty(),
            "{engine}"
        );
        t.db.cleanup().await;
    }

    /// Cancel dose 1: dose 2 goes too and both seats come free; book dose 1 again: dose 2
    /// follows at the standard interval; a second booking of a booked dose is refused.
    async fn cancel_and_book_again(engine: &str) {
        let t = setup(engine, 2).await;
        let s = &t.db.store;
        let r = t.residents[1];
        let d1 = s.book(r, 1, t.cal[0][0]).await.unwrap().unwrap();
        s.book(r, 2, t.cal[21][0]).await.unwrap().unwrap();
        let a = s
            .change_booking(&Change::Cancel { booking_id: d1 }, "c1", by(t.user))
            .await
            .unwrap();
        let bs = moved(&a);
        assert_eq!(bs.len(), 2, "{engine}");
        assert!(bs.iter().all(|b| b.status == "cancelled"));
        assert_eq!(s.slot(t.cal[0][0]).await.unwrap().unwrap().booked, 0);
        assert_eq!(s.slot(t.cal[21][0]).await.unwrap().unwrap().booked, 0);
        // Cancelling again: not live any more.
        let again = s
            .change_booking(&Change::Cancel { booking_id: d1 }, "c2", by(t.user))
            .await
            .unwrap();
        assert_eq!(refused(&again).reason, "booking_not_live");

        let book = Change::Book {
            resident_id: r,
            dose: 1,
            slot_id: t.cal[2][1],
        };
        let a = s.change_booking(&book, "b1", by(t.user)).await.unwrap();
        let bs = moved(&a);
        assert_eq!(
            bs.iter().map(|b| (b.dose, b.slot_id)).collect::<Vec<_>>(),
            vec![(1, t.cal[2][1]), (2, t.cal[23][1])],
            "{engine}"
        );
        let twice = s.change_booking(&book, "b2", by(t.user)).await.unwrap();
        assert_eq!(refused(&twice).reason, "already_booked", "{engine}");
        assert!(
            refused(&twice).message.contains("6月5日"),
            "{}",
            refused(&twice).message
        );
        let replay = s.change_booking(&book, "b1", by(t.user)).await.unwrap();
        assert!(replay.replayed && replay.outcome == a.outcome);
        assert_eq!(
            count(
                s,
                "SELECT COUNT(*) FROM inquiries WHERE category = 'appointment_cancel'"
            )
            .await,
            1
        );
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM bookings WHERE status = 'booked'").await,
            2,
            "{engine}"
        );
        assert!(
            s.slot_count_mismatches().await.unwrap().is_empty(),
            "{engine}"
        );
        t.db.cleanup().await;
    }

    /// "Move us both": into a slot with one seat left, refused and nothing moves; with two,
    /// both move (each dose 2 following); another household's booking is refused.
    async fn move_us_both(engine: &str) {
        let t = setup(engine, 3).await;
        let s = &t.db.store;
        let [a, b, c, _] = [
            t.residents[0],
            t.residents[1],
            t.residents[2],
            t.residents[3],
        ];
        let a1 = s.book(a, 1, t.cal[0][0]).await.unwrap().unwrap();
        s.book(a, 2, t.cal[21][0]).await.unwrap().unwrap();
        let b1 = s.book(b, 1, t.cal[1][0]).await.unwrap().unwrap();
        let c1 = s.book(c, 1, t.cal[1][0]).await.unwrap().unwrap();
        // Day 4 at 14:00 keeps one seat.
        sqlx::query("UPDATE slots SET capacity = 1 WHERE id = $1")
            .bind(t.cal[4][1])
            .execute(&s.write)
            .await
            .unwrap();
        let both = |slot_id| Change::Together {
            booking_id: a1,
            with_booking_id: b1,
            slot_id,
        };
        let before = s
            .slots(Some(t.venue), None, DateTime::UNIX_EPOCH, 1000)
            .await
            .unwrap();
        let no = s
            .change_booking(&both(t.cal[4][1]), "t1", by(t.user))
            .await
            .unwrap();
        assert_eq!(refused(&no).reason, "slot_full", "{engine}");
        assert!(
            refused(&no).message.contains("only one seat"),
            "{}",
            refused(&no).message
        );
        let after = s
            .slots(Some(t.venue), None, DateTime::UNIX_EPOCH, 1000)
            .await
            .unwrap();
        assert_eq!(before, after, "{engine}: nothing changed");

        let ok = s
            .change_booking(&both(t.cal[4][0]), "t2", by(t.user))
            .await
            .unwrap();
        let bs = moved(&ok);
        assert_eq!(bs.len(), 3, "{engine}: a's two doses and b's dose 1");
        assert_eq!(s.bookings_of(a).await.unwrap()[0].slot_id, t.cal[4][0]);
        assert_eq!(s.bookings_of(a).await.unwrap()[1].slot_id, t.cal[25][0]);
        assert_eq!(s.bookings_of(b).await.unwrap()[0].slot_id, t.cal[4][0]);
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM inquiries WHERE call_key = 'c-1'").await,
            2,
            "{engine}: one inquiry per resident"
        );

        let other = Change::Together {
            booking_id: a1,
            with_booking_id: c1,
            slot_id: t.cal[6][0],
        };
        let no = s.change_booking(&other, "t3", by(t.user)).await.unwrap();
        assert_eq!(refused(&no).reason, "not_household", "{engine}");
        assert!(
            s.slot_count_mismatches().await.unwrap().is_empty(),
            "{engine}"
        );
        assert_eq!(s.slots_over_capacity().await.unwrap(), 0);
        t.db.cleanup().await;
    }

    /// The alternatives: same venue nearest first, then the other venue; dose 2 only where
    /// dose 1's product and interval allow; the household member listed.
    async fn alternatives_same_venue_nearest_first(engine: &str) {
        let t = setup(engine, 2).await;
        let s = &t.db.store;
        let r = t.residents[0];
        let d1 = s.book(r, 1, t.cal[10][0]).await.unwrap().unwrap();
        let d2 = s.book(r, 2, t.cal[31][0]).await.unwrap().unwrap();
        s.book(t.residents[1], 1, t.cal[10][0])
            .await
            .unwrap()
            .unwrap();
        let far = s.insert_venue("西市民プラザ", "", &[]).await.unwrap();
        let moderna = calendar(s, far, Product::Moderna, 60, 2).await;
        let from =
            crate::domain::vaccine::jst_midnight(NaiveDate::from_ymd_opt(2031, 6, 1).unwrap());

        let alt = s.alternatives(d1, from).await.unwrap();
        assert_eq!(alt.booking.id, d1);
        let first: Vec<i64> = alt.slots.iter().take(3).map(|a| a.slot.id).collect();
        // 4.5 h after, 19.5 h before, then a tie at 24 h that goes to the sooner.
        assert_eq!(
            first,
            vec![t.cal[10][1], t.cal[9][1], t.cal[9][0]],
            "{engine}"
        );
        let same = alt.slots.iter().take_while(|a| a.same_venue).count();
        assert_eq!(same as i64, ALTERNATIVES_PER_GROUP, "{engine}");
        assert!(alt.slots[same..].iter().all(|a| a.slot.venue_id == far));
        assert!(alt.slots.iter().all(|a| a.slot.id != t.cal[10][0]));
        assert_eq!(alt.household.len(), 1, "{engine}");
        assert_eq!(alt.household[0].resident_id, t.residents[1]);
        assert_eq!(alt.household[0].bookings.len(), 1);

        // Dose 2: Pfizer only, never before day 19 after dose 1 (day 29 here).
        let alt = s.alternatives(d2, from).await.unwrap();
        assert!(!alt.slots.is_empty());
        assert!(
            alt.slots.iter().all(|a| a.slot.product == "pfizer"),
            "{engine}"
        );
        let earliest = NaiveDate::from_ymd_opt(2031, 6, 3).unwrap() + Duration::days(10 + 19);
        for a in &alt.slots {
            assert!(
                jst_date(parse_ts(&a.slot.starts_at).unwrap()) >= earliest,
                "{engine}: {a:?}"
            );
        }
        assert!(!alt
            .slots
            .iter()
            .any(|a| moderna.iter().any(|d| d.contains(&a.slot.id))));
        t.db.cleanup().await;
    }

    /// Steps 1 and 2 of a move at once: what was read, and the move decided from it.
    async fn decided(
        conn: &mut sqlx::AnyConnection,
        booking: i64,
        slot: i64,
    ) -> (at_once::Seen, at_once::Plan) {
        let seen = at_once::seen(conn, booking, slot).await.unwrap().unwrap();
        match at_once::decide(conn, &seen).await.unwrap() {
            at_once::Decision::Move(plan) => (seen, plan),
            _ => panic!("a dose-1 move with a seat is decided at once"),
        }
    }

    /// PostgreSQL's move in one statement: a dose-1 move takes it, and a write whose read went
    /// stale (the booking moved, or the slot filled, in between) changes nothing, records
    /// nothing and leaves the request to the transaction.
    #[tokio::test]
    async fn a_move_at_once_changes_nothing_once_its_read_is_stale() {
        if !crate::store::testing::engines().contains(&"postgres") {
            return;
        }
        let t = setup("postgres", 3).await;
        let s = &t.db.store;
        let r = t.residents[0];
        let d1 = s.book(r, 1, t.cal[0][0]).await.unwrap().unwrap();
        s.book(r, 2, t.cal[21][0]).await.unwrap().unwrap();
        let mut conn = s.write.acquire().await.unwrap();
        let (seen, stale) = decided(&mut conn, d1, t.cal[3][1]).await;
        // Meanwhile another agent moves the same booking elsewhere.
        let other = Change::Move {
            booking_id: d1,
            slot_id: t.cal[2][0],
            release_ride: false,
        };
        s.change_booking(&other, "k-other", by(t.user))
            .await
            .unwrap();
        let before = count(s, "SELECT COUNT(*) FROM booking_moves").await;
        let audits = count(s, "SELECT COUNT(*) FROM audit_entries").await;
        let written = at_once::write(
            &mut conn,
            &seen,
            stale,
            "k-stale",
            (d1, t.cal[3][1]),
            Some(by(t.user)),
        )
        .await
        .unwrap();
        assert!(written.is_none(), "a stale read writes nothing");
        let now_booked = s.bookings_of(r).await.unwrap();
        assert_eq!(
            (now_booked[0].slot_id, now_booked[1].slot_id),
            (t.cal[2][0], t.cal[23][0]),
            "the other agent's move stands"
        );
        assert_eq!(count(s, "SELECT COUNT(*) FROM booking_moves").await, before);
        assert_eq!(count(s, "SELECT COUNT(*) FROM audit_entries").await, audits);
        assert!(s.slot_count_mismatches().await.unwrap().is_empty());

        // The slot asked for fills between the read and the write: nothing changes.
        let (seen, stale) = decided(&mut conn, d1, t.cal[4][0]).await;
        sqlx::query("UPDATE slots SET capacity = booked WHERE id = $1")
            .bind(t.cal[4][0])
            .execute(&s.write)
            .await
            .unwrap();
        let written = at_once::write(
            &mut conn,
            &seen,
            stale,
            "k-full",
            (d1, t.cal[4][0]),
            Some(by(t.user)),
        )
        .await
        .unwrap();
        assert!(
            written.is_none(),
            "a slot that filled meanwhile takes nobody"
        );
        assert_eq!(s.bookings_of(r).await.unwrap()[0].slot_id, t.cal[2][0]);
        assert_eq!(s.slots_over_capacity().await.unwrap(), 0);
        drop(conn);

        // The same request through the store: the read is fresh, the move is made at once
        // (its answer is stored with the slots as they now are, so a retry returns it whole).
        let ask = Change::Move {
            booking_id: d1,
            slot_id: t.cal[3][1],
            release_ride: false,
        };
        let a = s.change_booking(&ask, "k-stale", by(t.user)).await.unwrap();
        assert_eq!(moved(&a)[0].slot_id, t.cal[3][1]);
        let MoveOutcome::Moved { slots, .. } = &a.outcome else {
            unreachable!()
        };
        assert_eq!(slots.len(), 4, "both doses' old and new slots: {slots:?}");
        for slot in slots {
            assert_eq!(Some(slot), s.slot(slot.id).await.unwrap().as_ref());
        }
        let again = s.change_booking(&ask, "k-stale", by(t.user)).await.unwrap();
        assert!(again.replayed && again.outcome == a.outcome);
        // A full slot read as full: refused at once, the refusal stored as the key's answer.
        let no = s
            .change_booking(
                &Change::Move {
                    booking_id: d1,
                    slot_id: t.cal[4][0],
                    release_ride: false,
                },
                "k-full",
                by(t.user),
            )
            .await
            .unwrap();
        assert_eq!(refused(&no).reason, "slot_full");
        assert!(s.slot_count_mismatches().await.unwrap().is_empty());
    }

    crate::on_each_engine!(
        a_move_is_audited_and_attached_to_the_call,
        cancel_and_book_again,
        move_us_both,
        alternatives_same_venue_nearest_first,
    );
}
