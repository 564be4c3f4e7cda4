//! A filesystem bucket behind an object store that counts requests, blocks written into it, and
//! a querier router over it (an empty ingester ring: the ranges queried are older than
//! `query_ingesters_within`, so only blocks serve them).

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use futures::stream::BoxStream;
use hestia_block::{
    symbols_of, xor_chunks, BlockOptions, BlockSource, BlockWriter, DEFAULT_CHUNK_SAMPLES,
};
use hestia_bucket::{Bucket, BucketIndex};
use hestia_config::{QuerierConfig, StorageConfig};
use hestia_model::{Labels, TenantId};
use hestia_querier::{BlockStore, BlockStoreOptions, Querier};
use http_body_util::BodyExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tower::ServiceExt;
use ulid::Ulid;

pub const HOUR: i64 = 3_600_000;

/// Start of a 2 h range three days ago (ms): older than any `query_ingesters_within`.
pub fn old_range_start() -> i64 {
    let now = hestia_ring::now_ms();
    (now - 72 * HOUR) / (2 * HOUR) * (2 * HOUR)
}

/// One request to the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// `get` (whole or ranged), `head`, `list`, `put`, `delete`.
    pub kind: &'static str,
    pub path: String,
    pub bytes: u64,
}

/// An object store that records every request.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    ops: Mutex<Vec<Op>>,
}

impl Counting {
    fn record(&self, kind: &'static str, path: &Path, bytes: u64) {
        self.ops.lock().unwrap().push(Op {
            kind,
            path: path.to_string(),
            bytes,
        });
    }

    /// Every request so far, and forgets them.
    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.record("put", location, payload.content_length() as u64);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.record("put", location, 0);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let got = self.inner.get_opts(location, options).await;
        match (&got, head) {
            (_, true) => self.record("head", location, 0),
            (Ok(r), false) => self.record("get", location, r.range.end - r.range.start),
            (Err(_), false) => self.record("get", location, 0),
        }
        got
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        for r in ranges {
            self.record("get", location, r.end - r.start);
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.record("list", prefix.unwrap_or(&Path::default()), 0);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.record("list", prefix.unwrap_or(&Path::default()), 0);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A series and its float samples.
pub type TestSeries = (Labels, Vec<(i64, f64)>);

/// `n` series `name{job, instance="i<k>"}` sampled every `step` ms in `[start, end)`, value
/// `base + k + t / 1000`.
pub fn series(
    name: &str,
    job: &str,
    n: usize,
    start: i64,
    end: i64,
    step: i64,
    base: f64,
) -> Vec<TestSeries> {
    (0..n)
        .map(|k| {
            let labels = Labels::from_pairs([
                ("__name__", name.to_string()),
                ("job", job.to_string()),
                ("instance", format!("i{k:04}")),
            ]);
            let samples = (start..end)
                .step_by(step as usize)
                .map(|t| (t, base + k as f64 + (t / 1000) as f64))
                .collect();
            (labels, samples)
        })
        .collect()
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<Counting>,
    pub bucket: Bucket,
}

impl Env {
    /// A filesystem bucket in `<tmp>/blocks` (the default layout) behind a counting store.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner = Bucket::open_store(&StorageConfig::default(), dir.path()).unwrap();
        let store = Arc::new(Counting {
            inner,
            ops: Mutex::default(),
        });
        let bucket = Bucket::new(Arc::clone(&store) as Arc<dyn ObjectStore>);
        Self { dir, store, bucket }
    }

    pub fn header_dir(&self) -> PathBuf {
        self.dir.path().join("index-headers")
    }

    /// Generous caches, headers under the temp dir, no background index updates (a compactor
    /// keeps the index), marked blocks read for half of the compactor's default 12 h delay.
    pub fn options(&self) -> BlockStoreOptions {
        BlockStoreOptions {
            index_header_dir: self.header_dir(),
            cache_bytes: 64 << 20,
            open_header_bytes: 64 << 20,
            sync_interval: Duration::from_secs(3600),
            update_bucket_index: false,
            ignore_deletion_marks_delay: Some(BlockStoreOptions::ignore_marks_after(
                Duration::from_secs(12 * 3600),
            )),
        }
    }

    /// Writes `series` as a block of `tenant` over `[min, max)` from `ingester` and uploads it.
    pub async fn ship(
        &self,
        tenant: &TenantId,
        ingester: &str,
        (min, max): (i64, i64),
        series: &[TestSeries],
    ) -> Ulid {
        let mut sorted: Vec<&TestSeries> = series.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let local = self.dir.path().join("local");
        let mut w = BlockWriter::new(
            &local,
            BlockOptions {
                tenant: tenant.clone(),
                ingester: Some(ingester.to_string()),
                source: BlockSource::Ingester,
                time_range: Some((min, max)),
            },
            symbols_of(sorted.iter().map(|s| &s.0)),
        )
        .unwrap();
        for (labels, samples) in sorted {
            w.add_series(labels, &xor_chunks(samples, DEFAULT_CHUNK_SAMPLES).unwrap())
                .unwrap();
        }
        let meta = w.finish().unwrap();
        let dir = local.join(meta.ulid.to_string());
        self.bucket.tenant(tenant).upload_block(&dir).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        meta.ulid
    }

    /// Builds and writes `tenant`'s bucket index, as the querier's updater (or the compactor)
    /// does.
    pub async fn write_index(&self, tenant: &TenantId) {
        let tb = self.bucket.tenant(tenant);
        let (index, _) = BucketIndex::build(&tb).await.unwrap();
        index.write(&tb).await.unwrap();
    }

    /// Marks each block of `marks` for deletion and writes `tenant`'s index with the mark
    /// dated that long ago, as if the compactor had marked it then.
    pub async fn write_index_with_marks(&self, tenant: &TenantId, marks: &[(Ulid, Duration)]) {
        let tb = self.bucket.tenant(tenant);
        for (id, _) in marks {
            tb.mark_for_deletion(*id).await.unwrap();
        }
        let (mut index, _) = BucketIndex::build(&tb).await.unwrap();
        let now_s = hestia_ring::now_ms() / 1000;
        for m in &mut index.block_deletion_marks {
            let (_, age) = marks.iter().find(|(id, _)| *id == m.block_id).unwrap();
            m.deletion_time = now_s - age.as_secs() as i64;
        }
        index.write(&tb).await.unwrap();
    }

    /// Path of a block's file on disk.
    pub fn block_file(&self, tenant: &TenantId, id: Ulid, file: &str) -> PathBuf {
        self.dir
            .path()
            .join("blocks")
            .join(tenant.as_str())
            .join(id.to_string())
            .join(file)
    }
}

/// The querier's router over `blocks` and an ingester ring without ingesters.
pub async fn router(cfg: QuerierConfig, blocks: BlockStore) -> Router {
    let ring_cfg = hestia_ring::RingConfig::default();
    let kv: Arc<dyn hestia_ring::Kv> = Arc::new(hestia_ring::MemoryKv::default());
    let ring = Arc::new(hestia_ring::RingClient::start(kv, &ring_cfg).await.unwrap());
    let pool = Arc::new(hestia_proto::IngesterPool::default());
    hestia_querier::router(Arc::new(Querier::with_blocks(cfg, ring, pool, blocks)))
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// `GET path?params` as `tenant`: status and JSON body.
pub async fn get(
    app: &Router,
    tenant: &TenantId,
    path: &str,
    params: &[(&str, String)],
) -> (StatusCode, serde_json::Value) {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let req = Request::get(format!("{path}?{query}"))
        .header("x-scope-orgid", tenant.as_str())
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// `POST body` to `path` as `tenant`: status and raw body.
pub async fn post(
    app: &Router,
    tenant: &TenantId,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let req = Request::post(path)
        .header("x-scope-orgid", tenant.as_str())
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}
