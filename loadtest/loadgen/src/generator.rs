//! What is sent: series identities (with churn), sample values and the sample clock.
use std::time::Duration;

use hestia_proto::prometheus as pb;

use crate::Settings;

/// Sample timestamps may run at most this far ahead of the wall clock.
pub const FUTURE_SLACK_MS: i64 = 2_000;
/// With time compression the run starts at most this far in the past (AMP refuses samples
/// older than an hour).
pub const MAX_BACKFILL_MS: i64 = 50 * 60 * 1000;

/// Series of one workspace: slot `i` of `series` slots. Every scrape interval the next
/// `churn_per_tick` slots (round robin) get a new series identity.
#[derive(Debug, Clone)]
pub struct Generator {
    series: usize,
    labels_per_series: usize,
    metric_names: usize,
    churn_per_tick: u64,
}

impl Generator {
    pub fn new(s: &Settings) -> Generator {
        Generator {
            series: s.series,
            labels_per_series: s.labels_per_series,
            metric_names: s.metric_names,
            churn_per_tick: (s.series as f64 * s.churn_percent / 100.0).round() as u64,
        }
    }

    /// How many times `slot` has been replaced by tick `tick`.
    pub fn generation(&self, slot: usize, tick: u64) -> u64 {
        let churned = tick * self.churn_per_tick;
        let (slot, n) = (slot as u64, self.series as u64);
        if churned > slot {
            (churned - slot).div_ceil(n)
        } else {
            0
        }
    }

    /// Labels of `slot` at `tick`, sorted by name.
    pub fn labels(&self, slot: usize, tick: u64) -> Vec<pb::Label> {
        let mut out = Vec::with_capacity(self.labels_per_series);
        let label = |name: String, value: String| pb::Label { name, value };
        out.push(label(
            "__name__".into(),
            format!("loadgen_metric_{}", slot % self.metric_names),
        ));
        out.push(label("job".into(), "hestia-loadgen".into()));
        for k in 0..self.labels_per_series - 3 {
            out.push(label(
                format!("l{k:03}"),
                format!("v{}", (slot / (k + 1)) % 100),
            ));
        }
        out.push(label(
            "series".into(),
            format!("{slot}-g{}", self.generation(slot, tick)),
        ));
        out
    }

    /// A counter-like value: grows by one per tick, different per series.
    pub fn value(slot: usize, tick: u64) -> f64 {
        (tick + (slot % 1000) as u64) as f64
    }

    /// Slots `[from, to)` at `tick`, one sample each at `timestamp_ms`.
    pub fn request(
        &self,
        tick: u64,
        timestamp_ms: i64,
        from: usize,
        to: usize,
    ) -> pb::WriteRequest {
        pb::WriteRequest {
            timeseries: (from..to.min(self.series))
                .map(|slot| pb::TimeSeries {
                    labels: self.labels(slot, tick),
                    samples: vec![pb::Sample {
                        value: Self::value(slot, tick),
                        timestamp: timestamp_ms,
                    }],
                    ..Default::default()
                })
                .collect(),
            metadata: vec![],
        }
    }
}

/// Maps ticks (scrapes) to sample timestamps and to when they may be sent.
#[derive(Debug, Clone, Copy)]
pub struct SampleClock {
    /// Wall clock at the start, ms since the epoch.
    start_ms: i64,
    /// Timestamp of tick 0.
    first_ts_ms: i64,
    interval_ms: i64,
    compression: f64,
}

impl SampleClock {
    pub fn new(start_ms: i64, s: &Settings) -> SampleClock {
        let run_ms = s.duration.as_millis() as f64;
        let backfill = ((s.time_compression - 1.0) * run_ms) as i64;
        SampleClock {
            start_ms,
            first_ts_ms: start_ms - backfill.clamp(0, MAX_BACKFILL_MS),
            interval_ms: s.scrape_interval.as_millis().max(1) as i64,
            compression: s.time_compression,
        }
    }

    pub fn timestamp(&self, tick: u64) -> i64 {
        self.first_ts_ms + tick as i64 * self.interval_ms
    }

    /// Time after the start when `tick` is due: its compressed scrape time, and not before its
    /// timestamp is within `FUTURE_SLACK_MS` of the wall clock.
    pub fn due(&self, tick: u64) -> Duration {
        let scrape = (tick as f64 * self.interval_ms as f64 / self.compression) as i64;
        let not_future = self.timestamp(tick) - FUTURE_SLACK_MS - self.start_ms;
        Duration::from_millis(scrape.max(not_future).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            series: 10,
            labels_per_series: 5,
            metric_names: 3,
            churn_percent: 20.0,
            ..Default::default()
        }
    }

    #[test]
    fn labels_are_sorted_and_sized() {
        let g = Generator::new(&settings());
        let l = g.labels(4, 0);
        assert_eq!(l.len(), 5);
        assert!(l.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(l[0].value, "loadgen_metric_1");
        assert_eq!(l[4].value, "4-g0");
        let r = g.request(0, 123, 8, 20);
        assert_eq!(r.timeseries.len(), 2);
        assert_eq!(r.timeseries[0].samples[0].timestamp, 123);
    }

    #[test]
    fn churn_replaces_slots_round_robin() {
        let g = Generator::new(&settings());
        // 2 slots per tick: tick 1 churns 0 and 1, tick 2 churns 2 and 3, ...
        assert_eq!(g.generation(0, 0), 0);
        assert_eq!(g.generation(0, 1), 1);
        assert_eq!(g.generation(2, 1), 0);
        assert_eq!(g.generation(3, 2), 1);
        // After 5 ticks every slot changed once; tick 6 starts over.
        assert!((0..10).all(|s| g.generation(s, 5) == 1));
        assert_eq!(g.generation(0, 6), 2);
        assert_eq!(g.generation(9, 6), 1);
        let changed = (0..10)
            .filter(|&s| g.labels(s, 3) != g.labels(s, 4))
            .count();
        assert_eq!(changed, 2);
        let none = Generator::new(&Settings {
            churn_percent: 0.0,
            ..settings()
        });
        assert_eq!(none.generation(3, 1000), 0);
    }

    #[test]
    fn real_time_clock() {
        let c = SampleClock::new(1_000_000, &settings());
        assert_eq!(c.timestamp(0), 1_000_000);
        assert_eq!(c.timestamp(2), 1_030_000);
        assert_eq!(c.due(2), Duration::from_secs(30));
    }

    #[test]
    fn compressed_clock_starts_in_the_past_and_never_runs_ahead() {
        let s = Settings {
            time_compression: 10.0,
            duration: Duration::from_secs(60),
            ..settings()
        };
        let start = 10_000_000_000;
        let c = SampleClock::new(start, &s);
        // 9 minutes of backfill so the 10 minutes of sample time end at the end of the run.
        assert_eq!(c.timestamp(0), start - 540_000);
        assert_eq!(c.due(4), Duration::from_millis(6_000));
        for tick in 0..200 {
            let wall = start + c.due(tick).as_millis() as i64;
            assert!(c.timestamp(tick) <= wall + FUTURE_SLACK_MS);
        }
        let long = SampleClock::new(
            start,
            &Settings {
                time_compression: 1000.0,
                ..s
            },
        );
        assert_eq!(long.timestamp(0), start - MAX_BACKFILL_MS);
    }
}
