//! The tenant deletion mark, Mimir's `markers/tenant-deletion-mark.json`: the tenant (its
//! workspace was deleted and purged) is to be removed from the bucket. The compactor owning the
//! tenant deletes its blocks once the mark is older than `compactor.deletion_delay`, then the
//! bucket index, then the mark.

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::block::unix_seconds;
use crate::{BucketError, Result, TenantBucket, INDEX_FILENAME, MARKERS_DIR};

/// File name of the tenant deletion mark in `markers/`.
pub const TENANT_DELETION_MARK_FILENAME: &str = "tenant-deletion-mark.json";

/// `markers/tenant-deletion-mark.json`, as Mimir writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeletionMark {
    /// When the tenant was marked (unix seconds).
    pub deletion_time: i64,
    /// When its blocks were all deleted (unix seconds); Hestia deletes the mark instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_time: Option<i64>,
}

fn mark_name() -> String {
    format!("{MARKERS_DIR}/{TENANT_DELETION_MARK_FILENAME}")
}

impl TenantBucket {
    /// Marks the whole tenant for deletion now. A tenant already marked keeps its first mark,
    /// so calling this again (a retried purge) does not push the deletion back.
    pub async fn mark_tenant_deleted(&self) -> Result<TenantDeletionMark> {
        if let Some(mark) = self.tenant_deletion_mark().await? {
            return Ok(mark);
        }
        let mark = TenantDeletionMark {
            deletion_time: unix_seconds(SystemTime::now()),
            finished_time: None,
        };
        let json = serde_json::to_vec(&mark).map_err(|e| BucketError::Corrupt {
            path: format!("{}/{}", self.tenant, mark_name()),
            reason: e.to_string(),
        })?;
        self.put(self.path(&mark_name())?, Bytes::from(json))
            .await?;
        Ok(mark)
    }

    /// The tenant's deletion mark, if it has one.
    pub async fn tenant_deletion_mark(&self) -> Result<Option<TenantDeletionMark>> {
        let bytes = match self.get(&mark_name()).await {
            Ok(b) => b,
            Err(BucketError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BucketError::Corrupt {
                path: format!("{}/{}", self.tenant, mark_name()),
                reason: e.to_string(),
            })
    }

    /// Removes the tenant deletion mark (after every block is gone).
    pub async fn delete_tenant_deletion_mark(&self) -> Result<()> {
        self.delete(&mark_name()).await
    }

    /// Removes the tenant's bucket index; queriers then see no blocks.
    pub async fn delete_index(&self) -> Result<()> {
        self.delete(INDEX_FILENAME).await
    }
}
