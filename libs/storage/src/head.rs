//! In-memory head of one tenant: series with their open chunks, and the postings index.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hestia_model::{Labels, MatchOp, Matcher};
use parking_lot::Mutex;

use crate::histogram::{Histogram, HistogramAppender, MAX_HISTOGRAM_CHUNK_BYTES};
use crate::xor::XorAppender;
use crate::{ChunkData, ChunkEncoding, StorageError};

/// Hasher for keys that are already hashes or dense ids (a multiply spreads bits for hashbrown).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Like Prometheus, cut XOR chunks at this size even below the sample target (noisy floats).
pub(crate) const MAX_CHUNK_BYTES: usize = 1024;

/// The open chunk of a series: floats and histograms never share a chunk.
pub(crate) enum HeadChunk {
    Xor(XorAppender),
    Histogram(HistogramAppender),
}

impl HeadChunk {
    pub fn num_samples(&self) -> u16 {
        match self {
            HeadChunk::Xor(a) => a.num_samples(),
            HeadChunk::Histogram(a) => a.num_samples(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.num_samples() == 0
    }

    pub fn min_time(&self) -> i64 {
        match self {
            HeadChunk::Xor(a) => a.min_time(),
            HeadChunk::Histogram(a) => a.min_time(),
        }
    }

    pub fn max_time(&self) -> i64 {
        match self {
            HeadChunk::Xor(a) => a.max_time(),
            HeadChunk::Histogram(a) => a.max_time(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            HeadChunk::Xor(a) => a.bytes(),
            HeadChunk::Histogram(a) => a.bytes(),
        }
    }

    pub fn encoding(&self) -> ChunkEncoding {
        match self {
            HeadChunk::Xor(_) => ChunkEncoding::Xor,
            HeadChunk::Histogram(_) => ChunkEncoding::Histogram,
        }
    }

    pub fn is_full(&self, max_samples: u16) -> bool {
        let max_bytes = match self {
            HeadChunk::Xor(_) => MAX_CHUNK_BYTES,
            HeadChunk::Histogram(_) => MAX_HISTOGRAM_CHUNK_BYTES,
        };
        self.num_samples() >= max_samples || self.bytes().len() >= max_bytes
    }

    fn to_chunk_data(&self) -> ChunkData {
        ChunkData {
            encoding: self.encoding(),
            min_t: self.min_time(),
            max_t: self.max_time(),
            data: Bytes::copy_from_slice(self.bytes()),
        }
    }

    fn into_chunk_data(self) -> ChunkData {
        let (encoding, min_t, max_t) = (self.encoding(), self.min_time(), self.max_time());
        let data = match self {
            HeadChunk::Xor(a) => a.into_chunk().into_bytes(),
            HeadChunk::Histogram(a) => Bytes::from(a.into_bytes()),
        };
        ChunkData {
            encoding,
            min_t,
            max_t,
            data,
        }
    }
}

/// A sample to append: a float or a native histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Float(f64),
    Histogram(&'a Histogram),
}

/// The newest sample's value, for the duplicate rule.
#[derive(Debug, Clone)]
pub(crate) enum Last {
    Float(u64),
    Histogram(Box<Histogram>),
}

/// What happened to one appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Appended,
    /// Same timestamp and identical value bits as the last sample: ignored.
    Duplicate,
    OutOfOrder,
    DuplicateTimestamp,
}

pub(crate) struct Series {
    pub id: u64,
    pub labels: Labels,
    /// Time range of all samples, readable without the state lock (`MAX`/`MIN` when empty).
    min_t: AtomicI64,
    max_t: AtomicI64,
    /// Whether the series row is known to be on disk; until then every write that references the
    /// series carries the row too, so a WAL record never points at a missing series.
    pub row_durable: AtomicBool,
    pub state: Mutex<SeriesState>,
}

pub(crate) struct SeriesState {
    /// The open chunk.
    pub head: Option<HeadChunk>,
    /// How many samples of `head` the chunks column family already holds.
    pub head_persisted: u16,
    /// Chunks sealed by appends whose write has not completed yet; readers see them from here.
    pub sealed: Vec<ChunkData>,
    pub has_samples: bool,
    pub max_t: i64,
    pub last: Last,
    /// Timestamp of the newest stored exemplar (exemplars are kept in order per series).
    pub last_exemplar_t: i64,
}

impl Series {
    pub fn new(id: u64, labels: Labels, row_durable: bool) -> Self {
        Self {
            id,
            labels,
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            row_durable: AtomicBool::new(row_durable),
            state: Mutex::new(SeriesState {
                head: None,
                head_persisted: 0,
                sealed: Vec::new(),
                has_samples: false,
                max_t: i64::MIN,
                last: Last::Float(0),
                last_exemplar_t: i64::MIN,
            }),
        }
    }

    pub fn min_time(&self) -> i64 {
        self.min_t.load(Ordering::Acquire)
    }

    pub fn max_time(&self) -> i64 {
        self.max_t.load(Ordering::Acquire)
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_time() <= maxt && self.max_time() >= mint
    }

    /// Records persisted data found at recovery.
    pub fn set_recovered(&self, st: &mut SeriesState, min_t: i64, max_t: i64, last: Last) {
        st.has_samples = true;
        st.max_t = max_t;
        st.last = last;
        self.min_t.fetch_min(min_t, Ordering::AcqRel);
        self.max_t.store(max_t, Ordering::Release);
    }

    /// Applies Prometheus' in-order rules and appends. Chunks sealed on the way (the open chunk
    /// when the value type switches, or a chunk that became full) are pushed to `st.sealed` and
    /// to `sealed_out`.
    pub fn append(
        &self,
        st: &mut SeriesState,
        t: i64,
        v: Value<'_>,
        max_samples: u16,
        sealed_out: &mut Vec<ChunkData>,
    ) -> Result<Outcome, StorageError> {
        if st.has_samples {
            if t < st.max_t {
                return Ok(Outcome::OutOfOrder);
            }
            if t == st.max_t {
                let same = match (&st.last, v) {
                    (Last::Float(bits), Value::Float(f)) => *bits == f.to_bits(),
                    (Last::Histogram(h), Value::Histogram(n)) => h.same_bits(n),
                    _ => false,
                };
                return Ok(if same {
                    Outcome::Duplicate
                } else {
                    Outcome::DuplicateTimestamp
                });
            }
        }
        // A value of the other type seals the open chunk and starts one of its own.
        match v {
            Value::Float(f) => {
                if let Some(HeadChunk::Xor(a)) = &mut st.head {
                    a.append(t, f)?;
                } else {
                    self.seal(st, sealed_out);
                    let mut a = XorAppender::new();
                    a.append(t, f)?;
                    st.head = Some(HeadChunk::Xor(a));
                }
                st.last = Last::Float(f.to_bits());
            }
            Value::Histogram(h) => {
                if let Some(HeadChunk::Histogram(a)) = &mut st.head {
                    a.append(t, h)?;
                } else {
                    self.seal(st, sealed_out);
                    let mut a = HistogramAppender::new();
                    a.append(t, h)?;
                    st.head = Some(HeadChunk::Histogram(a));
                }
                st.last = Last::Histogram(Box::new(h.clone()));
            }
        }
        if !st.has_samples {
            self.min_t.fetch_min(t, Ordering::AcqRel);
            st.has_samples = true;
        }
        st.max_t = t;
        self.max_t.store(t, Ordering::Release);
        if st.head.as_ref().is_some_and(|h| h.is_full(max_samples)) {
            self.seal(st, sealed_out);
        }
        Ok(Outcome::Appended)
    }

    fn seal(&self, st: &mut SeriesState, sealed_out: &mut Vec<ChunkData>) {
        st.head_persisted = 0;
        if let Some(c) = st.head.take().filter(|h| !h.is_empty()) {
            let c = c.into_chunk_data();
            st.sealed.push(c.clone());
            sealed_out.push(c);
        }
    }

    /// Chunks readers must take from memory: pending sealed chunks and a copy of the head.
    pub fn memory_chunks(&self, mint: i64, maxt: i64) -> Vec<ChunkData> {
        let st = self.state.lock();
        let mut out: Vec<ChunkData> = st
            .sealed
            .iter()
            .filter(|c| c.min_t <= maxt && c.max_t >= mint)
            .cloned()
            .collect();
        if let Some(h) = &st.head {
            if !h.is_empty() && h.min_time() <= maxt && h.max_time() >= mint {
                out.push(h.to_chunk_data());
            }
        }
        out
    }
}

/// Series lookup and postings of one tenant.
#[derive(Default)]
pub(crate) struct Index {
    by_hash: IdMap<Arc<Series>>,
    /// Series whose label hash collides with the one in `by_hash`.
    collisions: IdMap<Vec<Arc<Series>>>,
    by_id: IdMap<Arc<Series>>,
    /// label name → value → sorted series ids.
    postings: HashMap<String, HashMap<String, Vec<u64>>>,
    /// All series ids, sorted.
    all: Vec<u64>,
}

fn insert_sorted(v: &mut Vec<u64>, id: u64) {
    match v.last() {
        Some(&last) if last > id => {
            if let Err(pos) = v.binary_search(&id) {
                v.insert(pos, id);
            }
        }
        _ => v.push(id),
    }
}

impl Index {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn count_where(&self, pred: impl Fn(&Series) -> bool) -> usize {
        self.by_id.values().filter(|s| pred(s)).count()
    }

    pub fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<Series>> {
        match self.by_hash.get(&hash) {
            Some(s) if s.labels == *labels => Some(s),
            Some(_) => self
                .collisions
                .get(&hash)
                .and_then(|v| v.iter().find(|s| s.labels == *labels)),
            None => None,
        }
    }

    pub fn by_id(&self, id: u64) -> Option<&Arc<Series>> {
        self.by_id.get(&id)
    }

    pub fn insert(&mut self, hash: u64, series: Arc<Series>) {
        for l in &series.labels {
            let ids = self
                .postings
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default();
            insert_sorted(ids, series.id);
        }
        insert_sorted(&mut self.all, series.id);
        self.by_id.insert(series.id, series.clone());
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(series);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(hash).or_default().push(series);
            }
        }
    }

    pub fn all_series(&self) -> Vec<Arc<Series>> {
        self.all
            .iter()
            .filter_map(|id| self.by_id.get(id).cloned())
            .collect()
    }

    pub fn resolve(&self, ids: &[u64]) -> Vec<Arc<Series>> {
        ids.iter()
            .filter_map(|id| self.by_id.get(id).cloned())
            .collect()
    }

    pub fn label_names(&self) -> impl Iterator<Item = (&String, &HashMap<String, Vec<u64>>)> {
        self.postings.iter()
    }

    pub fn values(&self, name: &str) -> Option<&HashMap<String, Vec<u64>>> {
        self.postings.get(name)
    }

    /// Sorted ids of series having label `name` with a value `pred` accepts.
    fn union_where(&self, name: &str, pred: impl Fn(&str) -> bool) -> Vec<u64> {
        let Some(values) = self.postings.get(name) else {
            return Vec::new();
        };
        let lists: Vec<&Vec<u64>> = values
            .iter()
            .filter(|(v, _)| pred(v))
            .map(|(_, ids)| ids)
            .collect();
        union(&lists)
    }

    /// Sorted ids of the series selected by `matchers`, with Prometheus semantics: a missing label
    /// has the value "", so matchers that accept "" also select series without the label.
    pub fn postings_for_matchers(&self, matchers: &[Matcher]) -> Vec<u64> {
        // Matchers that reject "" narrow the set by intersection; Equal ones first (cheapest).
        let mut narrowing: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches_empty()).collect();
        narrowing.sort_by_key(|m| m.op != MatchOp::Equal);
        let mut lists: Vec<Vec<u64>> = Vec::with_capacity(narrowing.len());
        for m in narrowing {
            let ids = match m.op {
                MatchOp::Equal => self
                    .postings
                    .get(&m.name)
                    .and_then(|v| v.get(&m.value))
                    .cloned()
                    .unwrap_or_default(),
                _ => self.union_where(&m.name, |v| m.matches(v)),
            };
            if ids.is_empty() {
                return Vec::new();
            }
            lists.push(ids);
        }
        lists.sort_by_key(|l| l.len());
        let mut result = match lists.split_first() {
            Some((first, rest)) => {
                let mut acc = first.clone();
                for l in rest {
                    acc = intersect(&acc, l);
                    if acc.is_empty() {
                        return acc;
                    }
                }
                acc
            }
            None => self.all.clone(),
        };
        // Matchers that accept "": drop series whose value for the label is rejected.
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            let excluded = match m.op {
                MatchOp::NotEqual => self
                    .postings
                    .get(&m.name)
                    .and_then(|v| v.get(&m.value))
                    .cloned()
                    .unwrap_or_default(),
                _ => self.union_where(&m.name, |v| !m.matches(v)),
            };
            result = subtract(&result, &excluded);
            if result.is_empty() {
                break;
            }
        }
        result
    }
}

fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    if b.is_empty() {
        return a.to_vec();
    }
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

fn union(lists: &[&Vec<u64>]) -> Vec<u64> {
    match lists {
        [] => Vec::new(),
        [one] => (*one).clone(),
        _ => {
            let mut out: Vec<u64> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for l in lists {
                out.extend_from_slice(l);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(sets: &[&[(&str, &str)]]) -> Index {
        let mut idx = Index::default();
        for (i, pairs) in sets.iter().enumerate() {
            let labels = Labels::from_pairs(pairs.iter().copied());
            let hash = labels.hash64();
            idx.insert(hash, Arc::new(Series::new(i as u64, labels, true)));
        }
        idx
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    #[test]
    fn matcher_semantics() {
        let idx = index(&[
            &[("__name__", "up"), ("job", "a")],
            &[("__name__", "up"), ("job", "b"), ("env", "prod")],
            &[("__name__", "up")],
            &[("__name__", "down"), ("job", "a")],
        ]);
        use MatchOp::*;
        let q = |ms: &[Matcher]| idx.postings_for_matchers(ms);
        assert_eq!(q(&[m(Equal, "__name__", "up")]), vec![0, 1, 2]);
        assert_eq!(
            q(&[m(Equal, "__name__", "up"), m(Equal, "job", "a")]),
            vec![0]
        );
        assert_eq!(
            q(&[m(Equal, "__name__", "up"), m(NotEqual, "job", "a")]),
            vec![1, 2]
        );
        assert_eq!(
            q(&[m(Equal, "__name__", "up"), m(Equal, "job", "")]),
            vec![2]
        );
        assert_eq!(
            q(&[m(Equal, "__name__", "up"), m(NotEqual, "job", "")]),
            vec![0, 1]
        );
        assert_eq!(q(&[m(RegexMatch, "job", "a|b")]), vec![0, 1, 3]);
        assert_eq!(
            q(&[m(Equal, "__name__", "up"), m(RegexMatch, "job", "a|")]),
            vec![0, 2]
        );
        assert_eq!(
            q(&[m(Equal, "__name__", "up"), m(RegexNoMatch, "job", "a")]),
            vec![1, 2]
        );
        assert_eq!(q(&[m(RegexNoMatch, "job", ".+")]), vec![2]);
        assert_eq!(q(&[m(RegexMatch, "env", ".*")]), vec![0, 1, 2, 3]);
        assert_eq!(q(&[m(Equal, "nope", "x")]), Vec::<u64>::new());
        assert_eq!(q(&[m(NotEqual, "nope", "x")]), vec![0, 1, 2, 3]);
        assert_eq!(q(&[]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn hash_collisions_compare_labels() {
        let mut idx = Index::default();
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "2")]);
        idx.insert(42, Arc::new(Series::new(1, a.clone(), true)));
        idx.insert(42, Arc::new(Series::new(2, b.clone(), true)));
        assert_eq!(idx.get(42, &a).map(|s| s.id), Some(1));
        assert_eq!(idx.get(42, &b).map(|s| s.id), Some(2));
        assert!(idx.get(42, &Labels::from_pairs([("a", "3")])).is_none());
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5, 8]), vec![3, 5]);
        assert_eq!(subtract(&[1, 3, 5, 7], &[3, 4, 5, 8]), vec![1, 7]);
        assert_eq!(union(&[&vec![1, 5], &vec![2, 5, 9]]), vec![1, 2, 5, 9]);
    }

    #[test]
    fn append_rules() {
        let s = Series::new(1, Labels::from_pairs([("a", "b")]), true);
        let mut st = s.state.lock();
        let mut sealed = Vec::new();
        let mut ap = |st: &mut SeriesState, t, v| {
            let before = sealed.len();
            let o = s.append(st, t, Value::Float(v), 3, &mut sealed).unwrap();
            (o, sealed.len() > before)
        };
        assert_eq!(ap(&mut st, 10, 1.0).0, Outcome::Appended);
        assert_eq!(ap(&mut st, 10, 1.0).0, Outcome::Duplicate);
        assert_eq!(ap(&mut st, 10, 2.0).0, Outcome::DuplicateTimestamp);
        assert_eq!(ap(&mut st, 9, 2.0).0, Outcome::OutOfOrder);
        assert!(!ap(&mut st, 11, 2.0).1);
        assert_eq!(ap(&mut st, 12, 3.0), (Outcome::Appended, true));
        assert_eq!((sealed[0].min_t, sealed[0].max_t), (10, 12));
        assert!(st.head.is_none());
        assert_eq!(st.sealed.len(), 1);
        drop(st);
        assert_eq!((s.min_time(), s.max_time()), (10, 12));
        assert_eq!(s.memory_chunks(0, 100).len(), 1);
        assert!(s.memory_chunks(13, 100).is_empty());
    }

    #[test]
    fn type_switch_seals_the_open_chunk() {
        let s = Series::new(1, Labels::from_pairs([("a", "b")]), true);
        let mut st = s.state.lock();
        let mut sealed = Vec::new();
        let h = Histogram {
            count: 1.0,
            ..Histogram::default()
        };
        s.append(&mut st, 1, Value::Float(1.0), 120, &mut sealed)
            .unwrap();
        let o = s.append(&mut st, 1, Value::Histogram(&h), 120, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::DuplicateTimestamp);
        let o = s.append(&mut st, 2, Value::Histogram(&h), 120, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::Appended);
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].encoding, ChunkEncoding::Xor);
        let o = s.append(&mut st, 2, Value::Histogram(&h), 120, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::Duplicate);
        s.append(&mut st, 3, Value::Float(2.0), 120, &mut sealed)
            .unwrap();
        assert_eq!(sealed[1].encoding, ChunkEncoding::Histogram);
        assert!(matches!(st.head, Some(HeadChunk::Xor(_))));
    }
}
