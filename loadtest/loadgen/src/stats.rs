use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

use crate::LoadgenError;

const MAX_LATENCY_US: u64 = 600_000_000;

/// Counters shared by the senders.
pub struct Stats {
    accepted: AtomicU64,
    status_400: AtomicU64,
    status_429: AtomicU64,
    status_5xx: AtomicU64,
    /// Other statuses and transport errors.
    other: AtomicU64,
    samples_accepted: AtomicU64,
    /// Request latency in microseconds.
    latency: Mutex<Histogram<u64>>,
    /// First response body seen per non-2xx status (or transport error).
    first_errors: Mutex<BTreeMap<String, String>>,
}

/// Totals at one point of the run; printed as the final JSON line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub elapsed_seconds: f64,
    pub requests: u64,
    pub accepted: u64,
    pub status_400: u64,
    pub status_429: u64,
    pub status_5xx: u64,
    pub other_errors: u64,
    pub samples_accepted: u64,
    pub samples_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub first_errors: BTreeMap<String, String>,
}

/// What one request ended with.
pub enum Outcome {
    Status(u16, String),
    Transport(String),
}

impl Stats {
    pub fn new() -> Result<Stats, LoadgenError> {
        Ok(Stats {
            accepted: AtomicU64::new(0),
            status_400: AtomicU64::new(0),
            status_429: AtomicU64::new(0),
            status_5xx: AtomicU64::new(0),
            other: AtomicU64::new(0),
            samples_accepted: AtomicU64::new(0),
            // 1 µs .. 10 min at 3 significant digits.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                    .map_err(|e| LoadgenError::Invalid(format!("latency histogram: {e}")))?,
            ),
            first_errors: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn record(&self, outcome: Outcome, samples: usize, latency: Duration) {
        let _ = self
            .latency
            .lock()
            .record(latency.as_micros().clamp(1, u128::from(MAX_LATENCY_US)) as u64);
        let (counter, key, body) = match outcome {
            Outcome::Status(s, _) if (200..300).contains(&s) => {
                self.accepted.fetch_add(1, Relaxed);
                self.samples_accepted.fetch_add(samples as u64, Relaxed);
                return;
            }
            Outcome::Status(400, b) => (&self.status_400, "400".to_string(), b),
            Outcome::Status(429, b) => (&self.status_429, "429".to_string(), b),
            Outcome::Status(s, b) if s >= 500 => (&self.status_5xx, s.to_string(), b),
            Outcome::Status(s, b) => (&self.other, s.to_string(), b),
            Outcome::Transport(e) => (&self.other, "transport".to_string(), e),
        };
        counter.fetch_add(1, Relaxed);
        self.first_errors
            .lock()
            .entry(key)
            .or_insert_with(|| body.chars().take(500).collect());
    }

    pub fn summary(&self, elapsed: Duration) -> Summary {
        let h = self.latency.lock();
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let accepted = self.accepted.load(Relaxed);
        let (s400, s429, s5xx, other) = (
            self.status_400.load(Relaxed),
            self.status_429.load(Relaxed),
            self.status_5xx.load(Relaxed),
            self.other.load(Relaxed),
        );
        let samples = self.samples_accepted.load(Relaxed);
        Summary {
            elapsed_seconds: elapsed.as_secs_f64(),
            requests: accepted + s400 + s429 + s5xx + other,
            accepted,
            status_400: s400,
            status_429: s429,
            status_5xx: s5xx,
            other_errors: other,
            samples_accepted: samples,
            samples_per_second: samples as f64 / elapsed.as_secs_f64().max(1e-9),
            latency_p50_ms: ms(0.5),
            latency_p99_ms: ms(0.99),
            first_errors: self.first_errors.lock().clone(),
        }
    }
}

impl Summary {
    /// One human-readable line; `since` gives the rate over the last interval.
    pub fn line(&self, since: &Summary) -> String {
        let dt = (self.elapsed_seconds - since.elapsed_seconds).max(1e-9);
        format!(
            "[{:>6.1}s] accepted {} | 400 {} | 429 {} | 5xx {} | other {} | {:.0} samples/s | p50 {:.1} ms p99 {:.1} ms",
            self.elapsed_seconds,
            self.accepted,
            self.status_400,
            self.status_429,
            self.status_5xx,
            self.other_errors,
            (self.samples_accepted - since.samples_accepted) as f64 / dt,
            self.latency_p50_ms,
            self.latency_p99_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_keeps_first_messages() {
        let s = Stats::new().unwrap();
        let ms = Duration::from_millis;
        s.record(Outcome::Status(204, String::new()), 100, ms(2));
        s.record(Outcome::Status(429, "rate limit".into()), 100, ms(4));
        s.record(Outcome::Status(429, "later".into()), 100, ms(4));
        s.record(Outcome::Status(503, "down".into()), 100, ms(4));
        s.record(Outcome::Status(400, "bad".into()), 100, ms(4));
        s.record(Outcome::Transport("refused".into()), 100, ms(4));
        let sum = s.summary(Duration::from_secs(2));
        assert_eq!(
            (
                sum.requests,
                sum.accepted,
                sum.status_429,
                sum.status_5xx,
                sum.status_400,
                sum.other_errors
            ),
            (6, 1, 2, 1, 1, 1)
        );
        assert_eq!(sum.samples_per_second, 50.0);
        assert_eq!(sum.first_errors["429"], "rate limit");
        assert!(sum.latency_p50_ms >= 3.9 && sum.latency_p99_ms < 4.1);
        assert!(sum.line(&Summary::default()).contains("429 2"));
    }
}
