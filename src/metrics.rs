//! Prometheus counters, written by hand: a few atomics and one histogram need no framework.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency histograms, in microseconds.
const BUCKETS_US: &[u64] = &[
    250, 500, 1_000, 2_000, 3_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A Prometheus histogram of durations.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Histogram {
    pub fn observe_us(&self, micros: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
        self.max_us.fetch_max(micros, Ordering::Relaxed);
        for (i, le) in BUCKETS_US.iter().enumerate() {
            if micros <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The largest observation, in microseconds.
    pub fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }

    /// The mean, in microseconds (0 before the first observation).
    pub fn mean_us(&self) -> f64 {
        let n = self.count.load(Ordering::Relaxed);
        if n == 0 {
            0.0
        } else {
            self.sum_us.load(Ordering::Relaxed) as f64 / n as f64
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in BUCKETS_US.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                *le as f64 / 1e6,
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    pub pbx_events: AtomicU64,
    pub calls_started: AtomicU64,
    pub calls_ended: AtomicU64,
    pub pops: AtomicU64,
    pub lookups: AtomicU64,
    pub call_log_writes: AtomicU64,
    pub call_log_errors: AtomicU64,
    /// Call states the database refused, set aside in `call_log_rejects`.
    pub call_log_rejected: AtomicU64,
    /// Pops sent before the caller's record was found (the database was slow or away).
    pub pops_without_record: AtomicU64,
    /// Calls closed without an end from the PBX (restart, outage, the live-call bounds).
    pub calls_closed_unseen: AtomicU64,
    pub http_errors: AtomicU64,
    /// PBX event received → screen pop published (includes the caller lookup when the ring
    /// comes right behind the call's first event).
    pub pop_latency: Histogram,
    /// Caller number → residents with their history.
    pub lookup_latency: Histogram,
    /// PBX event read → screen pop frame written to the agent's socket: the server's own
    /// share of the pop latency, measured where the frame leaves.
    pub pop_write_latency: Histogram,
    /// Raw samples of `pop_write_latency` in microseconds, kept only while a benchmark asks
    /// (`None` otherwise), for exact percentiles.
    pub pop_write_samples: std::sync::Mutex<Option<Vec<u64>>>,
}

impl Metrics {
    /// Records a pop frame written to an agent's socket, `micros` after its PBX event was read.
    pub fn observe_pop_write(&self, micros: u64) {
        self.pop_write_latency.observe_us(micros);
        if let Some(samples) = self
            .pop_write_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            samples.push(micros);
        }
    }

    /// Records the time from the PBX event's arrival to the pop's publication.
    pub fn observe_pop(&self, micros: u64) {
        self.pops.fetch_add(1, Ordering::Relaxed);
        self.pop_latency.observe_us(micros);
    }

    /// Prometheus text exposition. `extra` are gauges the caller reads from elsewhere.
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let counters = [
            (
                "madoguchi_pbx_events_total",
                "PBX events received",
                &self.pbx_events,
            ),
            (
                "madoguchi_calls_started_total",
                "calls the tracker opened",
                &self.calls_started,
            ),
            (
                "madoguchi_calls_total",
                "calls logged as ended",
                &self.calls_ended,
            ),
            (
                "madoguchi_screen_pops_total",
                "screen pops published",
                &self.pops,
            ),
            (
                "madoguchi_caller_lookups_total",
                "caller number lookups",
                &self.lookups,
            ),
            (
                "madoguchi_call_log_writes_total",
                "call log rows written",
                &self.call_log_writes,
            ),
            (
                "madoguchi_call_log_errors_total",
                "call log writes that failed (retried)",
                &self.call_log_errors,
            ),
            (
                "madoguchi_call_log_rejected_total",
                "call states the database refused, set aside in call_log_rejects",
                &self.call_log_rejected,
            ),
            (
                "madoguchi_pops_without_record_total",
                "screen pops sent before the caller lookup finished (the record follows)",
                &self.pops_without_record,
            ),
            (
                "madoguchi_calls_closed_unseen_total",
                "calls closed without an end from the PBX (restart, outage, bounds)",
                &self.calls_closed_unseen,
            ),
            (
                "madoguchi_http_errors_total",
                "HTTP 5xx answers",
                &self.http_errors,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.pop_latency.render(
            &mut out,
            "madoguchi_pop_latency_seconds",
            "PBX event received to screen pop published",
        );
        self.lookup_latency.render(
            &mut out,
            "madoguchi_caller_lookup_seconds",
            "caller number to residents with history",
        );
        self.pop_write_latency.render(
            &mut out,
            "madoguchi_pop_write_latency_seconds",
            "PBX event read to screen pop frame written to the agent's socket",
        );
        for (name, help, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_pop(300);
        m.observe_pop(2_500);
        let text = m.render(&[("madoguchi_ws_clients", "open sockets", 3.0)]);
        assert!(text.contains("madoguchi_pop_latency_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("madoguchi_pop_latency_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("madoguchi_pop_latency_seconds_bucket{le=\"0.003\"} 2"));
        assert!(text.contains("madoguchi_pop_latency_seconds_count 2"));
        assert!(text.contains("madoguchi_ws_clients 3"));
    }
}
