//! Ordered group commit.
//!
//! Writers enqueue their operations under a sequence number and wait. The first waiter becomes the
//! leader: it takes every queued entry, writes them as one RocksDB `WriteBatch` (one fsync), wakes
//! the group and hands leadership to the next waiter. Entries reach disk strictly in sequence
//! order, so after a crash the database holds a prefix of the enqueued entries — recovery relies
//! on that (a WAL record is never durable without the records and sealed chunks before it).

use parking_lot::{Condvar, Mutex, MutexGuard};
use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cf {
    Wal,
    Series,
    Chunks,
    OooChunks,
    Metadata,
    Meta,
    Exemplars,
    Idle,
    Blocks,
}

impl Cf {
    pub(crate) const ALL: [Cf; 9] = [
        Cf::Wal,
        Cf::Series,
        Cf::Chunks,
        Cf::OooChunks,
        Cf::Metadata,
        Cf::Meta,
        Cf::Exemplars,
        Cf::Idle,
        Cf::Blocks,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Wal => "wal",
            Cf::Series => "series",
            Cf::Chunks => "chunks",
            Cf::OooChunks => "ooo_chunks",
            Cf::Metadata => "metadata",
            Cf::Meta => "meta",
            Cf::Exemplars => "exemplars",
            Cf::Idle => "idle",
            Cf::Blocks => "blocks",
        }
    }
}

pub(crate) fn cf(db: &DB, c: Cf) -> Result<&rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(c.name()).ok_or_else(|| {
        StorageError::corrupt("database", format!("column family {} missing", c.name()))
    })
}

#[derive(Debug)]
pub(crate) enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

impl Op {
    fn size(&self) -> usize {
        match self {
            Op::Put(_, k, v) | Op::DeleteRange(_, k, v) => k.len() + v.len(),
            Op::Delete(_, k) => k.len(),
        }
    }
}

pub(crate) fn write_batch(db: &DB, ops: &[Op], sync: bool) -> Result<(), StorageError> {
    let mut b = WriteBatch::default();
    for op in ops {
        match op {
            Op::Put(c, k, v) => b.put_cf(cf(db, *c)?, k, v),
            Op::Delete(c, k) => b.delete_cf(cf(db, *c)?, k),
            Op::DeleteRange(c, from, to) => b.delete_range_cf(cf(db, *c)?, from, to),
        }
    }
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    db.write_opt(b, &wo)?;
    Ok(())
}

struct State {
    next_seq: u64,
    queue: Vec<(u64, Vec<Op>)>,
    leader: bool,
    /// Every entry with a smaller sequence number has been written (or failed).
    done: u64,
    /// First sequence number of the group whose write failed, and why.
    failed: Option<(u64, String)>,
}

pub(crate) struct Committer {
    st: Mutex<State>,
    cv: Condvar,
    sync: bool,
}

impl Committer {
    pub(crate) fn new(next_seq: u64, sync: bool) -> Self {
        Self {
            st: Mutex::new(State {
                next_seq,
                queue: Vec::new(),
                leader: false,
                done: next_seq,
                failed: None,
            }),
            cv: Condvar::new(),
            sync,
        }
    }

    /// The sequence number the next entry will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.st.lock().next_seq
    }

    pub(crate) fn failure(&self) -> Option<StorageError> {
        self.st
            .lock()
            .failed
            .as_ref()
            .map(|(_, e)| StorageError::WriteFailed(e.clone()))
    }

    /// Queues the operations `build(seq)` returns under the next sequence number.
    pub(crate) fn enqueue(&self, build: impl FnOnce(u64) -> Vec<Op>) -> Result<u64, StorageError> {
        let mut st = self.st.lock();
        if let Some((_, e)) = &st.failed {
            return Err(StorageError::WriteFailed(e.clone()));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let ops = build(seq);
        st.queue.push((seq, ops));
        Ok(seq)
    }

    /// Blocks until entry `seq` is durable, leading a group write if no one else is.
    pub(crate) fn wait(&self, db: &DB, seq: u64) -> Result<(), StorageError> {
        let mut st = self.st.lock();
        loop {
            if st.done > seq {
                return match &st.failed {
                    Some((first, e)) if *first <= seq => Err(StorageError::WriteFailed(e.clone())),
                    _ => Ok(()),
                };
            }
            if !st.leader && !st.queue.is_empty() {
                self.lead(db, &mut st);
                continue;
            }
            self.cv.wait(&mut st);
        }
    }

    fn lead(&self, db: &DB, st: &mut MutexGuard<'_, State>) {
        st.leader = true;
        let group = std::mem::take(&mut st.queue);
        let (first, end) = match (group.first(), group.last()) {
            (Some(f), Some(l)) => (f.0, l.0 + 1),
            _ => {
                st.leader = false;
                return;
            }
        };
        let already_failed = st.failed.is_some();
        let res = MutexGuard::unlocked(st, || {
            if already_failed {
                return Ok(());
            }
            let mut ops = Vec::with_capacity(group.iter().map(|(_, o)| o.len()).sum());
            let mut bytes = 0;
            for (_, entry) in group {
                bytes += entry.iter().map(Op::size).sum::<usize>();
                ops.extend(entry);
            }
            tracing::trace!(ops = ops.len(), bytes, "group commit");
            write_batch(db, &ops, self.sync)
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "WAL write failed; refusing further writes until reopened");
            if st.failed.is_none() {
                st.failed = Some((first, e.to_string()));
            }
        }
        st.done = end;
        st.leader = false;
        self.cv.notify_all();
    }
}
