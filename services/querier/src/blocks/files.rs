//! The files of one block in the tenant's bucket, as the [`RangeReader`] a `BlockReader` reads
//! through. While the block opens, reads come from the saved index header when it has them (else
//! from the object store) and are recorded, so the header can be saved; afterwards every read
//! goes through the shared page cache.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use hestia_block::{BlockError, RangeReader};
use hestia_bucket::{BucketError, TenantBucket};
use ulid::Ulid;

use super::cache::PageCache;
use super::header::Header;
use crate::metrics;

/// Where a read is served from.
enum Lookup<T> {
    /// Opening, and the saved header has it.
    Saved(T),
    /// Opening, from the object store.
    NotSaved,
    /// Open: through the page cache.
    Open,
}

enum State {
    Opening {
        saved: Option<Header>,
        record: Header,
        /// Some read was not in `saved`.
        missed: bool,
    },
    Open,
}

pub(crate) struct BlockFiles {
    bucket: TenantBucket,
    id: Ulid,
    cache: Arc<PageCache>,
    state: Mutex<State>,
    /// Sizes of the block's files (they never change).
    sizes: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the value whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bucket_error(file: &str, e: BucketError) -> BlockError {
    match e {
        BucketError::NotFound { .. } => BlockError::NotFound(file.to_string()),
        e => BlockError::Io(std::io::Error::other(e)),
    }
}

impl BlockFiles {
    pub(crate) fn new(
        bucket: TenantBucket,
        id: Ulid,
        cache: Arc<PageCache>,
        saved: Option<Header>,
    ) -> Arc<Self> {
        Arc::new(Self {
            bucket,
            id,
            cache,
            state: Mutex::new(State::Opening {
                saved,
                record: Header::default(),
                missed: false,
            }),
            sizes: Mutex::new(HashMap::new()),
        })
    }

    /// Ends the opening: the reads it made, and whether any went to the object store.
    pub(crate) fn finish_open(&self) -> (Header, bool) {
        match std::mem::replace(&mut *lock(&self.state), State::Open) {
            State::Opening { record, missed, .. } => (record, missed),
            State::Open => (Header::default(), false),
        }
    }

    async fn fetch(&self, file: &str, range: Range<u64>) -> Result<Bytes, BlockError> {
        self.bucket
            .get_range(self.id, file, range)
            .await
            .map_err(|e| bucket_error(file, e))
    }

    /// What the saved header holds of `file`'s size (`Saved(None)`: the file was absent).
    fn saved_size(&self, file: &str) -> Lookup<Option<u64>> {
        match &*lock(&self.state) {
            State::Opening { saved, .. } => saved
                .as_ref()
                .and_then(|h| h.sizes.get(file).copied())
                .map_or(Lookup::NotSaved, Lookup::Saved),
            State::Open => Lookup::Open,
        }
    }

    fn saved_range(&self, file: &str, range: &Range<u64>) -> Lookup<Bytes> {
        match &*lock(&self.state) {
            State::Opening { saved, .. } => saved
                .as_ref()
                .and_then(|h| h.range(file, range))
                .map_or(Lookup::NotSaved, Lookup::Saved),
            State::Open => Lookup::Open,
        }
    }

    fn record_size(&self, file: &str, size: Option<u64>, missed: bool) {
        if let State::Opening {
            record, missed: m, ..
        } = &mut *lock(&self.state)
        {
            record.sizes.insert(file.to_string(), size);
            *m |= missed;
        }
        if let Some(n) = size {
            lock(&self.sizes).insert(file.to_string(), n);
        }
    }

    fn record_range(&self, file: &str, range: &Range<u64>, bytes: &Bytes, missed: bool) {
        if let State::Opening {
            record, missed: m, ..
        } = &mut *lock(&self.state)
        {
            record
                .ranges
                .insert((file.to_string(), range.start, range.end), bytes.clone());
            *m |= missed;
        }
    }
}

/// A shared [`BlockFiles`]: the block reader owns one, the store keeps another to end the opening.
pub(crate) struct Files(pub(crate) Arc<BlockFiles>);

#[async_trait]
impl RangeReader for Files {
    async fn read_range(&self, file: &str, range: Range<u64>) -> Result<Bytes, BlockError> {
        let f = &self.0;
        match f.saved_range(file, &range) {
            Lookup::Saved(saved) => {
                f.record_range(file, &range, &saved, false);
                Ok(saved)
            }
            Lookup::NotSaved => {
                let bytes = f.fetch(file, range.clone()).await?;
                metrics::BLOCK_FETCHED_BYTES
                    .with_label_values(&["header"])
                    .inc_by(bytes.len() as u64);
                f.record_range(file, &range, &bytes, true);
                Ok(bytes)
            }
            Lookup::Open => {
                let size = self.size(file).await?;
                let key: Arc<str> = Arc::from(format!("{}/{}/{file}", f.bucket.tenant(), f.id));
                f.cache.read(&key, size, range, |r| f.fetch(file, r)).await
            }
        }
    }

    async fn size(&self, file: &str) -> Result<u64, BlockError> {
        let f = &self.0;
        if let Some(n) = lock(&f.sizes).get(file) {
            return Ok(*n);
        }
        let fetched = match f.saved_size(file) {
            Lookup::Saved(saved) => {
                f.record_size(file, saved, false);
                return saved.ok_or_else(|| BlockError::NotFound(file.to_string()));
            }
            Lookup::NotSaved => true,
            Lookup::Open => false,
        };
        match f.bucket.size(f.id, file).await {
            Ok(n) => {
                f.record_size(file, Some(n), fetched);
                Ok(n)
            }
            Err(BucketError::NotFound { .. }) => {
                f.record_size(file, None, fetched);
                Err(BlockError::NotFound(file.to_string()))
            }
            Err(e) => Err(bucket_error(file, e)),
        }
    }
}
