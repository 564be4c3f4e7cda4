//! Byte-range access to a block's files, so readers fetch only what a query needs.

use std::io;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::{GetOptions, ObjectStore};

use crate::BlockError;

/// Reads byte ranges of the files of one block. `file` is a path relative to the block
/// directory (`index`, `chunks/000001`, `meta.json`, `tombstones`).
#[async_trait]
pub trait RangeReader: Send + Sync {
    /// Exactly the bytes `range` of `file`; a range past the end is an error.
    async fn read_range(&self, file: &str, range: Range<u64>) -> Result<Bytes, BlockError>;
    /// The size of `file`; [`BlockError::NotFound`] if it does not exist.
    async fn size(&self, file: &str) -> Result<u64, BlockError>;
}

/// A block directory on the local file system.
#[derive(Debug, Clone)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, file: &str) -> Result<PathBuf, BlockError> {
        let rel = Path::new(file);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(BlockError::Invalid(format!("{file:?} is not a block file")));
        }
        Ok(self.dir.join(rel))
    }
}

fn not_found(file: &str, e: io::Error) -> BlockError {
    match e.kind() {
        io::ErrorKind::NotFound => BlockError::NotFound(file.to_string()),
        _ => BlockError::Io(e),
    }
}

#[async_trait]
impl RangeReader for LocalDir {
    async fn read_range(&self, file: &str, range: Range<u64>) -> Result<Bytes, BlockError> {
        use std::os::unix::fs::FileExt;
        let path = self.path(file)?;
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| BlockError::Invalid("range too large".into()))?;
        let name = file.to_string();
        let read = move || -> Result<Bytes, BlockError> {
            let f = std::fs::File::open(&path).map_err(|e| not_found(&name, e))?;
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, range.start)?;
            Ok(Bytes::from(buf))
        };
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| BlockError::Io(io::Error::other(e)))?
    }

    async fn size(&self, file: &str) -> Result<u64, BlockError> {
        let path = self.path(file)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| not_found(file, e))?;
        Ok(meta.len())
    }
}

/// A block in object storage: the objects under `dir` (e.g. `<tenant>/<ulid>`).
#[derive(Debug, Clone)]
pub struct ObjectStoreDir {
    store: Arc<dyn ObjectStore>,
    dir: object_store::path::Path,
}

impl ObjectStoreDir {
    pub fn new(store: Arc<dyn ObjectStore>, dir: object_store::path::Path) -> Self {
        Self { store, dir }
    }

    fn path(&self, file: &str) -> object_store::path::Path {
        file.split('/')
            .fold(self.dir.clone(), |p, part| p.join(part))
    }
}

fn store_error(file: &str, e: object_store::Error) -> BlockError {
    match e {
        object_store::Error::NotFound { .. } => BlockError::NotFound(file.to_string()),
        e => BlockError::ObjectStore(e),
    }
}

#[async_trait]
impl RangeReader for ObjectStoreDir {
    async fn read_range(&self, file: &str, range: Range<u64>) -> Result<Bytes, BlockError> {
        let want = range.end.saturating_sub(range.start);
        let mut parts = self
            .store
            .get_ranges(&self.path(file), &[range])
            .await
            .map_err(|e| store_error(file, e))?;
        match parts.pop() {
            Some(b) if b.len() as u64 == want => Ok(b),
            _ => Err(BlockError::corrupt("object", "range past the end")),
        }
    }

    async fn size(&self, file: &str) -> Result<u64, BlockError> {
        let head = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let r = self
            .store
            .get_opts(&self.path(file), head)
            .await
            .map_err(|e| store_error(file, e))?;
        Ok(r.meta.size)
    }
}
