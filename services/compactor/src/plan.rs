//! What to do with a tenant's live (unmarked) blocks, decided from their metas alone:
//!
//! 1. **Superseded** blocks are marked for deletion without merging: a block whose
//!    `compaction.sources` are all in a live block with more sources (or the same ones and a
//!    larger ULID) is already merged there. This is what a compactor killed after an upload and
//!    before the marks leaves behind; the next pass finishes its work.
//! 2. **Vertical**: blocks whose time ranges overlap (the RF replicas of a range, backfills)
//!    merge into one, unless a level-1 block of the group was uploaded within
//!    `first_level_wait` (another replica may still come).
//! 3. **Levels**, only when no vertical job is left: for each range `R` of `block_ranges[1..]`,
//!    smallest first, the blocks lying inside one aligned window `[kR, (k+1)R)` merge into one
//!    once the window is closed: a later block exists, or the window ended more than
//!    `block_ranges[0] + first_level_wait` ago. Only the smallest range with work is planned;
//!    the caller plans again after running the jobs.

use std::collections::{BTreeMap, HashMap, HashSet};

use ulid::Ulid;

/// What the planner needs of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanBlock {
    pub id: Ulid,
    pub min_time: i64,
    /// Exclusive.
    pub max_time: i64,
    pub level: u32,
    /// Sorted and unique; never empty (a block with none is its own source).
    pub sources: Vec<Ulid>,
    /// When its upload finished (ms).
    pub uploaded_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    Vertical,
    /// Merges a window of this range (ms).
    Level(i64),
}

impl JobKind {
    pub fn label(self) -> &'static str {
        match self {
            JobKind::Vertical => "vertical",
            JobKind::Level(_) => "level",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub kind: JobKind,
    /// Sorted by time, then id.
    pub blocks: Vec<Ulid>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub superseded: Vec<Ulid>,
    pub jobs: Vec<Job>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.superseded.is_empty() && self.jobs.is_empty()
    }
}

pub(crate) struct Planner {
    /// `block_ranges` in ms, the first being the shipped range.
    pub ranges: Vec<i64>,
    pub first_level_wait_ms: i64,
}

impl Planner {
    pub fn plan(&self, blocks: &[PlanBlock], now_ms: i64) -> Plan {
        let superseded = superseded(blocks);
        let gone: HashSet<Ulid> = superseded.iter().copied().collect();
        let mut live: Vec<&PlanBlock> = blocks.iter().filter(|b| !gone.contains(&b.id)).collect();
        live.sort_by_key(|b| (b.min_time, b.id));

        let fresh = |b: &PlanBlock| {
            b.level <= 1 && b.uploaded_at_ms > now_ms.saturating_sub(self.first_level_wait_ms)
        };
        // Blocks that must not be merged into a window yet.
        let mut waiting: HashSet<Ulid> = live.iter().filter(|b| fresh(b)).map(|b| b.id).collect();
        let mut jobs = Vec::new();
        for group in overlapping_groups(&live) {
            if group.len() < 2 {
                continue;
            }
            if group.iter().any(|b| fresh(b)) {
                waiting.extend(group.iter().map(|b| b.id));
                continue;
            }
            jobs.push(Job {
                kind: JobKind::Vertical,
                blocks: group.iter().map(|b| b.id).collect(),
            });
        }
        if jobs.is_empty() {
            jobs = self.level_jobs(&live, &waiting, now_ms);
        }
        Plan { superseded, jobs }
    }

    fn level_jobs(&self, live: &[&PlanBlock], waiting: &HashSet<Ulid>, now_ms: i64) -> Vec<Job> {
        let newest_start = live.iter().map(|b| b.min_time).max().unwrap_or(i64::MIN);
        let base = self.ranges.first().copied().unwrap_or(0);
        let settled_before = now_ms
            .saturating_sub(base)
            .saturating_sub(self.first_level_wait_ms);
        for &range in self.ranges.iter().skip(1) {
            let mut windows: BTreeMap<i64, Vec<&PlanBlock>> = BTreeMap::new();
            for b in live {
                let k = b.min_time.div_euclid(range);
                let inside = (b.max_time - 1).div_euclid(range) == k;
                if inside && b.max_time - b.min_time < range {
                    windows.entry(k).or_default().push(b);
                }
            }
            let jobs: Vec<Job> = windows
                .into_iter()
                .filter(|(k, group)| {
                    let end = (k + 1).saturating_mul(range);
                    group.len() >= 2
                        && !group.iter().any(|b| waiting.contains(&b.id))
                        && (newest_start >= end || end <= settled_before)
                })
                .map(|(_, group)| Job {
                    kind: JobKind::Level(range),
                    blocks: group.iter().map(|b| b.id).collect(),
                })
                .collect();
            if !jobs.is_empty() {
                return jobs;
            }
        }
        Vec::new()
    }
}

/// Blocks (sorted by start) grouped where their time ranges overlap, transitively.
fn overlapping_groups<'a>(sorted: &[&'a PlanBlock]) -> Vec<Vec<&'a PlanBlock>> {
    let mut groups: Vec<Vec<&PlanBlock>> = Vec::new();
    let mut end = i64::MIN;
    for &b in sorted {
        match groups.last_mut() {
            Some(g) if b.min_time < end => {
                g.push(b);
                end = end.max(b.max_time);
            }
            _ => {
                groups.push(vec![b]);
                end = b.max_time;
            }
        }
    }
    groups
}

/// Blocks whose sources are all in another block that supersedes them: more sources, or the
/// same ones and a larger ULID (two compactions of the same blocks: the newer one stays).
fn superseded(blocks: &[PlanBlock]) -> Vec<Ulid> {
    let mut holding: HashMap<Ulid, Vec<&PlanBlock>> = HashMap::new();
    for b in blocks {
        for s in &b.sources {
            holding.entry(*s).or_default().push(b);
        }
    }
    let mut out: Vec<Ulid> = blocks
        .iter()
        .filter(|b| {
            let Some(first) = b.sources.first() else {
                return false;
            };
            holding.get(first).into_iter().flatten().any(|c| {
                c.id != b.id
                    && (c.sources.len() > b.sources.len()
                        || (c.sources.len() == b.sources.len() && c.id > b.id))
                    && b.sources.iter().all(|s| c.sources.binary_search(s).is_ok())
            })
        })
        .map(|b| b.id)
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const NOW: i64 = 1_000 * H;

    fn id(n: u64) -> Ulid {
        Ulid::from_parts(n, 0)
    }

    fn block(n: u64, min: i64, max: i64) -> PlanBlock {
        PlanBlock {
            id: id(n),
            min_time: min,
            max_time: max,
            level: 1,
            sources: vec![id(n)],
            uploaded_at_ms: 0,
        }
    }

    fn merged(n: u64, from: &[&PlanBlock]) -> PlanBlock {
        let mut sources: Vec<Ulid> = from.iter().flat_map(|b| b.sources.clone()).collect();
        sources.sort();
        sources.dedup();
        PlanBlock {
            id: id(n),
            min_time: from.iter().map(|b| b.min_time).min().unwrap(),
            max_time: from.iter().map(|b| b.max_time).max().unwrap(),
            level: from.iter().map(|b| b.level).max().unwrap() + 1,
            sources,
            uploaded_at_ms: 0,
        }
    }

    fn planner() -> Planner {
        Planner {
            ranges: vec![2 * H, 12 * H, 24 * H],
            first_level_wait_ms: H / 2,
        }
    }

    fn ids(v: &[u64]) -> Vec<Ulid> {
        v.iter().map(|n| id(*n)).collect()
    }

    #[test]
    fn replicas_merge_once_every_replica_waited() {
        let mut blocks = vec![block(1, 0, 2 * H), block(2, 0, 2 * H), block(3, 0, 2 * H)];
        blocks.push(block(4, 2 * H, 4 * H));
        let plan = planner().plan(&blocks, NOW);
        assert_eq!(
            plan.jobs,
            vec![Job {
                kind: JobKind::Vertical,
                blocks: ids(&[1, 2, 3])
            }]
        );
        // A replica uploaded a moment ago: wait for the others.
        blocks[2].uploaded_at_ms = NOW - 60_000;
        assert!(planner().plan(&blocks, NOW).is_empty());
    }

    #[test]
    fn overlaps_chain_into_one_group() {
        let blocks = vec![
            block(1, 0, 2 * H),
            block(2, H, 3 * H),
            block(3, 2 * H + 1, 4 * H),
            block(4, 5 * H, 6 * H),
        ];
        let plan = planner().plan(&blocks, NOW);
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(plan.jobs[0].blocks, ids(&[1, 2, 3]));
    }

    #[test]
    fn closed_windows_merge_by_level() {
        // Six 2h blocks fill [0, 12h); three more of [12h, 18h) are the open window.
        let mut blocks: Vec<PlanBlock> = (0..9)
            .map(|i| block(i as u64 + 1, i * 2 * H, (i + 1) * 2 * H))
            .collect();
        let now = 19 * H;
        let plan = planner().plan(&blocks, now);
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(plan.jobs[0].kind, JobKind::Level(12 * H));
        assert_eq!(plan.jobs[0].blocks, ids(&[1, 2, 3, 4, 5, 6]));
        // The open window closes with time even without a later block.
        blocks.truncate(6);
        assert!(planner().plan(&blocks, 13 * H).is_empty());
        assert_eq!(planner().plan(&blocks, 15 * H).jobs.len(), 1);
        // 12h blocks merge into 24h ones the same way.
        let a = merged(20, &blocks.iter().collect::<Vec<_>>());
        let b = block(21, 12 * H, 14 * H);
        let c = block(22, 24 * H, 26 * H);
        let plan = planner().plan(&[a, b, c], 30 * H);
        assert_eq!(plan.jobs[0].kind, JobKind::Level(24 * H));
        assert_eq!(plan.jobs[0].blocks, ids(&[20, 21]));
    }

    #[test]
    fn a_block_straddling_a_window_stays_out() {
        // [11h, 13h) is in no 12h window, but in the first 24h one with [0, 2h).
        let blocks = vec![block(1, 0, 2 * H), block(2, 11 * H, 13 * H)];
        let plan = planner().plan(&blocks, NOW);
        assert_eq!(plan.jobs[0].kind, JobKind::Level(24 * H));
        let blocks = vec![block(1, 0, 2 * H), block(2, 23 * H, 25 * H)];
        assert!(planner().plan(&blocks, NOW).is_empty());
    }

    #[test]
    fn merged_sources_are_superseded_after_a_crash_before_the_marks() {
        let (a, b, c) = (block(1, 0, 2 * H), block(2, 0, 2 * H), block(3, 0, 2 * H));
        let out = merged(9, &[&a, &b, &c]);
        let plan = planner().plan(&[a.clone(), b.clone(), c.clone(), out.clone()], NOW);
        assert_eq!(plan.superseded, ids(&[1, 2, 3]));
        assert!(plan.jobs.is_empty(), "{plan:?}");
        // A level output supersedes the merged blocks it was made of.
        let d = block(4, 2 * H, 4 * H);
        let level = merged(10, &[&out, &d]);
        let plan = planner().plan(&[out.clone(), d, level], NOW);
        assert_eq!(plan.superseded, vec![id(4), id(9)]);
        // Two compactions of the same sources: the newer stays.
        let twin = merged(11, &[&a, &b, &c]);
        let plan = planner().plan(&[out, twin], NOW);
        assert_eq!(plan.superseded, ids(&[9]));
        // Partly covered blocks are merged, not dropped.
        let ab = merged(12, &[&a, &b]);
        let plan = planner().plan(&[ab, c], NOW);
        assert!(plan.superseded.is_empty());
        assert_eq!(plan.jobs[0].blocks, vec![id(3), id(12)]);
    }
}
