//! `hestia admin backfill WORKSPACE_ID DIR`: uploads Prometheus TSDB blocks (a Prometheus data
//! directory, or block directories such as `promtool tsdb create-blocks-from openmetrics` makes)
//! into a workspace's part of the block store.
//!
//! The workspace is looked up through the AMP API with the caller's signed credentials
//! (`DescribeWorkspace`): it must exist and be visible to the caller, and its account names the
//! tenant. Every block is then read in full before anything is uploaded (meta.json, the index,
//! every chunk of every series, each sample inside the block's time range, the sample count of
//! meta.json), so a corrupt block fails the command with nothing of it visible. Each valid block
//! is uploaded under its own ULID with `thanos.labels.__org_id__` set to the tenant and
//! `thanos.source = "backfill"`, files first and meta.json last (a half-uploaded block is never
//! read; running the command again rewrites the same objects). The tenant's bucket index is
//! updated at the end so queriers see the blocks at their next refresh.
//!
//! Blocks may overlap each other and the workspace's other data: queriers merge overlapping
//! series and keep one sample per timestamp. The object store comes from the `[storage]` section
//! of the configuration file (`--config`), as `hestia all` uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hestia_block::{BlockMeta, BlockReader, BlockSource, LocalDir, META_FILENAME, TENANT_LABEL};
use hestia_bucket::{Bucket, BucketIndex};
use hestia_model::{Matcher, TenantId, WorkspaceId};
use serde::Serialize;

/// A block found in the backfill directory, validated.
#[derive(Debug, Clone)]
pub struct CheckedBlock {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub series: u64,
    pub samples: u64,
}

/// One line of the command's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    pub block: String,
    pub min_time: i64,
    pub max_time: i64,
    pub series: u64,
    pub samples: u64,
}

/// The block directories under `dir`: `dir` itself if it holds a meta.json, else its
/// subdirectories that do (a Prometheus data directory's `wal`, `chunks_head` and temporary
/// directories hold none and are skipped).
pub fn find_blocks(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.join(META_FILENAME).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.is_dir() && path.join(META_FILENAME).is_file() {
            out.push(path);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!(
            "{} holds no TSDB block (no meta.json in it or in its subdirectories)",
            dir.display()
        );
    }
    Ok(out)
}

/// Reads a block in full and checks it: readable meta.json and index, every chunk decodable with
/// its samples inside `[minTime, maxTime)`, and as many samples as meta.json says (when it says).
pub async fn check_block(dir: &Path) -> anyhow::Result<CheckedBlock> {
    let bad = |what: String| anyhow::anyhow!("block {}: {what}", dir.display());
    let reader = BlockReader::open(LocalDir::new(dir))
        .await
        .map_err(|e| bad(e.to_string()))?;
    let meta = reader.meta().clone();
    let (mint, maxt) = (meta.min_time, meta.max_time);
    // One metric name at a time bounds memory by the largest metric, not the block.
    let mut selections: Vec<Vec<Matcher>> = reader
        .label_values("__name__")
        .into_iter()
        .map(|name| vec![Matcher::equal("__name__", name)])
        .collect();
    selections.push(vec![Matcher::equal("__name__", "")]);
    let (mut series, mut samples) = (0u64, 0u64);
    for matchers in selections {
        let selected = reader
            .select(&matchers, i64::MIN, i64::MAX)
            .await
            .map_err(|e| bad(e.to_string()))?;
        for s in selected {
            let decoded = s
                .samples(i64::MIN, i64::MAX)
                .map_err(|e| bad(format!("series {}: {e}", s.labels)))?;
            let times = decoded
                .floats
                .iter()
                .map(|f| f.0)
                .chain(decoded.histograms.iter().map(|h| h.0));
            for t in times {
                if t < mint || t >= maxt {
                    return Err(bad(format!(
                        "series {} has a sample at {t}, outside the block's range [{mint}, {maxt})",
                        s.labels
                    )));
                }
                samples += 1;
            }
            series += 1;
        }
    }
    if meta.stats.num_samples != 0 && meta.stats.num_samples != samples {
        return Err(bad(format!(
            "meta.json counts {} samples, the chunks hold {samples}",
            meta.stats.num_samples
        )));
    }
    Ok(CheckedBlock {
        dir: dir.to_path_buf(),
        meta,
        series,
        samples,
    })
}

/// A copy of `block` in `staging` whose meta.json names `tenant` and the backfill source; the
/// index and chunks are hard links where the file system allows.
fn stage(block: &CheckedBlock, tenant: &TenantId, staging: &Path) -> anyhow::Result<PathBuf> {
    let dir = staging.join(block.meta.ulid.to_string());
    std::fs::create_dir_all(dir.join("chunks"))?;
    let mut files = vec![PathBuf::from("index")];
    for entry in std::fs::read_dir(block.dir.join("chunks"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(Path::new("chunks").join(entry.file_name()));
        }
    }
    if block.dir.join("tombstones").is_file() {
        files.push(PathBuf::from("tombstones"));
    }
    for rel in files {
        let (from, to) = (block.dir.join(&rel), dir.join(&rel));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    let mut meta = block.meta.clone();
    meta.thanos.labels = BTreeMap::from([(TENANT_LABEL.to_string(), tenant.to_string())]);
    meta.thanos.source = BlockSource::Backfill.as_str().to_string();
    meta.write_to_dir(&dir)?;
    Ok(dir)
}

/// Checks every block under `dir`, then uploads them for `tenant` and updates its bucket index.
pub async fn backfill(
    bucket: &Bucket,
    tenant: &TenantId,
    dir: &Path,
) -> anyhow::Result<Vec<Uploaded>> {
    let mut checked = Vec::new();
    for block in find_blocks(dir)? {
        checked.push(check_block(&block).await?);
    }
    let staging = std::env::temp_dir().join(format!(
        "hestia-backfill-{}-{}",
        std::process::id(),
        ulid::Ulid::new()
    ));
    let result = upload_all(bucket, tenant, &checked, &staging).await;
    let _ = std::fs::remove_dir_all(&staging);
    result
}

async fn upload_all(
    bucket: &Bucket,
    tenant: &TenantId,
    checked: &[CheckedBlock],
    staging: &Path,
) -> anyhow::Result<Vec<Uploaded>> {
    let tb = bucket.tenant(tenant);
    let mut out = Vec::new();
    for block in checked {
        let staged = stage(block, tenant, staging)
            .with_context(|| format!("staging block {}", block.dir.display()))?;
        let meta = tb
            .upload_block(&staged)
            .await
            .with_context(|| format!("uploading block {}", block.dir.display()))?;
        out.push(Uploaded {
            block: meta.ulid.to_string(),
            min_time: meta.min_time,
            max_time: meta.max_time,
            series: block.series,
            samples: block.samples,
        });
    }
    let old = BucketIndex::read(&tb).await?;
    let (index, _) = BucketIndex::update(&tb, old.as_ref()).await?;
    index.write(&tb).await?;
    Ok(out)
}

/// The tenant of a workspace from its `DescribeWorkspace` answer (the account is in the ARN,
/// `arn:aws:aps:<region>:<account>:workspace/<id>`).
pub fn tenant_of(describe: &serde_json::Value, workspace: &str) -> anyhow::Result<TenantId> {
    let ws = WorkspaceId::parse(workspace)?;
    let arn = describe["workspace"]["arn"]
        .as_str()
        .context("DescribeWorkspace answered without workspace.arn")?;
    let account = arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .with_context(|| format!("workspace ARN {arn} names no account"))?;
    Ok(TenantId::for_workspace(Some(account), &ws)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_is_the_account_and_workspace_of_the_arn() {
        let describe = serde_json::json!({"workspace": {
            "arn": "arn:aws:aps:us-east-1:123456789012:workspace/ws-abc",
            "workspaceId": "ws-abc"}});
        assert_eq!(
            tenant_of(&describe, "ws-abc").unwrap().as_str(),
            "123456789012_ws-abc"
        );
        assert!(tenant_of(&serde_json::json!({}), "ws-abc").is_err());
    }

    #[test]
    fn a_directory_without_blocks_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hestia-nob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("wal")).unwrap();
        let err = find_blocks(&dir).unwrap_err().to_string();
        assert!(err.contains("holds no TSDB block"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
