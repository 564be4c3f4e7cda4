//! `meta.json`: Prometheus' block metadata with Thanos' `thanos` section.
//!
//! The layout is Prometheus' `tsdb.BlockMeta` (`ulid`, `minTime`, `maxTime` exclusive, `stats`,
//! `compaction`, `version: 1`) plus Thanos' `metadata.Thanos` (`labels`, `downsample`, `source`,
//! `segment_files`, `files`), so Prometheus, promtool and Thanos tools read Hestia's blocks.
//!
//! Hestia's identity of a block lives in `thanos.labels`, under Cortex's external label names:
//! [`TENANT_LABEL`] (`__org_id__`) holds the tenant id, [`INGESTER_LABEL`] (`__ingester_id__`)
//! the ingester that cut the block (absent for backfills and compactions). `thanos.source` says
//! what produced the block ([`BlockSource`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use hestia_model::TenantId;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::BlockError;

/// The only `meta.json` version Prometheus has.
pub const META_VERSION: u32 = 1;
/// `thanos.labels` key of the tenant owning every series of the block.
pub const TENANT_LABEL: &str = "__org_id__";
/// `thanos.labels` key of the ingester that produced the block.
pub const INGESTER_LABEL: &str = "__ingester_id__";
/// File name of the metadata in a block directory.
pub const META_FILENAME: &str = "meta.json";

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: Ulid,
    /// First timestamp of the block (inclusive, ms).
    pub min_time: i64,
    /// End of the block (exclusive, ms): the newest sample is at most `max_time - 1`.
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub version: u32,
    /// Absent in blocks Prometheus wrote; written by Hestia for every block.
    #[serde(default)]
    pub thanos: ThanosMeta,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// Counts of what the block holds. Zero counts are left out, as Go's `omitempty` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_float_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_histogram_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// How the block came to be: level 1 for a block cut from a head, higher for compactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    pub level: u32,
    /// The level-1 blocks whose data this block holds (itself for a level-1 block).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// The blocks compacted into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// A parent block of a compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
}

/// Thanos' section of `meta.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// External labels of every series of the block (Hestia: tenant and ingester).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    /// What produced the block, e.g. [`BlockSource::Ingester`]'s `"ingester"`.
    #[serde(default)]
    pub source: String,
    /// Segment file names in `chunks/`, sorted (deprecated by Thanos in favour of `files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    /// Every file of the block, sorted by path, with its size (none for `meta.json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<BlockFile>,
}

/// Downsampling resolution in ms; 0 for raw data (Hestia writes only raw blocks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    pub resolution: i64,
}

/// A file of the block directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockFile {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size_bytes: u64,
}

/// What produced a block (`thanos.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSource {
    /// Cut from an ingester's head.
    Ingester,
    /// Imported historical data.
    Backfill,
    /// Merged from other blocks.
    Compactor,
}

impl BlockSource {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockSource::Ingester => "ingester",
            BlockSource::Backfill => "backfill",
            BlockSource::Compactor => "compactor",
        }
    }
}

impl BlockMeta {
    /// Metadata of a new level-1 block of `tenant`, before its stats and files are known.
    pub fn new(
        ulid: Ulid,
        min_time: i64,
        max_time: i64,
        tenant: &TenantId,
        ingester: Option<&str>,
        source: BlockSource,
    ) -> Self {
        let mut labels = BTreeMap::new();
        labels.insert(TENANT_LABEL.to_string(), tenant.as_str().to_string());
        if let Some(i) = ingester {
            labels.insert(INGESTER_LABEL.to_string(), i.to_string());
        }
        Self {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: Compaction {
                level: 1,
                sources: vec![ulid],
                parents: Vec::new(),
                deletable: false,
                failed: false,
                hints: Vec::new(),
            },
            version: META_VERSION,
            thanos: ThanosMeta {
                labels,
                downsample: Downsample::default(),
                source: source.as_str().to_string(),
                segment_files: Vec::new(),
                files: Vec::new(),
            },
        }
    }

    /// The tenant owning the block (`thanos.labels.__org_id__`).
    pub fn tenant(&self) -> Result<TenantId, BlockError> {
        let t =
            self.thanos.labels.get(TENANT_LABEL).ok_or_else(|| {
                BlockError::Invalid(format!("{} has no {TENANT_LABEL}", self.ulid))
            })?;
        TenantId::parse(t).map_err(|e| BlockError::Invalid(format!("{}: {e}", self.ulid)))
    }

    /// The ingester that produced the block, if one did.
    pub fn ingester(&self) -> Option<&str> {
        self.thanos.labels.get(INGESTER_LABEL).map(String::as_str)
    }

    /// Checks what every reader relies on: version 1, a non-empty time range, level ≥ 1.
    pub fn validate(&self) -> Result<(), BlockError> {
        let invalid = |what: String| Err(BlockError::Invalid(format!("{}: {what}", self.ulid)));
        if self.version != META_VERSION {
            return invalid(format!("unsupported meta.json version {}", self.version));
        }
        if self.min_time >= self.max_time {
            return invalid(format!(
                "minTime {} is not before maxTime {}",
                self.min_time, self.max_time
            ));
        }
        if self.compaction.level == 0 {
            return invalid("compaction level 0".to_string());
        }
        if self.thanos.downsample.resolution < 0 {
            return invalid("negative downsample resolution".to_string());
        }
        Ok(())
    }

    /// Parses and validates `meta.json` bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BlockError> {
        let meta: BlockMeta = serde_json::from_slice(bytes)?;
        meta.validate()?;
        Ok(meta)
    }

    /// `meta.json` bytes, tab-indented as Prometheus writes them.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing plain structs, strings and integers into a Vec cannot fail.
        if self.serialize(&mut ser).is_ok() {
            out.push(b'\n');
        }
        out
    }

    /// Reads and validates `<dir>/meta.json`.
    pub fn read_from_dir(dir: &Path) -> Result<Self, BlockError> {
        Self::from_json(&fs::read(dir.join(META_FILENAME))?)
    }

    /// Writes `<dir>/meta.json` atomically (temporary file, fsync, rename).
    pub fn write_to_dir(&self, dir: &Path) -> Result<(), BlockError> {
        let tmp = dir.join(format!("{META_FILENAME}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&self.to_json())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(META_FILENAME))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A meta.json as Prometheus 2.42 writes it (no thanos section).
    const PROMETHEUS_META: &str = r#"{
	"ulid": "01BKGV7JBM69T2G1BGBGM6KB12",
	"minTime": 1602237600000,
	"maxTime": 1602244800000,
	"stats": {
		"numSamples": 553673232,
		"numSeries": 1346066,
		"numChunks": 4440437
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01BKGV7JBM69T2G1BGBGM6KB12"
		]
	},
	"version": 1
}"#;

    #[test]
    fn reads_prometheus_meta() {
        let m = BlockMeta::from_json(PROMETHEUS_META.as_bytes()).unwrap();
        assert_eq!(m.ulid.to_string(), "01BKGV7JBM69T2G1BGBGM6KB12");
        assert_eq!(m.stats.num_samples, 553_673_232);
        assert_eq!(m.stats.num_chunks, 4_440_437);
        assert_eq!(m.compaction.sources, vec![m.ulid]);
        assert_eq!(m.thanos, ThanosMeta::default());
        assert!(m.tenant().is_err());
    }

    #[test]
    fn round_trips_with_thanos_section() {
        let tenant = TenantId::parse("t1").unwrap();
        let id = Ulid::from_parts(1_700_000_000_000, 42);
        let mut m = BlockMeta::new(
            id,
            1_000,
            7_201_000,
            &tenant,
            Some("ingester-a1"),
            BlockSource::Ingester,
        );
        m.stats.num_series = 3;
        m.thanos.files.push(BlockFile {
            rel_path: "meta.json".into(),
            size_bytes: 0,
        });
        let json = m.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains("\"__org_id__\": \"t1\""), "{text}");
        assert!(text.contains("\"source\": \"ingester\""), "{text}");
        assert!(
            text.contains("\"downsample\": {\n\t\t\t\"resolution\": 0"),
            "{text}"
        );
        // omitempty: zero stats and meta.json's size are left out.
        assert!(!text.contains("numSamples"), "{text}");
        assert!(!text.contains("size_bytes"), "{text}");
        let back = BlockMeta::from_json(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.tenant().unwrap(), tenant);
        assert_eq!(back.ingester(), Some("ingester-a1"));
    }

    #[test]
    fn validation() {
        let tenant = TenantId::parse("t1").unwrap();
        let id = Ulid::from_parts(1, 1);
        let ok = BlockMeta::new(id, 0, 1, &tenant, None, BlockSource::Backfill);
        assert!(ok.validate().is_ok());
        let mut m = ok.clone();
        m.max_time = 0;
        assert!(m.validate().is_err());
        let mut m = ok.clone();
        m.version = 2;
        assert!(BlockMeta::from_json(&m.to_json()).is_err());
        let mut m = ok;
        m.compaction.level = 0;
        assert!(m.validate().is_err());
        assert!(BlockMeta::from_json(b"{}").is_err());
        assert!(BlockMeta::from_json(b"not json").is_err());
    }
}
