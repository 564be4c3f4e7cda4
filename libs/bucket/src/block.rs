//! Blocks in a tenant's prefix: upload, reads, deletion marks, deletion.

use std::ops::Range;
use std::path::Path as FsPath;
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use hestia_block::{BlockMeta, META_FILENAME};
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ulid::Ulid;

use crate::{metrics, record, BucketError, Result, TenantBucket};

/// File name of a block's deletion mark, in the block's prefix.
pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";
/// The tenant's prefix holding a copy of every deletion mark
/// (`markers/<ulid>-deletion-mark.json`).
pub const MARKERS_DIR: &str = "markers";
/// The only deletion mark version Thanos and Mimir write.
pub const DELETION_MARK_VERSION: u32 = 1;

/// Files up to this size are uploaded with one PUT; larger ones in parts of this size
/// (S3 parts are at least 5 MiB but the last).
const PART_SIZE: usize = 8 << 20;
/// Parts of one file in flight at once.
const PART_CONCURRENCY: usize = 2;

/// `deletion-mark.json`, as Thanos and Mimir write it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeletionMark {
    pub id: Ulid,
    /// When the block was marked (unix seconds).
    pub deletion_time: i64,
    pub version: u32,
}

/// Unix seconds of `t` (0 before the epoch).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `markers/<ulid>-deletion-mark.json`, relative to the tenant.
pub(crate) fn global_mark_name(id: Ulid) -> String {
    format!("{MARKERS_DIR}/{id}-{DELETION_MARK_FILENAME}")
}

impl TenantBucket {
    /// Uploads the block directory `dir` (`chunks/*`, `index`, `tombstones` if present, then
    /// `meta.json`) to `<tenant>/<ulid>/`. Its `meta.json` must be valid and name this tenant.
    /// Uploading the same block again rewrites the same objects.
    pub async fn upload_block(&self, dir: &FsPath) -> Result<BlockMeta> {
        let invalid = |reason: String| BucketError::InvalidBlock {
            dir: dir.to_path_buf(),
            reason,
        };
        let meta_bytes = tokio::fs::read(dir.join(META_FILENAME))
            .await
            .map_err(|e| BucketError::io(dir.join(META_FILENAME), e))?;
        let meta = BlockMeta::from_json(&meta_bytes).map_err(|e| invalid(e.to_string()))?;
        let owner = meta.tenant().map_err(|e| invalid(e.to_string()))?;
        if owner != self.tenant {
            return Err(invalid(format!(
                "block of tenant {owner}, not {}",
                self.tenant
            )));
        }

        let mut files = Vec::new();
        let chunks = dir.join("chunks");
        let mut entries = tokio::fs::read_dir(&chunks)
            .await
            .map_err(|e| BucketError::io(&chunks, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| BucketError::io(&chunks, e))?
        {
            let kind = entry
                .file_type()
                .await
                .map_err(|e| BucketError::io(entry.path(), e))?;
            if kind.is_file() {
                let name = entry
                    .file_name()
                    .into_string()
                    .map_err(|n| invalid(format!("chunk segment name {n:?} is not UTF-8")))?;
                files.push(format!("chunks/{name}"));
            }
        }
        files.sort();
        files.push("index".to_string());
        if tokio::fs::try_exists(dir.join("tombstones"))
            .await
            .map_err(|e| BucketError::io(dir.join("tombstones"), e))?
        {
            files.push("tombstones".to_string());
        }

        for rel in &files {
            let object = self.path(&format!("{}/{rel}", meta.ulid))?;
            self.upload_file(&dir.join(rel), object).await?;
        }
        let object = self.path(&format!("{}/{META_FILENAME}", meta.ulid))?;
        self.put(object, Bytes::from(meta_bytes)).await?;
        Ok(meta)
    }

    /// One local file to `object`: a single PUT, or a multipart upload above [`PART_SIZE`].
    async fn upload_file(&self, local: &FsPath, object: object_store::path::Path) -> Result<()> {
        let io = |e| BucketError::io(local, e);
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size <= PART_SIZE as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await.map_err(io)?;
            return self.put(object, Bytes::from(buf)).await;
        }
        let upload = self.store.put_multipart(&object).await;
        record("put_multipart", &upload);
        let mut writer = WriteMultipart::new_with_chunk_size(upload?, PART_SIZE);
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = match read_full(&mut file, &mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    // Best effort: the store drops the parts sent so far.
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            writer.write(&buf[..n]);
            metrics::BYTES
                .with_label_values(&["upload"])
                .inc_by(n as u64);
        }
        let done = writer.finish().await;
        record("put_multipart", &done);
        done?;
        Ok(())
    }

    pub(crate) async fn put(&self, object: object_store::path::Path, bytes: Bytes) -> Result<()> {
        let len = bytes.len() as u64;
        let put = self.store.put(&object, PutPayload::from(bytes)).await;
        record("put", &put);
        put?;
        metrics::BYTES.with_label_values(&["upload"]).inc_by(len);
        Ok(())
    }

    /// The whole object `<tenant>/<rel>`.
    pub(crate) async fn get(&self, rel: &str) -> Result<Bytes> {
        let object = self.path(rel)?;
        let get = self.store.get(&object).await;
        record("get", &get);
        let bytes = get?.bytes().await?;
        metrics::BYTES
            .with_label_values(&["download"])
            .inc_by(bytes.len() as u64);
        Ok(bytes)
    }

    /// The block's `meta.json`.
    pub async fn read_meta(&self, id: Ulid) -> Result<BlockMeta> {
        let rel = format!("{id}/{META_FILENAME}");
        let bytes = self.get(&rel).await?;
        BlockMeta::from_json(&bytes).map_err(|e| BucketError::Corrupt {
            path: format!("{}/{rel}", self.tenant),
            reason: e.to_string(),
        })
    }

    /// Bytes `range` of the block's `file` (`index`, `chunks/000001`, ...).
    pub async fn get_range(&self, id: Ulid, file: &str, range: Range<u64>) -> Result<Bytes> {
        let object = self.path(&format!("{id}/{file}"))?;
        let got = self.store.get_range(&object, range).await;
        record("get_range", &got);
        let bytes = got?;
        metrics::BYTES
            .with_label_values(&["download"])
            .inc_by(bytes.len() as u64);
        Ok(bytes)
    }

    /// Downloads the block into the local directory `dir` (created; files already there are
    /// overwritten): every object of `<tenant>/<ulid>/` but the deletion mark, streamed to disk,
    /// `meta.json` last. Returns the block's meta and the bytes downloaded.
    pub async fn download_block(&self, id: Ulid, dir: &FsPath) -> Result<(BlockMeta, u64)> {
        let prefix = self.path(&id.to_string())?;
        let listing = self.store.list(Some(&prefix)).try_collect::<Vec<_>>().await;
        record("list", &listing);
        let mut files: Vec<String> = Vec::new();
        for object in listing? {
            let Some(parts) = object.location.prefix_match(&prefix) else {
                continue;
            };
            let rel: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
            let rel = rel.join("/");
            if rel != META_FILENAME && rel != DELETION_MARK_FILENAME {
                files.push(rel);
            }
        }
        let mut bytes = 0;
        for rel in files {
            bytes += self
                .download_file(&format!("{id}/{rel}"), &dir.join(&rel))
                .await?;
        }
        let meta_bytes = self.get(&format!("{id}/{META_FILENAME}")).await?;
        let meta = BlockMeta::from_json(&meta_bytes).map_err(|e| BucketError::Corrupt {
            path: format!("{}/{id}/{META_FILENAME}", self.tenant),
            reason: e.to_string(),
        })?;
        tokio::fs::write(dir.join(META_FILENAME), &meta_bytes)
            .await
            .map_err(|e| BucketError::io(dir.join(META_FILENAME), e))?;
        Ok((meta, bytes + meta_bytes.len() as u64))
    }

    /// Streams the object `<tenant>/<rel>` into the file `local`; returns its size.
    async fn download_file(&self, rel: &str, local: &FsPath) -> Result<u64> {
        let io = |e| BucketError::io(local, e);
        if let Some(parent) = local.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| BucketError::io(parent, e))?;
        }
        let object = self.path(rel)?;
        let get = self.store.get(&object).await;
        record("get", &get);
        let mut stream = get?.into_stream();
        let mut file = tokio::fs::File::create(local).await.map_err(io)?;
        let mut n = 0;
        while let Some(chunk) = stream.try_next().await? {
            file.write_all(&chunk).await.map_err(io)?;
            n += chunk.len() as u64;
            metrics::BYTES
                .with_label_values(&["download"])
                .inc_by(chunk.len() as u64);
        }
        file.flush().await.map_err(io)?;
        Ok(n)
    }

    /// Size in bytes of the block's `file`.
    pub async fn size(&self, id: Ulid, file: &str) -> Result<u64> {
        let object = self.path(&format!("{id}/{file}"))?;
        let head = self.store.head(&object).await;
        record("head", &head);
        Ok(head?.size)
    }

    /// Marks the block for deletion now: `<ulid>/deletion-mark.json`, then its copy in
    /// `markers/`. A block already marked keeps its first mark.
    pub async fn mark_for_deletion(&self, id: Ulid) -> Result<DeletionMark> {
        let local = format!("{id}/{DELETION_MARK_FILENAME}");
        let mark = match self.get(&local).await {
            Ok(bytes) => self.parse_mark(&local, &bytes)?,
            Err(BucketError::NotFound { .. }) => {
                let mark = DeletionMark {
                    id,
                    deletion_time: unix_seconds(SystemTime::now()),
                    version: DELETION_MARK_VERSION,
                };
                self.put(self.path(&local)?, mark_json(&mark)).await?;
                mark
            }
            Err(e) => return Err(e),
        };
        self.put(self.path(&global_mark_name(id))?, mark_json(&mark))
            .await?;
        Ok(mark)
    }

    /// Parses a deletion mark read from `<tenant>/<rel>`.
    pub(crate) fn parse_mark(&self, rel: &str, bytes: &[u8]) -> Result<DeletionMark> {
        let corrupt = |reason: String| BucketError::Corrupt {
            path: format!("{}/{rel}", self.tenant),
            reason,
        };
        let mark: DeletionMark =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if mark.version != DELETION_MARK_VERSION {
            return Err(corrupt(format!(
                "unsupported deletion mark version {}",
                mark.version
            )));
        }
        Ok(mark)
    }

    /// Deletes every object of the block: `meta.json` first (readers then see a partial
    /// block and skip it), the other files, its deletion mark, and the mark's copy in
    /// `markers/` last. Deleting a deleted block succeeds.
    pub async fn delete_block(&self, id: Ulid) -> Result<()> {
        self.delete(&format!("{id}/{META_FILENAME}")).await?;
        let prefix = self.path(&id.to_string())?;
        let listing = self.store.list(Some(&prefix)).try_collect::<Vec<_>>().await;
        record("list", &listing);
        let mark = self.path(&format!("{id}/{DELETION_MARK_FILENAME}"))?;
        for object in listing? {
            if object.location != mark {
                self.delete_path(&object.location).await?;
            }
        }
        self.delete_path(&mark).await?;
        self.delete(&global_mark_name(id)).await
    }

    pub(crate) async fn delete(&self, rel: &str) -> Result<()> {
        self.delete_path(&self.path(rel)?).await
    }

    /// Deletes one object; a missing one is already deleted.
    async fn delete_path(&self, object: &object_store::path::Path) -> Result<()> {
        let deleted = self.store.delete(object).await;
        record("delete", &deleted);
        match deleted {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn mark_json(mark: &DeletionMark) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"{}","deletion_time":{},"version":{}}}"#,
        mark.id, mark.deletion_time, mark.version
    ))
}

/// Fills `buf` from `file` unless the file ends first; returns the bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).await? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}
