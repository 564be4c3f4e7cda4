//! The bucket index: `<tenant>/bucket-index.json.gz`, a gzipped JSON list of the tenant's
//! complete blocks and deletion marks in Mimir's layout, so that queriers find blocks
//! without listing the bucket. The compactor rebuilds it from one listing of the tenant's
//! prefix, reusing the previous index for blocks and marks it already knows.
//!
//! ```json
//! {"version": 1,
//!  "blocks": [{"block_id": "01H...", "min_time": 0, "max_time": 7200000,
//!              "segments_format": "1b6d", "segments_num": 1, "uploaded_at": 1700000000,
//!              "source": "ingester", "compaction_level": 1}],
//!  "block_deletion_marks": [{"block_id": "01H...", "deletion_time": 1700000000}],
//!  "updated_at": 1700000000}
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::time::SystemTime;

use bytes::Bytes;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::StreamExt;
use hestia_block::META_FILENAME;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::block::{global_mark_name, unix_seconds};
use crate::{BucketError, Result, TenantBucket, DELETION_MARK_FILENAME, MARKERS_DIR};

pub const INDEX_FILENAME: &str = "bucket-index.json.gz";
pub const INDEX_VERSION: u32 = 1;
/// Mimir's name for chunk segments numbered `000001`, `000002`, ... without gaps.
const SEGMENTS_1B6D: &str = "1b6d";
/// `meta.json`s or marks fetched at once when the index learns of new ones.
const FETCH_CONCURRENCY: usize = 16;

/// A tenant's complete blocks (those with a `meta.json`) and deletion marks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketIndex {
    pub version: u32,
    /// Sorted by `min_time`, then id.
    pub blocks: Vec<IndexBlock>,
    /// Sorted by block id.
    pub block_deletion_marks: Vec<IndexDeletionMark>,
    /// When the listing behind this index was made (unix seconds).
    pub updated_at: i64,
}

/// What queriers need of a block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlock {
    pub block_id: Ulid,
    /// Inclusive start and exclusive end of the block's samples (ms).
    pub min_time: i64,
    pub max_time: i64,
    /// `"1b6d"` when the chunk segments are `chunks/000001` to `chunks/<segments_num>`
    /// (then their names need no listing); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub segments_format: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub segments_num: u32,
    /// When `meta.json` was written, i.e. the upload completed (unix seconds).
    pub uploaded_at: i64,
    /// What produced the block (`thanos.source`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compaction_level: u32,
}

fn is_zero(x: &u32) -> bool {
    *x == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDeletionMark {
    pub block_id: Ulid,
    /// Unix seconds.
    pub deletion_time: i64,
}

/// What an index update skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Block prefixes without a readable `meta.json`: uploads in progress or abandoned, and
    /// blocks being deleted. The compactor removes those whose newest object is old enough.
    pub partial_blocks: Vec<PartialBlock>,
    /// Marks in `markers/` that could not be parsed, with the reason.
    pub corrupt_marks: Vec<(Ulid, String)>,
    /// Bytes stored under each block prefix of the listing, complete or partial (deletion
    /// marks included).
    pub block_bytes: BTreeMap<Ulid, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialBlock {
    pub id: Ulid,
    /// The newest object of the block's prefix (unix seconds).
    pub last_modified: i64,
    pub reason: PartialReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartialReason {
    MissingMeta,
    CorruptMeta(String),
}

/// What the listing shows of one block prefix.
#[derive(Default)]
struct Listed {
    /// Last-modified time of `meta.json` (unix seconds), when there is one.
    meta: Option<i64>,
    segments: Vec<String>,
    newest: i64,
    bytes: u64,
}

impl BucketIndex {
    /// The index from scratch: lists the tenant's prefix once and reads every `meta.json` and
    /// deletion mark.
    pub async fn build(bucket: &TenantBucket) -> Result<(Self, UpdateReport)> {
        Self::update(bucket, None).await
    }

    /// The index from one listing of the tenant's prefix, reading only the `meta.json`s and
    /// marks `previous` lacks. Blocks and marks gone from the bucket leave the index.
    pub async fn update(
        bucket: &TenantBucket,
        previous: Option<&BucketIndex>,
    ) -> Result<(Self, UpdateReport)> {
        let updated_at = unix_seconds(SystemTime::now());
        let mut blocks: BTreeMap<Ulid, Listed> = BTreeMap::new();
        let mut marked: BTreeSet<Ulid> = BTreeSet::new();
        for object in bucket.list_all().await? {
            let Some(parts) = object.location.prefix_match(&bucket.root) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
            let modified = object.last_modified.timestamp();
            match parts.as_slice() {
                [dir, name] if dir == MARKERS_DIR => {
                    if let Some(id) = name
                        .strip_suffix(DELETION_MARK_FILENAME)
                        .and_then(|n| n.strip_suffix('-'))
                        .and_then(|n| Ulid::from_string(n).ok())
                    {
                        marked.insert(id);
                    }
                }
                [dir, rest @ ..] if !rest.is_empty() => {
                    let Ok(id) = Ulid::from_string(dir) else {
                        continue;
                    };
                    let listed = blocks.entry(id).or_default();
                    listed.newest = listed.newest.max(modified);
                    listed.bytes += object.size;
                    match rest {
                        [name] if name == META_FILENAME => listed.meta = Some(modified),
                        [chunks, segment] if chunks == "chunks" => {
                            listed.segments.push(segment.clone())
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }

        let known: HashMap<Ulid, &IndexBlock> = previous
            .map(|p| p.blocks.iter().map(|b| (b.block_id, b)).collect())
            .unwrap_or_default();
        let mut report = UpdateReport::default();
        let mut index_blocks = Vec::new();
        let mut new_blocks = Vec::new();
        for (id, listed) in blocks {
            report.block_bytes.insert(id, listed.bytes);
            match (listed.meta, known.get(&id)) {
                (Some(_), Some(old)) => index_blocks.push((*old).clone()),
                (Some(uploaded_at), None) => new_blocks.push((id, uploaded_at, listed.segments)),
                (None, _) => report.partial_blocks.push(PartialBlock {
                    id,
                    last_modified: listed.newest,
                    reason: PartialReason::MissingMeta,
                }),
            }
        }
        let fetched: Vec<_> = futures::stream::iter(new_blocks)
            .map(|(id, uploaded_at, segments)| async move {
                (id, uploaded_at, segments, bucket.read_meta(id).await)
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for (id, uploaded_at, mut segments, meta) in fetched {
            match meta {
                Ok(meta) => {
                    segments.sort();
                    let (segments_format, segments_num) = segments_format(&segments);
                    index_blocks.push(IndexBlock {
                        block_id: id,
                        min_time: meta.min_time,
                        max_time: meta.max_time,
                        segments_format,
                        segments_num,
                        uploaded_at,
                        source: meta.thanos.source,
                        compaction_level: meta.compaction.level,
                    });
                }
                Err(BucketError::Corrupt { reason, .. }) => {
                    report.partial_blocks.push(PartialBlock {
                        id,
                        last_modified: uploaded_at,
                        reason: PartialReason::CorruptMeta(reason),
                    })
                }
                // Deleted since the listing.
                Err(BucketError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        index_blocks.sort_by_key(|b| (b.min_time, b.block_id));

        let known_marks: HashMap<Ulid, &IndexDeletionMark> = previous
            .map(|p| {
                p.block_deletion_marks
                    .iter()
                    .map(|m| (m.block_id, m))
                    .collect()
            })
            .unwrap_or_default();
        let mut marks = Vec::new();
        let mut new_marks = Vec::new();
        for id in marked {
            match known_marks.get(&id) {
                Some(old) => marks.push((*old).clone()),
                None => new_marks.push(id),
            }
        }
        let fetched: Vec<_> = futures::stream::iter(new_marks)
            .map(|id| async move {
                let rel = global_mark_name(id);
                let mark = match bucket.get(&rel).await {
                    Ok(bytes) => bucket.parse_mark(&rel, &bytes),
                    Err(e) => Err(e),
                };
                (id, mark)
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for (id, mark) in fetched {
            match mark {
                Ok(mark) => marks.push(IndexDeletionMark {
                    block_id: id,
                    deletion_time: mark.deletion_time,
                }),
                Err(BucketError::Corrupt { reason, .. }) => report.corrupt_marks.push((id, reason)),
                Err(BucketError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        marks.sort_by_key(|m| m.block_id);
        report.partial_blocks.sort_by_key(|p| p.id);
        report.corrupt_marks.sort();

        let index = BucketIndex {
            version: INDEX_VERSION,
            blocks: index_blocks,
            block_deletion_marks: marks,
            updated_at,
        };
        Ok((index, report))
    }

    /// The tenant's stored index; `None` before the first [`BucketIndex::write`].
    pub async fn read(bucket: &TenantBucket) -> Result<Option<Self>> {
        let bytes = match bucket.get(INDEX_FILENAME).await {
            Ok(b) => b,
            Err(BucketError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let corrupt = |reason: String| BucketError::Corrupt {
            path: format!("{}/{INDEX_FILENAME}", bucket.tenant()),
            reason,
        };
        let mut json = Vec::new();
        GzDecoder::new(bytes.as_ref())
            .read_to_end(&mut json)
            .map_err(|e| corrupt(format!("gzip: {e}")))?;
        let index: BucketIndex =
            serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
        if index.version != INDEX_VERSION {
            return Err(corrupt(format!("unsupported version {}", index.version)));
        }
        Ok(Some(index))
    }

    /// Stores the index as the tenant's `bucket-index.json.gz` (one PUT: readers see the old
    /// or the new index whole).
    pub async fn write(&self, bucket: &TenantBucket) -> Result<()> {
        let path = bucket.path(INDEX_FILENAME)?;
        let gzip_error = |e: std::io::Error| BucketError::Corrupt {
            path: path.to_string(),
            reason: format!("gzip: {e}"),
        };
        let json = serde_json::to_vec(self).map_err(|e| BucketError::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).map_err(gzip_error)?;
        let bytes = gz.finish().map_err(gzip_error)?;
        bucket.put(path, Bytes::from(bytes)).await
    }

    /// The block's deletion mark, if it has one.
    pub fn deletion_mark(&self, id: Ulid) -> Option<&IndexDeletionMark> {
        self.block_deletion_marks
            .binary_search_by_key(&id, |m| m.block_id)
            .ok()
            .map(|i| &self.block_deletion_marks[i])
    }
}

/// `("1b6d", n)` when the sorted `segments` are exactly `000001` to `n` (zero-padded to six
/// digits), else `("", 0)`.
fn segments_format(segments: &[String]) -> (String, u32) {
    let numbered = segments
        .iter()
        .enumerate()
        .all(|(i, s)| *s == format!("{:06}", i + 1));
    match u32::try_from(segments.len()) {
        Ok(n) if numbered && n > 0 => (SEGMENTS_1B6D.to_string(), n),
        _ => (String::new(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_formats() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            segments_format(&names(&["000001", "000002"])),
            ("1b6d".to_string(), 2)
        );
        assert_eq!(
            segments_format(&names(&["000001", "000003"])),
            (String::new(), 0)
        );
        assert_eq!(segments_format(&names(&["1"])), (String::new(), 0));
        assert_eq!(segments_format(&[]), (String::new(), 0));
    }
}
