//! Each workspace's retention (`retentionPeriodInDays`, AMP's workspace configuration) applied
//! to what the ingester holds: every [`INTERVAL`], each tenant's data wholly older than its
//! retention leaves RocksDB ([`hestia_storage::Tsdb::expire`]: chunks that ended before the
//! cutoff, idle series whose newest sample is before it, and samples older than the cutoff are
//! refused from then on). Retentions come from the control plane's workspace watch
//! ([`hestia_limits::Retentions`], the table the compactor applies to blocks); a tenant without a
//! known workspace keeps everything.
//!
//! With `blocks.ship = false` this is the only thing that deletes samples. With shipping on,
//! the shipper drops each range `retain_after_upload` after its upload, so while uploads succeed
//! the oldest sample held is [`held_while_shipping`] old: 16h01m with the defaults and no
//! out-of-order window, under AMP's smallest retention (1 day). It can still exceed a
//! workspace's retention when the object store is unreachable for longer, or when a
//! workspace's out-of-order window is close to its retention (the control plane bounds neither),
//! and the shipper never deletes series rows (labels, idle postings): a series that stopped
//! keeps them forever. Running this task with shipping on too covers all three; it then deletes
//! nothing the shipper still needs, since whatever it deletes is past retention and would be
//! marked for deletion by the compactor as soon as it was shipped.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hestia_config::BlocksConfig;
use hestia_limits::Retentions;
use hestia_model::TenantId;
use hestia_storage::Tsdb;

use crate::metrics;
use crate::IngesterError;

/// How often retention runs; retentions are whole days.
pub const INTERVAL: Duration = Duration::from_secs(3600);
/// The first pass runs this long after the start (at most [`INTERVAL`]), once the workspace
/// watch has answered: before that no tenant has a retention.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(60);

/// What one pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Tenants with a known retention (each was looked at).
    pub tenants: usize,
    /// Chunk rows whose samples were all past retention.
    pub chunks_deleted: usize,
    /// Idle series whose newest sample was past retention.
    pub series_deleted: usize,
}

/// Applies retention every [`INTERVAL`] (the first pass after a minute) until `stop` resolves.
/// Wire it in every ingester, shipping or not (see the module documentation).
pub async fn run(db: Arc<Tsdb>, retentions: Retentions, stop: impl Future<Output = ()>) {
    run_every(db, retentions, INTERVAL, stop).await
}

/// [`run`] with another period (tests); the first pass runs after `interval` or a minute,
/// whichever is shorter. A pass cut short by `stop` finishes in the background (its storage
/// call is one blocking task) and is safe to interrupt: each step is durable on its own.
pub async fn run_every(
    db: Arc<Tsdb>,
    retentions: Retentions,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut wait = interval.min(FIRST_PASS_AFTER);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => return,
        }
        wait = interval;
        let pass = tokio::select! {
            r = apply_once(&db, &retentions, now_ms()) => r,
            _ = &mut stop => return,
        };
        if let Err(e) = pass {
            metrics::RETENTION_FAILURES.inc();
            tracing::warn!(error = %e, retry_in_s = interval.as_secs_f64(), "applying retention");
        }
    }
}

/// One pass: deletes, for every tenant with a known retention, its data wholly older than
/// `now_ms` minus the retention.
pub async fn apply_once(
    db: &Arc<Tsdb>,
    retentions: &Retentions,
    now_ms: i64,
) -> Result<RetentionReport, IngesterError> {
    let tenants = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || db.tenants()).await?
    };
    let cutoffs: Vec<(TenantId, i64)> = tenants
        .into_iter()
        .filter_map(|t| retentions.cutoff_ms(&t, now_ms).map(|c| (t, c)))
        .collect();
    let mut report = RetentionReport {
        tenants: cutoffs.len(),
        ..RetentionReport::default()
    };
    if cutoffs.is_empty() {
        return Ok(report);
    }
    let (db, asked) = (db.clone(), cutoffs.clone());
    let expired = tokio::task::spawn_blocking(move || db.expire(&asked)).await??;
    for ((tenant, cutoff), e) in cutoffs.iter().zip(expired) {
        if e.chunks + e.series > 0 {
            tracing::info!(
                %tenant, cutoff_ms = cutoff, chunks = e.chunks, series = e.series,
                "data past the workspace's retention deleted"
            );
        }
        report.chunks_deleted += e.chunks;
        report.series_deleted += e.series;
    }
    metrics::RETENTION_CHUNKS_DELETED.inc_by(report.chunks_deleted as u64);
    metrics::RETENTION_SERIES_DELETED.inc_by(report.series_deleted as u64);
    Ok(report)
}

/// How old the oldest sample of a tenant with out-of-order window `ooo_window` can be in an
/// ingester that ships while every upload succeeds: a range `[s, s + block_range)` closes at
/// `s + block_range + ooo_window + block_range / 2`, is shipped within `ship_interval`, and
/// leaves RocksDB `retain_after_upload` after its upload.
pub fn held_while_shipping(cfg: &BlocksConfig, ooo_window: Duration) -> Duration {
    cfg.block_range + ooo_window + cfg.block_range / 2 + cfg.ship_interval + cfg.retain_after_upload
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipping_holds_less_than_the_smallest_retention_by_default() {
        let cfg = BlocksConfig::default();
        let held = held_while_shipping(&cfg, Duration::ZERO);
        assert_eq!(held, Duration::from_secs(16 * 3600 + 60));
        // AMP's smallest retentionPeriodInDays is 1.
        assert!(held < Duration::from_secs(86_400));
        // An out-of-order window of 8 h (the control plane accepts any) is enough to exceed it.
        assert!(
            held_while_shipping(&cfg, Duration::from_secs(8 * 3600)) > Duration::from_secs(86_400)
        );
    }
}
