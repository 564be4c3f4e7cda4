//! The memory cache of block bytes: the index (postings lists, series entries) and chunk
//! segments in pages of [`PAGE_SIZE`], least recently used evicted first, bounded by
//! `querier.block_cache_bytes`. Blocks are immutable, so a page never goes stale; pages are keyed
//! by tenant, block and file, so a tenant's query can only ever hit its own blocks' pages.
//!
//! Pages rather than the exact ranges a query reads: a dashboard's next refresh selects the same
//! postings and series but a shifted set of chunks, which reads different merged ranges that
//! still lie on the pages already cached.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use futures::future::try_join_all;
use hestia_block::BlockError;

use super::lru::Lru;
use crate::metrics;

/// Cached unit of a block file (the block reader merges ranges closer than 4 KiB too).
pub(crate) const PAGE_SIZE: u64 = 4096;
/// Bookkeeping per cached page (key, map and order entries), counted in its weight.
const PAGE_OVERHEAD: usize = 160;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PageKey {
    /// `<tenant>/<block>/<file>`.
    file: Arc<str>,
    page: u64,
}

/// Counters of one cache, also exported as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Page lookups answered from memory.
    pub hits: u64,
    /// Page lookups that went to the object store.
    pub misses: u64,
    /// Bytes read from the object store for index and chunk reads (header reads excluded).
    pub fetched_bytes: u64,
    /// Object store requests for those reads.
    pub fetches: u64,
    /// Memory held by cached pages, bookkeeping included.
    pub cached_bytes: usize,
    pub cached_pages: usize,
}

pub(crate) struct PageCache {
    pages: Mutex<Lru<PageKey, Bytes>>,
    hits: AtomicU64,
    misses: AtomicU64,
    fetched_bytes: AtomicU64,
    fetches: AtomicU64,
}

impl PageCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            pages: Mutex::new(Lru::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        }
    }

    fn pages(&self) -> MutexGuard<'_, Lru<PageKey, Bytes>> {
        // The map is consistent between calls: a panic elsewhere cannot leave it half-updated.
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let pages = self.pages();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
            fetches: self.fetches.load(Ordering::Relaxed),
            cached_bytes: pages.weight(),
            cached_pages: pages.len(),
        }
    }

    /// Bytes `range` of the file `file` (`<tenant>/<block>/<file>`) of `size` bytes: cached
    /// pages from memory, runs of missing pages each with one `fetch`.
    pub(crate) async fn read<F, Fut>(
        &self,
        file: &Arc<str>,
        size: u64,
        range: Range<u64>,
        fetch: F,
    ) -> Result<Bytes, BlockError>
    where
        F: Fn(Range<u64>) -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, BlockError>>,
    {
        if range.start > range.end || range.end > size {
            return Err(BlockError::Invalid(format!(
                "{file}: range {range:?} past the end ({size} bytes)"
            )));
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let (first, last) = (range.start / PAGE_SIZE, (range.end - 1) / PAGE_SIZE);
        let key = |page| PageKey {
            file: Arc::clone(file),
            page,
        };
        let mut pages: Vec<Option<Bytes>> = {
            let mut lru = self.pages();
            (first..=last).map(|p| lru.get(&key(p))).collect()
        };
        let hits = pages.iter().filter(|p| p.is_some()).count() as u64;
        let misses = pages.len() as u64 - hits;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
        metrics::BLOCK_CACHE_LOOKUPS
            .with_label_values(&["hit"])
            .inc_by(hits);
        metrics::BLOCK_CACHE_LOOKUPS
            .with_label_values(&["miss"])
            .inc_by(misses);

        // Runs of consecutive missing pages, as page indices relative to `first`.
        let mut runs: Vec<Range<usize>> = Vec::new();
        for (i, p) in pages.iter().enumerate() {
            if p.is_some() {
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.end == i => r.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        let fetched = try_join_all(runs.iter().map(|r| {
            let start = (first + r.start as u64) * PAGE_SIZE;
            let end = ((first + r.end as u64) * PAGE_SIZE).min(size);
            fetch(start..end)
        }))
        .await?;
        if !runs.is_empty() {
            let mut lru = self.pages();
            for (r, bytes) in runs.iter().zip(fetched) {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                self.fetched_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                metrics::BLOCK_FETCHED_BYTES
                    .with_label_values(&["data"])
                    .inc_by(bytes.len() as u64);
                for (i, chunk) in (r.clone()).zip(bytes.chunks(PAGE_SIZE as usize)) {
                    // Each page its own allocation: an evicted page must free its memory even
                    // when pages fetched with it stay cached.
                    let page = Bytes::copy_from_slice(chunk);
                    let weight = page.len() + PAGE_OVERHEAD + file.len();
                    lru.insert(key(first + i as u64), page.clone(), weight);
                    pages[i] = Some(page);
                }
            }
            metrics::BLOCK_CACHE_BYTES.set(lru.weight() as i64);
        }

        let from = (range.start - first * PAGE_SIZE) as usize;
        let len = (range.end - range.start) as usize;
        let pages: Vec<Bytes> = pages.into_iter().flatten().collect();
        if pages.len() as u64 != last - first + 1 {
            return Err(BlockError::Invalid(format!("{file}: short read")));
        }
        if let [page] = pages.as_slice() {
            return match page.get(from..from + len) {
                Some(_) => Ok(page.slice(from..from + len)),
                None => Err(BlockError::Invalid(format!("{file}: short read"))),
            };
        }
        let mut out = BytesMut::with_capacity(len);
        let mut skip = from;
        for page in &pages {
            let part = page.get(skip..).unwrap_or_default();
            let take = part.len().min(len - out.len());
            out.extend_from_slice(&part[..take]);
            skip = 0;
        }
        if out.len() != len {
            return Err(BlockError::Invalid(format!("{file}: short read")));
        }
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    fn file_bytes(n: usize) -> Bytes {
        Bytes::from((0..n).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>())
    }

    #[tokio::test]
    async fn reads_match_the_file_and_stay_within_capacity() {
        let data = file_bytes(50_000);
        let calls = StdMutex::new(Vec::new());
        let fetch = |r: Range<u64>| {
            calls.lock().unwrap().push(r.clone());
            let b = data.slice(r.start as usize..r.end as usize);
            async move { Ok(b) }
        };
        let cap = 4 * (PAGE_SIZE as usize + PAGE_OVERHEAD + 16);
        let cache = PageCache::new(cap);
        let file: Arc<str> = Arc::from("t/01ARZ3NDEKTSV4RRFFQ69G5FAV/index");
        for r in [
            0..10,
            4000..4200,
            8191..8193,
            100..12_000,
            49_990..50_000,
            7..7,
        ] {
            let got = cache
                .read(&file, data.len() as u64, r.clone(), fetch)
                .await
                .unwrap();
            assert_eq!(got, data.slice(r.start as usize..r.end as usize), "{r:?}");
            assert!(cache.stats().cached_bytes <= cap);
        }
        // 0..10 and 4000..4200 share page 0; 4000..4200 adds page 1; 8191..8193 pages 1-2.
        assert_eq!(
            calls.lock().unwrap()[..3],
            [0..4096, 4096..8192, 8192..12_288]
        );
        let before = cache.stats();
        cache
            .read(&file, data.len() as u64, 49_995..50_000, fetch)
            .await
            .unwrap();
        let after = cache.stats();
        assert_eq!((after.hits - before.hits, after.misses), (1, before.misses));
        assert!(cache
            .read(&file, data.len() as u64, 49_995..50_001, fetch)
            .await
            .is_err());
    }
}
