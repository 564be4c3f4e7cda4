//! `hestia admin blocks list` and `hestia admin compact --now`: the block store as the
//! compactors see it, through the control plane's admin routes (authenticated, operator only,
//! audited) — the CLI never reads the bucket itself.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use hestia_control_plane::compactor_api::{CompactRequest, CompactResponse, WorkspaceBlocks};
use hestia_control_plane::compactors::BlockRow;

#[derive(Debug, Clone, Subcommand)]
pub enum BlocksCommand {
    /// List a workspace's blocks: time range (RFC 3339, UTC), level, sources, series, samples,
    /// size, writer and deletion mark, then partial uploads.
    List {
        workspace: String,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// Run one compaction pass now on every compactor (passes otherwise run on their
    /// schedule, `compactor.compaction_interval`) and print each compactor's report.
    #[arg(long, required = true)]
    pub now: bool,
    /// Only this workspace's tenant.
    #[arg(long)]
    pub workspace: Option<String>,
}

impl CompactArgs {
    pub fn request(&self) -> CompactRequest {
        CompactRequest {
            workspace_id: self.workspace.clone(),
        }
    }
}

/// What `compact --now` prints, and the failures that make it exit non-zero.
pub fn compact_output(answer: &CompactResponse) -> anyhow::Result<(String, Vec<String>)> {
    Ok((serde_json::to_string_pretty(answer)?, answer.failures()))
}

/// Warnings for compactors that started no tenant because their ring was changing.
pub fn unstable_warnings(answer: &CompactResponse) -> Vec<String> {
    answer
        .compactors
        .iter()
        .filter(|c| c.report.as_ref().is_some_and(|r| !r.ring_stable))
        .map(|c| {
            format!(
                "{}: the compactors' ring changed within compactor.ring.wait_stability, so no tenant was started; run the pass again shortly",
                c.instance
            )
        })
        .collect()
}

/// `blocks list`'s table.
pub fn blocks_table(b: &WorkspaceBlocks) -> String {
    let l = &b.listing;
    let mut out = format!(
        "workspace {} (tenant {}), listed by {}\n",
        b.workspace_id, l.tenant, b.compactor
    );
    if let Some(t) = l.tenant_deletion_time {
        let _ = writeln!(
            out,
            "tenant marked for deletion at {}",
            rfc3339_ms(t.saturating_mul(1000))
        );
    }
    let header = [
        "BLOCK",
        "MIN TIME",
        "MAX TIME",
        "LEVEL",
        "SOURCES",
        "SERIES",
        "SAMPLES",
        "SIZE",
        "FROM",
        "DELETION MARK",
    ];
    let rows: Vec<[String; 10]> = l.blocks.iter().map(block_cells).collect();
    out.push_str(&table(&header, &rows));
    let live = l
        .blocks
        .iter()
        .filter(|b| b.deletion_time.is_none())
        .count();
    let _ = writeln!(
        out,
        "{} blocks, {} marked for deletion; {} samples in live blocks",
        l.blocks.len(),
        l.blocks.len() - live,
        l.blocks
            .iter()
            .filter(|b| b.deletion_time.is_none())
            .map(|b| b.num_samples)
            .sum::<u64>()
    );
    if !l.partial.is_empty() {
        let header = ["PARTIAL BLOCK", "LAST MODIFIED", "SIZE", "REASON"];
        let rows: Vec<[String; 4]> = l
            .partial
            .iter()
            .map(|p| {
                [
                    p.id.to_string(),
                    rfc3339_ms(p.last_modified.saturating_mul(1000)),
                    bytes(p.size_bytes),
                    p.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&header, &rows));
    }
    out
}

fn block_cells(b: &BlockRow) -> [String; 10] {
    [
        b.id.to_string(),
        rfc3339_ms(b.min_time),
        rfc3339_ms(b.max_time),
        b.level.to_string(),
        b.sources.len().to_string(),
        b.num_series.to_string(),
        b.num_samples.to_string(),
        bytes(b.size_bytes),
        b.source.clone(),
        b.deletion_time
            .map_or_else(|| "-".to_string(), |t| rfc3339_ms(t.saturating_mul(1000))),
    ]
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Bytes with a binary unit.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS[unit]),
    }
}

/// Unix milliseconds as RFC 3339 in UTC (`2024-01-02T03:04:05Z`, milliseconds when not whole).
pub fn rfc3339_ms(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if millis != 0 {
        let _ = write!(s, ".{millis:03}");
    }
    s.push('Z');
    s
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use hestia_control_plane::compactors::{PartialRow, TenantBlocks};
    use ulid::Ulid;

    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(4_102_444_800_000), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn sizes_have_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn the_table_shows_ranges_levels_sources_and_marks() {
        let id = |n: u64| Ulid::from_parts(n, 0);
        let row = |n: u64, level: u32, sources: usize, mark: Option<i64>| BlockRow {
            id: id(n),
            min_time: 1_700_000_000_000,
            max_time: 1_700_000_060_000,
            level,
            source: if level == 1 { "ingester" } else { "compactor" }.to_string(),
            sources: (0..sources as u64).map(id).collect(),
            num_series: 20,
            num_samples: 240,
            size_bytes: 2048,
            uploaded_at: 1_700_000_100,
            deletion_time: mark,
        };
        let b = WorkspaceBlocks {
            workspace_id: "ws-1".into(),
            compactor: "compactor-2".into(),
            listing: TenantBlocks {
                tenant: "123_ws-1".into(),
                tenant_deletion_time: None,
                blocks: vec![row(1, 1, 1, Some(1_700_000_200)), row(2, 2, 3, None)],
                partial: vec![PartialRow {
                    id: id(3),
                    last_modified: 1_700_000_300,
                    size_bytes: 10,
                    reason: "no meta.json".into(),
                }],
            },
        };
        let t = blocks_table(&b);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "workspace ws-1 (tenant 123_ws-1), listed by compactor-2"
        );
        assert!(lines[1].starts_with("BLOCK "), "{t}");
        assert!(lines[2].contains("2023-11-14T22:13:20Z  2023-11-14T22:14:20Z  1      1"));
        assert!(lines[2].ends_with("ingester   2023-11-14T22:16:40Z"), "{t}");
        assert!(lines[3].contains("  2      3        20      240      2.0 KiB  compactor  -"));
        assert_eq!(
            lines[4],
            "2 blocks, 1 marked for deletion; 240 samples in live blocks"
        );
        assert!(lines[6].ends_with("10 B  no meta.json"), "{t}");
    }
}
