//! Backends for the suite: a filesystem bucket in a temp dir, and a real S3-compatible server
//! (s3s-fs, started by `deploy/s3/test-server`) — one per test process, shared by the S3
//! tests, each of which works under its own tenants.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use hestia_block::{BlockMeta, BlockSource};
use hestia_bucket::Bucket;
use hestia_config::{S3StorageConfig, StorageBackend, StorageConfig};
use hestia_model::TenantId;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rand::{Rng, RngCore};
use tokio::sync::OnceCell;
use ulid::Ulid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Filesystem,
    S3,
}

/// One test's bucket configuration and tenants.
pub struct Fixture {
    pub cfg: StorageConfig,
    /// `server.data_dir` (the filesystem bucket lives in `<data_dir>/blocks`) and room for
    /// local block directories.
    pub data_dir: tempfile::TempDir,
    /// Makes this test's tenant ids unique in the shared S3 bucket.
    run: String,
}

impl Fixture {
    pub async fn new(backend: Backend) -> Self {
        let mut cfg = StorageConfig::default();
        if backend == Backend::S3 {
            cfg.backend = StorageBackend::S3;
            cfg.s3 = s3_server().await.config();
        }
        Self {
            cfg,
            data_dir: tempfile::tempdir().expect("temp dir"),
            run: format!("{:08}", rand::rng().random_range(0..100_000_000u32)),
        }
    }

    pub fn bucket(&self) -> Bucket {
        Bucket::open(&self.cfg, self.data_dir.path()).expect("open bucket")
    }

    /// The bucket over a store that records every GET.
    pub fn counted_bucket(&self) -> (Bucket, Arc<Counting>) {
        let store = Bucket::open_store(&self.cfg, self.data_dir.path()).expect("open store");
        let counting = Arc::new(Counting {
            inner: store,
            gets: Mutex::default(),
        });
        (Bucket::new(Arc::clone(&counting) as _), counting)
    }

    /// A tenant id unique to this test: `<run>_ws-<name>`.
    pub fn tenant(&self, name: &str) -> TenantId {
        TenantId::parse(&format!("{}_ws-{name}", self.run)).expect("tenant id")
    }

    /// A new local block directory of `tenant` with chunk segments of `segment_sizes` bytes,
    /// an index and tombstones of random bytes.
    pub fn block_dir(&self, tenant: &TenantId, segment_sizes: &[usize]) -> LocalBlock {
        let id = Ulid::new();
        let dir = self.data_dir.path().join("local").join(id.to_string());
        std::fs::create_dir_all(dir.join("chunks")).expect("block dir");
        let mut files = Vec::new();
        for (i, size) in segment_sizes.iter().enumerate() {
            files.push((format!("chunks/{:06}", i + 1), random_bytes(*size)));
        }
        files.push(("index".to_string(), random_bytes(5000)));
        files.push(("tombstones".to_string(), random_bytes(17)));
        for (rel, bytes) in &files {
            std::fs::write(dir.join(rel), bytes).expect("block file");
        }
        let meta = BlockMeta::new(
            id,
            1_700_000_000_000,
            1_700_007_200_000,
            tenant,
            Some("ingester-a1"),
            BlockSource::Ingester,
        );
        meta.write_to_dir(&dir).expect("meta.json");
        LocalBlock { dir, meta, files }
    }
}

pub struct LocalBlock {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    /// Relative path and content of every file but `meta.json`.
    pub files: Vec<(String, Vec<u8>)>,
}

impl LocalBlock {
    pub fn id(&self) -> Ulid {
        self.meta.ulid
    }

    pub fn file(&self, rel: &str) -> &[u8] {
        &self
            .files
            .iter()
            .find(|(r, _)| r == rel)
            .expect("block file")
            .1
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// An object store that records the path of every GET (whole or ranged).
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    gets: Mutex<Vec<String>>,
}

impl Counting {
    /// GETs so far of objects whose path ends with `suffix`.
    pub fn gets_ending_with(&self, suffix: &str) -> Vec<String> {
        let gets = self.gets.lock().expect("gets lock");
        gets.iter()
            .filter(|p| p.ends_with(suffix))
            .cloned()
            .collect()
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
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !options.head {
            let mut gets = self.gets.lock().expect("gets lock");
            gets.push(location.to_string());
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        {
            let mut gets = self.gets.lock().expect("gets lock");
            gets.push(location.to_string());
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
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
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

/// The test process' S3 server (`deploy/s3/test-server`: s3s-fs); it stops when the process
/// exits and closes the wrapper's stdin.
pub struct S3Server {
    cfg: S3StorageConfig,
    /// Held so that the wrapper's stdin stays open.
    _wrapper: Mutex<Child>,
}

impl S3Server {
    pub fn config(&self) -> S3StorageConfig {
        self.cfg.clone()
    }
}

static S3_SERVER: OnceCell<S3Server> = OnceCell::const_new();

pub async fn s3_server() -> &'static S3Server {
    S3_SERVER.get_or_init(start_s3_server).await
}

/// Starts the server on a free loopback port with a bucket and a random key.
async fn start_s3_server() -> S3Server {
    let script = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/s3/test-server");
    let dir = std::env::temp_dir().join(format!("hestia-s3-{}", Ulid::new()));
    let access_key_id = format!("AK{:024x}", rand::rng().random::<u128>() >> 32);
    let secret_access_key = format!("{:032x}", rand::rng().random::<u128>());
    let started = Instant::now();
    let mut wrapper = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(&access_key_id)
        .arg(&secret_access_key)
        .arg("hestia")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
    let mut line = String::new();
    if let Some(stdout) = wrapper.stdout.take() {
        // The first line, or nothing when the wrapper exits.
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let Some(endpoint) = line.trim().strip_prefix("endpoint=") else {
        let mut err = String::new();
        if let Some(mut stderr) = wrapper.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        panic!("the S3 test server (deploy/s3/test-server) did not start: {err}");
    };
    eprintln!("S3 test server at {endpoint} in {:?}", started.elapsed());
    S3Server {
        cfg: S3StorageConfig {
            endpoint: endpoint.to_string(),
            bucket: "hestia".to_string(),
            region: "us-east-1".to_string(),
            access_key_id,
            secret_access_key,
            allow_http: true,
            ..S3StorageConfig::default()
        },
        _wrapper: Mutex::new(wrapper),
    }
}

pub use hestia_testing::free_port;
