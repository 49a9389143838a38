//! 受付の混雑予測: arrivals per 15 minutes (from the bookings' slot times) against the
//! throughput reception has shown (check-ins per minute lately), and the queue that builds when
//! more are due than reception handles, so the city can add staff before the wait grows.
//!
//! The model is deliberately plain, so a supervisor can check it by hand:
//! - each resident still expected arrives at the start of their slot's 15 minutes;
//! - reception goes on checking in at its measured rate: check-ins over the last
//!   [`WINDOW_MIN`] minutes (or since the first check-in of the day, if that is later, and
//!   never over fewer than [`MIN_SPAN_MIN`] minutes), per minute;
//! - from now on, each 15 minutes adds its arrivals to the queue and takes away what reception
//!   handles in the time left of it; the queue never goes below zero;
//! - the wait of someone joining the queue at the end of a 15 minutes is the queue ÷ throughput.
//!
//! Measured throughput is what reception did, which is also bounded by who came: a quiet
//! morning measures low. The forecast then errs toward warning, which is the safe side.
//! Before any check-in there is no throughput: no forecast and no warning.

use chrono::{DateTime, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Arrivals are counted per this many minutes.
pub const BUCKET_MIN: i64 = 15;
/// Throughput is measured over this many minutes back from now.
pub const WINDOW_MIN: i64 = 30;
/// A throughput is never measured over fewer minutes than this (the first check-ins).
pub const MIN_SPAN_MIN: i64 = 5;

/// One resident booked to come: when their slot starts, and whether they are still expected
/// (booked and not checked in yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub at: DateTime<Utc>,
    pub still_expected: bool,
}

/// One 15 minutes of the day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    pub starts_at: DateTime<Utc>,
    /// Residents booked to arrive in these 15 minutes (checked in or not).
    pub booked: u32,
    /// Of them, still expected.
    pub expected: u32,
    /// The queue at reception forecast at the end of these 15 minutes (none for 15 minutes
    /// already past, or with no throughput measured).
    pub queue: Option<f64>,
    /// Minutes someone joining the queue then would wait.
    pub wait_min: Option<f64>,
}

/// Reception's forecast for one venue's day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReceptionForecast {
    pub buckets: Vec<Bucket>,
    /// Check-ins per minute lately; none before the day's first check-in.
    pub throughput_per_min: Option<f64>,
    /// The wait that is too long (the setting).
    pub max_wait_min: u32,
    /// The longest wait forecast from now on.
    pub forecast_wait_min: Option<f64>,
    /// The first 15 minutes whose forecast wait exceeds `max_wait_min`.
    pub warn_from: Option<DateTime<Utc>>,
    /// The forecast wait exceeds `max_wait_min` at some point today.
    pub warning: bool,
}

/// The start of the 15 minutes holding `t` (JST is UTC+9, a whole number of 15 minutes, so
/// UTC and JST quarter hours are the same instants).
pub fn bucket_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let minute = i64::from(t.minute()) / BUCKET_MIN * BUCKET_MIN;
    t - Duration::minutes(i64::from(t.minute()) - minute)
        - Duration::seconds(i64::from(t.second()))
        - Duration::nanoseconds(i64::from(t.nanosecond()))
}

/// Check-ins per minute: those in `(now - WINDOW_MIN, now]`, over the window or over the time
/// since the first check-in of `checkins` when that is shorter (at least `MIN_SPAN_MIN`).
pub fn throughput(checkins: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<f64> {
    let first = checkins.iter().filter(|t| **t <= now).min()?;
    let from = now - Duration::minutes(WINDOW_MIN);
    let n = checkins.iter().filter(|t| **t > from && **t <= now).count();
    let span = (now - (*first).max(from)).max(Duration::minutes(MIN_SPAN_MIN));
    let minutes = span.num_milliseconds() as f64 / 60_000.0;
    Some(n as f64 / minutes)
}

/// The forecast for a venue's day (see the module's description of the model).
pub fn forecast(
    arrivals: &[Arrival],
    checkins: &[DateTime<Utc>],
    now: DateTime<Utc>,
    max_wait_min: u32,
) -> ReceptionForecast {
    let mut sorted: Vec<Arrival> = arrivals.to_vec();
    sorted.sort_by_key(|a| a.at);
    // Every quarter from the first arrival's to the last one's, empty ones included: reception
    // works through a quiet quarter too.
    let mut buckets: Vec<Bucket> = Vec::new();
    if let (Some(first), Some(last)) = (sorted.first(), sorted.last()) {
        let mut at = bucket_of(first.at);
        while at <= bucket_of(last.at) {
            buckets.push(Bucket {
                starts_at: at,
                booked: 0,
                expected: 0,
                queue: None,
                wait_min: None,
            });
            at += Duration::minutes(BUCKET_MIN);
        }
    }
    let first = buckets.first().map(|b| b.starts_at);
    for a in &sorted {
        let Some(first) = first else { break };
        let i = ((bucket_of(a.at) - first).num_minutes() / BUCKET_MIN) as usize;
        if let Some(b) = buckets.get_mut(i) {
            b.booked += 1;
            if a.still_expected {
                b.expected += 1;
            }
        }
    }
    let rate = throughput(checkins, now).filter(|r| *r > 0.0);
    let (mut longest, mut warn_from) = (None::<f64>, None);
    if let Some(rate) = rate {
        let mut queue = 0.0f64;
        for b in buckets.iter_mut() {
            let ends = b.starts_at + Duration::minutes(BUCKET_MIN);
            if ends <= now {
                continue;
            }
            let open = (ends - now.max(b.starts_at)).num_milliseconds() as f64 / 60_000.0;
            queue = (queue + f64::from(b.expected) - rate * open).max(0.0);
            let wait = queue / rate;
            b.queue = Some(round1(queue));
            b.wait_min = Some(round1(wait));
            longest = Some(longest.map_or(wait, |l: f64| l.max(wait)));
            if wait > f64::from(max_wait_min) && warn_from.is_none() {
                warn_from = Some(b.starts_at);
            }
        }
    }
    ReceptionForecast {
        buckets,
        throughput_per_min: rate.map(round2),
        max_wait_min,
        forecast_wait_min: longest.map(round1),
        warning: warn_from.is_some(),
        warn_from,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// 2021-06-03 at hh:mm JST.
    fn jst(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2021, 6, 3, h, m, 0).unwrap() - Duration::hours(9)
    }

    fn booked(at: DateTime<Utc>, n: usize, still_expected: bool) -> Vec<Arrival> {
        vec![Arrival { at, still_expected }; n]
    }

    #[test]
    fn quarter_hours() {
        let t = jst(10, 29) + Duration::seconds(59);
        assert_eq!(bucket_of(t), jst(10, 15));
        assert_eq!(bucket_of(jst(10, 30)), jst(10, 30));
    }

    #[test]
    fn throughput_is_the_last_half_hour_or_since_the_first_check_in() {
        let now = jst(10, 0);
        // 30 check-ins, one a minute from 9:00 to 9:29, and 30 more from 9:31 to 10:00:
        // the window (9:30, 10:00] holds 30 → 1 a minute.
        let mut times: Vec<_> = (0..30).map(|i| jst(9, i)).collect();
        times.extend((31..=59).map(|i| jst(9, i)));
        times.push(jst(10, 0));
        assert_eq!(throughput(&times, now), Some(1.0));
        // Reception opened at 9:50 and checked in 20 since: 20 over 10 minutes.
        let early: Vec<_> = (0..20)
            .map(|i| jst(9, 50) + Duration::seconds(i * 30))
            .collect();
        assert_eq!(throughput(&early, now), Some(2.0));
        // The very first check-in a minute ago counts over 5 minutes, not 1.
        assert_eq!(throughput(&[jst(9, 59)], now), Some(0.2));
        assert_eq!(throughput(&[], now), None);
    }

    #[test]
    fn a_queue_builds_when_more_are_due_than_reception_handles() {
        // Reception handled one a minute over the last half hour.
        let now = jst(10, 0);
        let checkins: Vec<_> = [jst(9, 0)]
            .into_iter()
            .chain((31..=59).map(|i| jst(9, i)))
            .chain([now])
            .collect();
        let mut arrivals = booked(jst(9, 30), 30, false); // all came
        arrivals.extend(booked(jst(9, 45), 2, true)); // late: past, not counted
        arrivals.extend(booked(jst(10, 0), 20, true));
        arrivals.extend(booked(jst(10, 15), 25, true));
        arrivals.extend(booked(jst(10, 30), 20, true));
        arrivals.extend(booked(jst(11, 0), 3, true));
        let f = forecast(&arrivals, &checkins, now, 15);
        assert_eq!(f.throughput_per_min, Some(1.0));
        let rows: Vec<_> = f
            .buckets
            .iter()
            .map(|b| (b.starts_at, b.booked, b.expected, b.queue, b.wait_min))
            .collect();
        // By hand, 1 a minute, 15 handled per quarter:
        // 10:00 20 due → 5 left; 10:15 +25 → 15 (15 min wait, not over 15);
        // 10:30 +20 → 20 (20 min: over); 10:45 nobody due → 5; 11:00 +3 → 0.
        assert_eq!(
            rows,
            vec![
                (jst(9, 30), 30, 0, None, None),
                (jst(9, 45), 2, 2, None, None),
                (jst(10, 0), 20, 20, Some(5.0), Some(5.0)),
                (jst(10, 15), 25, 25, Some(15.0), Some(15.0)),
                (jst(10, 30), 20, 20, Some(20.0), Some(20.0)),
                (jst(10, 45), 0, 0, Some(5.0), Some(5.0)),
                (jst(11, 0), 3, 3, Some(0.0), Some(0.0)),
            ]
        );
        assert_eq!(f.forecast_wait_min, Some(20.0));
        assert!(f.warning);
        assert_eq!(f.warn_from, Some(jst(10, 30)));
        // With a 20-minute limit nothing is over.
        let relaxed = forecast(&arrivals, &checkins, now, 20);
        assert!(!relaxed.warning);
        assert_eq!(relaxed.warn_from, None);
    }

    #[test]
    fn the_current_quarter_counts_only_its_time_left() {
        // 10:10, 2 a minute measured since 9:40; 10:00 holds 20 still due, 5 minutes left:
        // 20 − 10 = 10 queued, a 5-minute wait.
        let now = jst(10, 10);
        // One at 9:00 (before the window) and 60 in it, one each 30 s from 9:40:30.
        let checkins: Vec<_> = [jst(9, 0)]
            .into_iter()
            .chain((1..=60).map(|i| jst(9, 40) + Duration::seconds(i * 30)))
            .collect();
        let f = forecast(&booked(jst(10, 0), 20, true), &checkins, now, 3);
        assert_eq!(f.throughput_per_min, Some(2.0));
        assert_eq!(f.buckets[0].queue, Some(10.0));
        assert_eq!(f.buckets[0].wait_min, Some(5.0));
        assert!(f.warning);
    }

    #[test]
    fn no_check_in_yet_no_forecast() {
        let f = forecast(&booked(jst(9, 0), 40, true), &[], jst(8, 50), 15);
        assert_eq!(f.throughput_per_min, None);
        assert_eq!(f.buckets.len(), 1);
        assert_eq!(f.buckets[0].booked, 40);
        assert_eq!(f.buckets[0].queue, None);
        assert!(!f.warning);
    }
}
