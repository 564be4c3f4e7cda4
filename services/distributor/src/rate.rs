//! The per-workspace ingestion rate limit: a token bucket per workspace holding this
//! distributor's share of the workspace's global rate (Cortex's "global strategy": the rate is
//! divided by the healthy distributors, the burst is not).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hestia_limits::Limits;
use hestia_ring::{now_ms, RingClient};

pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    /// The distributors' ring; `None`: this distributor is alone.
    distributors: Option<Arc<RingClient>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A refusal: the local rate that was exceeded and when the request would fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    pub local_rate: f64,
    pub retry_after: Duration,
}

impl RateLimiter {
    pub fn new(distributors: Option<Arc<RingClient>>) -> Self {
        Self {
            buckets: Mutex::default(),
            distributors,
        }
    }

    fn healthy_distributors(&self) -> usize {
        let Some(ring) = &self.distributors else {
            return 1;
        };
        ring.ring().healthy_active(now_ms()).max(1)
    }

    /// This distributor's share of `limits.ingestion_rate`.
    pub fn local_rate(&self, limits: &Limits) -> f64 {
        limits.ingestion_rate / self.healthy_distributors() as f64
    }

    /// Takes `n` tokens from `tenant`'s bucket, or refuses without taking any.
    pub fn allow(&self, tenant: &str, n: usize, limits: &Limits) -> Result<(), Refusal> {
        self.allow_at(tenant, n, limits, Instant::now())
    }

    fn allow_at(
        &self,
        tenant: &str,
        n: usize,
        limits: &Limits,
        now: Instant,
    ) -> Result<(), Refusal> {
        if n == 0 {
            return Ok(());
        }
        let rate = self.local_rate(limits);
        let burst = limits.ingestion_burst_size as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        let n = n as f64;
        if n <= b.tokens {
            b.tokens -= n;
            return Ok(());
        }
        // More than the burst never fits; otherwise wait until the bucket holds enough.
        let wait = if n > burst {
            (n / rate).max(1.0)
        } else {
            ((n - b.tokens) / rate).max(1.0)
        };
        Err(Refusal {
            local_rate: rate,
            retry_after: Duration::from_secs_f64(wait.ceil().min(3600.0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: usize) -> Limits {
        Limits {
            ingestion_rate: rate,
            ingestion_burst_size: burst,
            ..Limits::default()
        }
    }

    #[test]
    fn the_burst_is_spent_then_refilled_at_the_rate() {
        let r = RateLimiter::new(None);
        let l = limits(100.0, 1000);
        let t0 = Instant::now();
        assert!(r.allow_at("a", 600, &l, t0).is_ok());
        assert!(r.allow_at("a", 400, &l, t0).is_ok());
        let refusal = r.allow_at("a", 50, &l, t0).unwrap_err();
        assert_eq!(refusal.local_rate, 100.0);
        assert_eq!(refusal.retry_after, Duration::from_secs(1));
        // Another workspace has its own bucket.
        assert!(r.allow_at("b", 1000, &l, t0).is_ok());
        // Half a second refills 50.
        assert!(r
            .allow_at("a", 50, &l, t0 + Duration::from_millis(500))
            .is_ok());
        assert!(r
            .allow_at("a", 1, &l, t0 + Duration::from_millis(500))
            .is_err());
        // A refused request takes nothing: 20 s later the bucket is full again.
        let t1 = t0 + Duration::from_secs(20);
        assert!(
            r.allow_at("a", 1001, &l, t1).is_err(),
            "over the burst never fits"
        );
        assert!(r.allow_at("a", 1000, &l, t1).is_ok());
    }
}
