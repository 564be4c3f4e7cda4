//! In-memory head of one tenant: series with their open chunks, and the postings index.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hestia_model::{Labels, MatchOp, Matcher};
use parking_lot::Mutex;

use crate::histogram::{Histogram, HistogramAppender, MAX_HISTOGRAM_CHUNK_BYTES};
use crate::xor::{XorAppender, XorIter, XorSeek};
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

    fn seeks(&self) -> Option<Arc<[XorSeek]>> {
        match self {
            HeadChunk::Xor(a) => a.seeks().cloned(),
            HeadChunk::Histogram(_) => None,
        }
    }

    fn to_chunk_data(&self) -> ChunkData {
        ChunkData {
            encoding: self.encoding(),
            min_t: self.min_time(),
            max_t: self.max_time(),
            data: Bytes::copy_from_slice(self.bytes()),
            seeks: self.seeks(),
        }
    }

    fn into_chunk_data(self) -> ChunkData {
        let (encoding, min_t, max_t) = (self.encoding(), self.min_time(), self.max_time());
        let seeks = self.seeks();
        let data = match self {
            HeadChunk::Xor(a) => a.into_chunk().into_bytes(),
            HeadChunk::Histogram(a) => Bytes::from(a.into_bytes()),
        };
        ChunkData {
            encoding,
            min_t,
            max_t,
            data,
            seeks,
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
    /// Older than the newest sample, within the out-of-order window: in the out-of-order head.
    AppendedOutOfOrder,
    /// Same timestamp and identical value bits as a stored sample: ignored.
    Duplicate,
    OutOfOrder,
    /// Older than the newest sample by more than the (non-zero) out-of-order window.
    TooOld,
    DuplicateTimestamp,
}

/// Out-of-order samples per out-of-order chunk (Prometheus' `out_of_order_cap` default).
pub(crate) const OOO_CHUNK_SAMPLES: usize = 32;

/// The open out-of-order chunk of a series: float samples sorted by time, unique timestamps.
/// It is stored as an XOR chunk under `(series, no)` in the `ooo_chunks` family, so out-of-order
/// chunks never share a key with each other or with in-order chunks, whatever their times.
pub(crate) struct OooHead {
    pub no: u32,
    /// (timestamp, value bits).
    pub samples: Vec<(i64, u64)>,
    /// How many of `samples` the `ooo_chunks` family already holds under `no`.
    pub persisted: usize,
}

impl OooHead {
    pub fn to_chunk_data(&self) -> ChunkData {
        let mut a = XorAppender::with_capacity(self.samples.len() * 4 + 16);
        for &(t, bits) in &self.samples {
            // At most OOO_CHUNK_SAMPLES samples: appending cannot fail.
            let _ = a.append(t, f64::from_bits(bits));
        }
        ChunkData {
            encoding: ChunkEncoding::Xor,
            min_t: a.min_time(),
            max_t: a.max_time(),
            data: a.into_chunk().into_bytes(),
            seeks: None,
        }
    }
}

/// Chunks sealed by appends, to be written with the append's batch.
#[derive(Default)]
pub(crate) struct Sealed {
    pub in_order: Vec<ChunkData>,
    /// (out-of-order chunk number, chunk).
    pub out_of_order: Vec<(u32, ChunkData)>,
}

/// What a reader takes from memory for one series.
pub(crate) struct MemoryChunks {
    pub chunks: Vec<ChunkData>,
    /// Start of the oldest in-order chunk in memory. In-order chunks never overlap and memory
    /// holds the newest ones, so no chunk on disk has samples at or after it (a checkpoint's
    /// copy of the open chunk starts exactly there and is superseded).
    pub in_order_from: Option<i64>,
    /// Whether the `ooo_chunks` family may hold chunks of the series.
    pub ooo_on_disk: bool,
    /// Out-of-order chunk numbers whose memory copy is in `chunks` (disk copies are older).
    pub ooo_in_memory: Vec<u32>,
}

pub(crate) struct Series {
    pub id: u64,
    pub labels: Labels,
    /// `labels`' key (`Labels::write_key`) in one allocation: a lookup compares it with one
    /// memcmp instead of following a pointer per label name and value.
    pub key: Box<[u8]>,
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
    /// The newest in-order chunk, already on disk, kept while no head follows it (a full chunk
    /// is sealed at its last sample), so that reads of recent samples need no disk seek.
    pub last_sealed: Option<ChunkData>,
    pub has_samples: bool,
    pub max_t: i64,
    pub last: Last,
    /// Timestamp of the newest stored exemplar (exemplars are kept in order per series).
    pub last_exemplar_t: i64,
    /// The open out-of-order chunk.
    pub ooo: Option<Box<OooHead>>,
    /// Number of the next out-of-order chunk (0: the series never had one).
    pub ooo_next_no: u32,
    /// Out-of-order chunks sealed by appends whose write has not completed yet.
    pub ooo_sealed: Vec<(u32, ChunkData)>,
}

impl Series {
    pub fn new(id: u64, labels: Labels, row_durable: bool) -> Self {
        let mut key = Vec::new();
        labels.write_key(&mut key);
        Self {
            id,
            labels,
            key: key.into_boxed_slice(),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            row_durable: AtomicBool::new(row_durable),
            state: Mutex::new(SeriesState {
                head: None,
                head_persisted: 0,
                sealed: Vec::new(),
                last_sealed: None,
                has_samples: false,
                max_t: i64::MIN,
                last: Last::Float(0),
                last_exemplar_t: i64::MIN,
                ooo: None,
                ooo_next_no: 0,
                ooo_sealed: Vec::new(),
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

    /// Whether every sample in memory is also in the chunk families (nothing waits for a write
    /// or a checkpoint), so the series can leave memory.
    pub fn fully_persisted(st: &SeriesState) -> bool {
        st.sealed.is_empty()
            && st.ooo_sealed.is_empty()
            && st
                .head
                .as_ref()
                .is_none_or(|h| h.num_samples() == st.head_persisted)
            && st
                .ooo
                .as_ref()
                .is_none_or(|h| h.samples.len() == h.persisted)
    }

    /// Records persisted data found at recovery.
    pub fn set_recovered(&self, st: &mut SeriesState, min_t: i64, max_t: i64, last: Last) {
        st.has_samples = true;
        st.max_t = max_t;
        st.last = last;
        self.min_t.fetch_min(min_t, Ordering::AcqRel);
        self.max_t.store(max_t, Ordering::Release);
    }

    /// Applies Prometheus' rules and appends: in order, or a float within `ooo_window` ms of the
    /// newest sample into the out-of-order head. Chunks sealed on the way (the open chunk when the
    /// value type switches, or a chunk that became full) are pushed to `st.sealed` /
    /// `st.ooo_sealed` and to `sealed_out`.
    pub fn append(
        &self,
        st: &mut SeriesState,
        t: i64,
        v: Value<'_>,
        max_samples: u16,
        ooo_window: i64,
        sealed_out: &mut Sealed,
    ) -> Result<Outcome, StorageError> {
        if st.has_samples {
            if t < st.max_t {
                return Ok(match v {
                    Value::Float(f)
                        if ooo_window > 0 && t >= st.max_t.saturating_sub(ooo_window) =>
                    {
                        self.append_out_of_order(st, t, f, sealed_out)
                    }
                    Value::Float(_) if ooo_window > 0 => Outcome::TooOld,
                    _ => Outcome::OutOfOrder,
                });
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

    fn seal(&self, st: &mut SeriesState, sealed_out: &mut Sealed) {
        st.head_persisted = 0;
        st.last_sealed = None;
        if let Some(c) = st.head.take().filter(|h| !h.is_empty()) {
            let c = c.into_chunk_data();
            st.sealed.push(c.clone());
            sealed_out.in_order.push(c);
        }
    }

    /// Records out-of-order chunk `no` found on disk at recovery; the newest one, if not full,
    /// becomes the open out-of-order chunk again.
    pub fn recover_out_of_order(&self, no: u32, min_t: i64, data: &[u8]) {
        let mut st = self.state.lock();
        self.min_t.fetch_min(min_t, Ordering::AcqRel);
        if no < st.ooo_next_no {
            return;
        }
        st.ooo_next_no = no + 1;
        st.ooo = None;
        let Ok(it) = XorIter::new(data) else {
            tracing::error!(
                series = self.id,
                no,
                "corrupt out-of-order chunk; not resuming it"
            );
            return;
        };
        let samples: Vec<(i64, u64)> = it.map(|(t, v)| (t, v.to_bits())).collect();
        if samples.len() < OOO_CHUNK_SAMPLES {
            st.ooo = Some(Box::new(OooHead {
                no,
                persisted: samples.len(),
                samples,
            }));
        }
    }

    /// Puts a float older than the newest sample into the out-of-order head (any age: callers
    /// check the window; WAL replay re-applies what was accepted). A timestamp already in the
    /// out-of-order head, or in the open in-order chunk, is a duplicate or a conflict as in order.
    pub fn append_out_of_order(
        &self,
        st: &mut SeriesState,
        t: i64,
        f: f64,
        sealed_out: &mut Sealed,
    ) -> Outcome {
        let bits = f.to_bits();
        let same = |stored: u64| {
            if stored == bits {
                Outcome::Duplicate
            } else {
                Outcome::DuplicateTimestamp
            }
        };
        if let Some(HeadChunk::Xor(a)) = &st.head {
            if t >= a.min_time() {
                if let Some((_, v)) = a.iter().find(|(at, _)| *at == t) {
                    return same(v.to_bits());
                }
            }
        }
        let head = match &mut st.ooo {
            Some(h) => h,
            None => {
                let no = st.ooo_next_no;
                st.ooo_next_no += 1;
                st.ooo.insert(Box::new(OooHead {
                    no,
                    samples: Vec::with_capacity(OOO_CHUNK_SAMPLES),
                    persisted: 0,
                }))
            }
        };
        match head.samples.binary_search_by_key(&t, |s| s.0) {
            Ok(i) => return same(head.samples[i].1),
            Err(i) => head.samples.insert(i, (t, bits)),
        }
        self.min_t.fetch_min(t, Ordering::AcqRel);
        if head.samples.len() >= OOO_CHUNK_SAMPLES {
            if let Some(h) = st.ooo.take() {
                let c = h.to_chunk_data();
                st.ooo_sealed.push((h.no, c.clone()));
                sealed_out.out_of_order.push((h.no, c));
            }
        }
        Outcome::AppendedOutOfOrder
    }

    /// Forgets the in-memory chunks whose samples are all before `t` (their disk copies are being
    /// dropped); the series' time range then starts at `t` at the earliest.
    pub fn drop_before(&self, t: i64) {
        let mut st = self.state.lock();
        if st.head.as_ref().is_some_and(|h| h.max_time() < t) {
            st.head = None;
            st.head_persisted = 0;
        }
        if st.last_sealed.as_ref().is_some_and(|c| c.max_t < t) {
            st.last_sealed = None;
        }
        if st
            .ooo
            .as_ref()
            .is_some_and(|h| h.samples.last().is_some_and(|s| s.0 < t))
        {
            st.ooo = None;
        }
        self.min_t.fetch_max(t, Ordering::AcqRel);
    }

    /// Keys of the chunks memory holds a newer copy of: in-order min times, out-of-order numbers.
    pub fn memory_chunk_keys(&self) -> (Vec<i64>, Vec<u32>) {
        let st = self.state.lock();
        let in_order = st
            .sealed
            .iter()
            .chain(&st.last_sealed)
            .map(|c| c.min_t)
            .chain(
                st.head
                    .as_ref()
                    .filter(|h| !h.is_empty())
                    .map(|h| h.min_time()),
            )
            .collect();
        let ooo = st
            .ooo_sealed
            .iter()
            .map(|(no, _)| *no)
            .chain(st.ooo.as_ref().map(|h| h.no))
            .collect();
        (in_order, ooo)
    }

    /// The newest sample as a one-sample chunk, when it is a float in `[mint, maxt]`: then it is
    /// the newest sample at or before `maxt` (out-of-order samples are older than it).
    pub fn newest_float_chunk(&self, mint: i64, maxt: i64) -> Option<ChunkData> {
        let st = self.state.lock();
        let Last::Float(bits) = st.last else {
            return None;
        };
        if !st.has_samples || st.max_t < mint || st.max_t > maxt {
            return None;
        }
        let mut a = XorAppender::with_capacity(24);
        a.append(st.max_t, f64::from_bits(bits)).ok()?;
        Some(ChunkData {
            encoding: ChunkEncoding::Xor,
            min_t: st.max_t,
            max_t: st.max_t,
            data: a.into_chunk().into_bytes(),
            seeks: None,
        })
    }

    /// Chunks readers must take from memory: pending sealed chunks and copies of the heads.
    pub fn memory_chunks(&self, mint: i64, maxt: i64) -> MemoryChunks {
        let st = self.state.lock();
        let overlaps = |c: &ChunkData| c.min_t <= maxt && c.max_t >= mint;
        let mut chunks: Vec<ChunkData> = st
            .sealed
            .iter()
            .chain(&st.last_sealed)
            .filter(|c| overlaps(c))
            .cloned()
            .collect();
        let mut in_order_from = st
            .sealed
            .iter()
            .chain(&st.last_sealed)
            .map(|c| c.min_t)
            .min();
        if let Some(h) = st.head.as_ref().filter(|h| !h.is_empty()) {
            in_order_from = Some(in_order_from.map_or(h.min_time(), |t| t.min(h.min_time())));
            if h.min_time() <= maxt && h.max_time() >= mint {
                chunks.push(h.to_chunk_data());
            }
        }
        let mut ooo_in_memory = Vec::new();
        for (no, c) in &st.ooo_sealed {
            ooo_in_memory.push(*no);
            if overlaps(c) {
                chunks.push(c.clone());
            }
        }
        if let Some(h) = st.ooo.as_ref().filter(|h| !h.samples.is_empty()) {
            ooo_in_memory.push(h.no);
            let c = h.to_chunk_data();
            if overlaps(&c) {
                chunks.push(c);
            }
        }
        MemoryChunks {
            chunks,
            in_order_from,
            ooo_on_disk: st.ooo_next_no > 0,
            ooo_in_memory,
        }
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

    /// The series with label key `key` (`Labels::write_key`), whose hash is `hash`.
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&Arc<Series>> {
        match self.by_hash.get(&hash) {
            Some(s) if *s.key == *key => Some(s),
            Some(_) => self
                .collisions
                .get(&hash)
                .and_then(|v| v.iter().find(|s| *s.key == *key)),
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

    /// Takes a series out of memory (it stays on disk); true if it was here.
    pub fn remove(&mut self, hash: u64, series: &Series) -> bool {
        if self.by_id.remove(&series.id).is_none() {
            return false;
        }
        for l in &series.labels {
            if let Some(values) = self.postings.get_mut(&l.name) {
                if let Some(ids) = values.get_mut(&l.value) {
                    if let Ok(pos) = ids.binary_search(&series.id) {
                        ids.remove(pos);
                    }
                    if ids.is_empty() {
                        values.remove(&l.value);
                    }
                }
                if values.is_empty() {
                    self.postings.remove(&l.name);
                }
            }
        }
        if let Ok(pos) = self.all.binary_search(&series.id) {
            self.all.remove(pos);
        }
        let primary = self.by_hash.get(&hash).is_some_and(|s| s.id == series.id);
        let others = self.collisions.get_mut(&hash);
        if primary {
            match others.and_then(|v| v.pop()) {
                Some(next) => {
                    self.by_hash.insert(hash, next);
                }
                None => {
                    self.by_hash.remove(&hash);
                }
            }
        } else if let Some(v) = others {
            v.retain(|s| s.id != series.id);
        }
        if self.collisions.get(&hash).is_some_and(|v| v.is_empty()) {
            self.collisions.remove(&hash);
        }
        true
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
    fn remove_undoes_insert() {
        let mut idx = index(&[
            &[("__name__", "up"), ("job", "a")],
            &[("__name__", "up"), ("job", "b")],
        ]);
        let a = idx.by_id(0).unwrap().clone();
        assert!(idx.remove(a.labels.hash64(), &a));
        assert!(!idx.remove(a.labels.hash64(), &a));
        assert_eq!(idx.len(), 1);
        assert!(idx.get(a.labels.hash64(), &a.key).is_none());
        assert!(idx.values("job").unwrap().get("a").is_none());
        let m = Matcher::new(MatchOp::Equal, "__name__", "up").unwrap();
        assert_eq!(idx.postings_for_matchers(&[m]), vec![1]);
        // A colliding series takes the removed one's place.
        let mut idx = Index::default();
        let x = Arc::new(Series::new(1, Labels::from_pairs([("a", "1")]), true));
        let y = Arc::new(Series::new(2, Labels::from_pairs([("a", "2")]), true));
        idx.insert(7, x.clone());
        idx.insert(7, y.clone());
        assert!(idx.remove(7, &x));
        assert_eq!(idx.get(7, &y.key).map(|s| s.id), Some(2));
        assert_eq!(idx.get(7, &x.key).map(|s| s.id), None);
        assert!(idx.remove(7, &y));
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn hash_collisions_compare_labels() {
        let mut idx = Index::default();
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "2")]);
        idx.insert(42, Arc::new(Series::new(1, a.clone(), true)));
        idx.insert(42, Arc::new(Series::new(2, b.clone(), true)));
        let key = |l: &Labels| {
            let mut k = Vec::new();
            l.write_key(&mut k);
            k
        };
        assert_eq!(idx.get(42, &key(&a)).map(|s| s.id), Some(1));
        assert_eq!(idx.get(42, &key(&b)).map(|s| s.id), Some(2));
        assert!(idx
            .get(42, &key(&Labels::from_pairs([("a", "3")])))
            .is_none());
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
        let mut sealed = Sealed::default();
        let mut ap = |st: &mut SeriesState, t, v| {
            let before = sealed.in_order.len();
            let o = s.append(st, t, Value::Float(v), 3, 0, &mut sealed).unwrap();
            (o, sealed.in_order.len() > before)
        };
        assert_eq!(ap(&mut st, 10, 1.0).0, Outcome::Appended);
        assert_eq!(ap(&mut st, 10, 1.0).0, Outcome::Duplicate);
        assert_eq!(ap(&mut st, 10, 2.0).0, Outcome::DuplicateTimestamp);
        assert_eq!(ap(&mut st, 9, 2.0).0, Outcome::OutOfOrder);
        assert!(!ap(&mut st, 11, 2.0).1);
        assert_eq!(ap(&mut st, 12, 3.0), (Outcome::Appended, true));
        assert_eq!(
            (sealed.in_order[0].min_t, sealed.in_order[0].max_t),
            (10, 12)
        );
        assert!(st.head.is_none());
        assert_eq!(st.sealed.len(), 1);
        drop(st);
        assert_eq!((s.min_time(), s.max_time()), (10, 12));
        assert_eq!(s.memory_chunks(0, 100).chunks.len(), 1);
        assert!(s.memory_chunks(13, 100).chunks.is_empty());
        // The sealed chunk, still pending, is the oldest in-order chunk in memory; then a head.
        assert_eq!(s.memory_chunks(13, 100).in_order_from, Some(10));
        let mut st = s.state.lock();
        let o = s.append(&mut st, 20, Value::Float(1.0), 3, 0, &mut Sealed::default());
        assert_eq!(o.unwrap(), Outcome::Appended);
        st.sealed.clear();
        drop(st);
        assert_eq!(s.memory_chunks(0, 100).in_order_from, Some(20));
    }

    #[test]
    fn out_of_order_window() {
        let s = Series::new(1, Labels::from_pairs([("a", "b")]), true);
        let mut st = s.state.lock();
        let mut sealed = Sealed::default();
        let mut ap = |st: &mut SeriesState, t, v| {
            s.append(st, t, Value::Float(v), 120, 100, &mut sealed)
                .unwrap()
        };
        assert_eq!(ap(&mut st, 1000, 1.0), Outcome::Appended);
        assert_eq!(ap(&mut st, 1010, 2.0), Outcome::Appended);
        // Within the window of the newest sample (1010): accepted out of order.
        assert_eq!(ap(&mut st, 950, 3.0), Outcome::AppendedOutOfOrder);
        assert_eq!(ap(&mut st, 910, 4.0), Outcome::AppendedOutOfOrder);
        assert_eq!(ap(&mut st, 909, 4.0), Outcome::TooOld);
        // Re-sends: of an out-of-order sample, and of an older in-order one.
        assert_eq!(ap(&mut st, 950, 3.0), Outcome::Duplicate);
        assert_eq!(ap(&mut st, 950, 9.0), Outcome::DuplicateTimestamp);
        assert_eq!(ap(&mut st, 1000, 1.0), Outcome::Duplicate);
        assert_eq!(ap(&mut st, 1000, 5.0), Outcome::DuplicateTimestamp);
        let ooo = st.ooo.as_ref().unwrap();
        assert_eq!(
            ooo.samples.iter().map(|x| x.0).collect::<Vec<_>>(),
            [910, 950]
        );
        assert_eq!(st.max_t, 1010);
        drop(st);
        assert_eq!(s.min_time(), 910);
        let mem = s.memory_chunks(0, 2000);
        assert_eq!(mem.chunks.len(), 2);
        assert_eq!(mem.ooo_in_memory, vec![0]);
        assert!(mem.ooo_on_disk);
        // The out-of-order chunk is sealed at 32 samples with its number.
        let mut st = s.state.lock();
        for t in 0..30 {
            let o = s.append(&mut st, 960 + t, Value::Float(0.5), 120, 100, &mut sealed);
            assert_eq!(o.unwrap(), Outcome::AppendedOutOfOrder);
        }
        assert!(st.ooo.is_none());
        assert_eq!(sealed.out_of_order.len(), 1);
        let (no, c) = &sealed.out_of_order[0];
        assert_eq!((*no, c.min_t, c.max_t), (0, 910, 989));
        let o = s.append(&mut st, 990, Value::Float(0.5), 120, 100, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::AppendedOutOfOrder);
        assert_eq!(st.ooo.as_ref().map(|h| h.no), Some(1));
        // Native histograms are never taken out of order.
        let h = Histogram::default();
        let o = s.append(&mut st, 1005, Value::Histogram(&h), 120, 100, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::OutOfOrder);
    }

    #[test]
    fn type_switch_seals_the_open_chunk() {
        let s = Series::new(1, Labels::from_pairs([("a", "b")]), true);
        let mut st = s.state.lock();
        let mut sealed = Sealed::default();
        let h = Histogram {
            count: 1.0,
            ..Histogram::default()
        };
        s.append(&mut st, 1, Value::Float(1.0), 120, 0, &mut sealed)
            .unwrap();
        let o = s.append(&mut st, 1, Value::Histogram(&h), 120, 0, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::DuplicateTimestamp);
        let o = s.append(&mut st, 2, Value::Histogram(&h), 120, 0, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::Appended);
        assert_eq!(sealed.in_order.len(), 1);
        assert_eq!(sealed.in_order[0].encoding, ChunkEncoding::Xor);
        let o = s.append(&mut st, 2, Value::Histogram(&h), 120, 0, &mut sealed);
        assert_eq!(o.unwrap(), Outcome::Duplicate);
        s.append(&mut st, 3, Value::Float(2.0), 120, 0, &mut sealed)
            .unwrap();
        assert_eq!(sealed.in_order[1].encoding, ChunkEncoding::Histogram);
        assert!(matches!(st.head, Some(HeadChunk::Xor(_))));
    }
}
