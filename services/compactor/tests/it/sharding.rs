//! Two compactors split the tenants through their ring: every tenant is compacted, and no
//! tenant sees the object-store requests of both interleaved (one starting while the other is
//! still at it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use hestia_bucket::Bucket;
use hestia_compactor::{Compactor, Retentions};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::harness::*;

/// Every request's tenant (first path segment) and compactor, in order.
type Log = Arc<Mutex<Vec<(String, String)>>>;

/// One compactor's view of the shared store, logging its requests.
#[derive(Debug)]
struct Logged {
    inner: Arc<dyn ObjectStore>,
    who: String,
    log: Log,
}

impl Logged {
    fn note(&self, path: Option<&Path>) {
        if let Some(tenant) = path.and_then(|p| p.parts().next()) {
            let mut log = self.log.lock().expect("log");
            log.push((tenant.as_ref().to_string(), self.who.clone()));
        }
    }
}

impl fmt::Display for Logged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Logged({})", self.who)
    }
}

#[async_trait]
impl ObjectStore for Logged {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.note(Some(location));
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.note(Some(location));
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.note(Some(location));
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.note(Some(location));
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.note(prefix);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.note(prefix);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.note(Some(to));
        self.inner.copy_opts(from, to, options).await
    }
}

async fn start(fx: &Fixture, log: &Log, name: &str, wait: Duration) -> Compactor {
    let mut cfg = fx.config(name);
    cfg.compactor.ring.wait_stability = wait;
    let store = Arc::new(Logged {
        inner: fx.store.clone(),
        who: name.to_string(),
        log: log.clone(),
    });
    Compactor::start(&cfg, Bucket::new(store), fx.kv.clone(), Retentions::new())
        .await
        .expect("compactor starts")
}

/// Tenants whose requests came from one compactor, then the other, then the first again.
fn interleaved(log: &Log) -> Vec<String> {
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tenant, who) in log.lock().expect("log").iter() {
        let r = runs.entry(tenant.clone()).or_default();
        if r.last() != Some(who) {
            r.push(who.clone());
        }
    }
    runs.into_iter()
        .filter(|(_, r)| {
            let distinct: BTreeSet<&String> = r.iter().collect();
            r.len() > distinct.len()
        })
        .map(|(t, _)| t)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactors_split_the_tenants_and_never_share_one() {
    let fx = Fixture::new();
    let log: Log = Arc::default();
    let names: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    for n in &names {
        fx.ship_replicas(&fx.tenant(n), 3, 0..2, 4).await;
    }
    let wait = Duration::from_millis(500);
    let a = start(&fx, &log, "a", wait).await;
    let b = start(&fx, &log, "b", wait).await;

    // Both just joined: nobody starts a tenant yet.
    let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
    assert!(!ra.ring_stable && ra.tenants.is_empty(), "{ra:?}");
    assert!(!rb.ring_stable && rb.tenants.is_empty(), "{rb:?}");

    tokio::time::sleep(wait).await;
    let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
    assert!(!ra.failed() && !rb.failed(), "{ra:?} {rb:?}");
    let owned_a: BTreeSet<String> = ra.tenants.iter().map(|t| t.tenant.clone()).collect();
    let owned_b: BTreeSet<String> = rb.tenants.iter().map(|t| t.tenant.clone()).collect();
    assert!(owned_a.is_disjoint(&owned_b), "{owned_a:?} {owned_b:?}");
    assert_eq!(owned_a.len() + owned_b.len(), names.len());
    assert!(
        !owned_a.is_empty() && !owned_b.is_empty(),
        "128 tokens each split 8 tenants"
    );
    for r in ra.tenants.iter().chain(&rb.tenants) {
        // Two vertical merges, then both blocks into the closed 6m window.
        assert_eq!(r.compactions, 3, "{r:?}");
    }

    // b leaves: a owns everything at once (alone in the ring) and compacts what arrives.
    b.stop().await.expect("stop");
    // a's view of the ring follows the store's watch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in &names {
        fx.ship_replicas(&fx.tenant(n), 3, 2..3, 4).await;
    }
    for _ in 0..3 {
        let (ra, _) = tokio::join!(a.run_once(), b.run_once());
        assert!(!ra.failed(), "{ra:?}");
    }
    for n in &names {
        let t = fx.tenant(n);
        assert_eq!(
            live_blocks(&t)
                .await
                .iter()
                .map(|b| (b.1, b.2))
                .collect::<Vec<_>>(),
            [(BASE, BASE + 3 * RANGE)],
            "{n}"
        );
    }
    assert_eq!(interleaved(&log), Vec::<String>::new());
}
