//! Raft log and state machine on one RocksDB. Column families: `logs` (index BE → JSON entry),
//! `raft` (vote, committed, last purged), `sm` (workspace id → JSON record, ring key → JSON entry,
//! HA elections, applied request ids with their outcomes (`requests.rs`), plus applied log id,
//! membership, revision and the current snapshot). Every write is synced:
//! an entry or vote is acknowledged only once on disk, and the state machine on disk never lags a
//! purged log.

// openraft's storage traits return its large `StorageError`; the helpers return it unboxed too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, StorageIOError,
};
use parking_lot::RwLock;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::raft_types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};
use crate::requests::{AppliedRequest, RequestId};
use crate::state::{Command, CommandResult, Outcome, RingEntry, State, Target, Workspace};
use hestia_ha::ClusterElection;

const CF_LOGS: &str = "logs";
const CF_RAFT: &str = "raft";
const CF_SM: &str = "sm";
/// Local (not replicated) column family of the audit log, see `audit.rs`.
pub(crate) const CF_AUDIT: &str = "audit";

const K_VOTE: &[u8] = b"vote";
const K_COMMITTED: &[u8] = b"committed";
const K_PURGED: &[u8] = b"last_purged";
const K_APPLIED: &[u8] = b"meta/applied";
const K_MEMBERSHIP: &[u8] = b"meta/membership";
const K_REVISION: &[u8] = b"meta/revision";
const K_SNAPSHOT: &[u8] = b"meta/snapshot";
/// The identities (accounts, users, keys, tokens): small, one value.
const K_IDENTITIES: &[u8] = b"identities";
const WS_PREFIX: &[u8] = b"ws/";
const RING_PREFIX: &[u8] = b"ring/";
/// `ha/<tenant>/<cluster>` → the cluster's election (tenant ids hold no `/`).
const HA_PREFIX: &[u8] = b"ha/";
/// `req/<request id hex>` → an applied request's outcome (`requests.rs`).
const REQ_PREFIX: &[u8] = b"req/";

fn io(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

/// Opens (creating if needed) the control plane's RocksDB.
pub fn open_db(dir: &Path) -> anyhow::Result<Arc<DB>> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOGS, CF_RAFT, CF_SM, CF_AUDIT]
        .into_iter()
        .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

fn get_json<T: for<'de> Deserialize<'de>>(
    db: &DB,
    cf_name: &str,
    key: &[u8],
    subject: ErrorSubject<u64>,
) -> Result<Option<T>, StorageError> {
    match db.get_cf(cf(db, cf_name), key) {
        Ok(Some(v)) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| io(subject, ErrorVerb::Read, e)),
        Ok(None) => Ok(None),
        Err(e) => Err(io(subject, ErrorVerb::Read, e)),
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("raft types serialize")
}

/// The Raft log.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        get_json(&self.db, CF_RAFT, K_PURGED, ErrorSubject::Store)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(i) => *i,
            std::ops::Bound::Excluded(i) => *i + 1,
            std::ops::Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_LOGS),
            IteratorMode::From(&start.to_be_bytes(), Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let idx = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| io(ErrorSubject::Logs, ErrorVerb::Read, "bad log key length"))?,
            );
            if !range.contains(&idx) {
                break;
            }
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?,
            );
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let mut iter = self
            .db
            .iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::End);
        let last = match iter.next() {
            Some(Ok((_, v))) => Some(
                serde_json::from_slice::<Entry>(&v)
                    .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?
                    .log_id,
            ),
            Some(Err(e)) => return Err(io(ErrorSubject::Logs, ErrorVerb::Read, e)),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT), K_VOTE, to_json(vote), &synced())
            .map_err(|e| io(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        get_json(&self.db, CF_RAFT, K_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.db
            .put_cf_opt(
                cf(&self.db, CF_RAFT),
                K_COMMITTED,
                to_json(&committed),
                &synced(),
            )
            .map_err(|e| io(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(
            get_json::<Option<LogId>>(&self.db, CF_RAFT, K_COMMITTED, ErrorSubject::Store)?
                .flatten(),
        )
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(
                cf(&self.db, CF_LOGS),
                e.log_id.index.to_be_bytes(),
                to_json(&e),
            );
        }
        let res = self.db.write_opt(batch, &synced());
        callback.log_io_completed(
            res.as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        res.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOGS),
            log_id.index.to_be_bytes(),
            u64::MAX.to_be_bytes(),
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_RAFT), K_PURGED, to_json(&log_id));
        batch.delete_range_cf(
            cf(&self.db, CF_LOGS),
            0u64.to_be_bytes(),
            (log_id.index + 1).to_be_bytes(),
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

/// The bytes of a snapshot: everything the state machine holds.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    applied: Option<LogId>,
    membership: StoredMembership,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// What the state machine holds in memory (a copy of the `sm` column family).
#[derive(Default)]
pub struct Applied {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: State,
}

/// The replicated state machine; cheap to clone, readers use `read`.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    inner: Arc<RwLock<Applied>>,
    revision: watch::Sender<u64>,
    /// Counts changes of any ring key (in memory only: it just wakes ring watchers).
    ring_changes: watch::Sender<u64>,
}

fn ha_key(tenant: &str, cluster: &str) -> Vec<u8> {
    [HA_PREFIX, tenant.as_bytes(), b"/", cluster.as_bytes()].concat()
}

/// Every record under `prefix` in the `sm` column family, decoded.
fn load_prefix<T: for<'de> Deserialize<'de>>(
    db: &DB,
    prefix: &[u8],
) -> anyhow::Result<Vec<(Vec<u8>, T)>> {
    let mut out = Vec::new();
    for item in db.prefix_iterator_cf(cf(db, CF_SM), prefix) {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k[prefix.len()..].to_vec(), serde_json::from_slice(&v)?));
    }
    Ok(out)
}

/// Applies one command to `state` and adds the records it changed to `batch`. Returns the
/// command's result and whether a ring key changed.
fn apply_command(
    state: &mut State,
    cmd: Command,
    sm: &rocksdb::ColumnFamily,
    batch: &mut WriteBatch,
) -> (CommandResult, bool) {
    match cmd.target() {
        Target::Workspace(id) => {
            let id = id.to_string();
            // A purge also forgets the workspace's tokens.
            let purge = matches!(cmd, Command::Purged { .. });
            let result = state.apply(cmd);
            let key = [WS_PREFIX, id.as_bytes()].concat();
            match state.workspaces.get(&id) {
                Some(w) => batch.put_cf(sm, key, to_json(w)),
                None => batch.delete_cf(sm, key),
            }
            if purge {
                batch.put_cf(sm, K_IDENTITIES, to_json(&state.identities));
            }
            (result, false)
        }
        Target::Identity => {
            let result = state.apply(cmd);
            batch.put_cf(sm, K_IDENTITIES, to_json(&state.identities));
            (result, false)
        }
        Target::Ring(key) => {
            let key = key.to_string();
            let before = state.rings.get(&key).map(|e| e.version);
            let result = state.apply(cmd);
            let entry = state.rings.get(&key);
            let changed = entry.filter(|e| before != Some(e.version));
            if let Some(e) = changed {
                batch.put_cf(sm, [RING_PREFIX, key.as_bytes()].concat(), to_json(e));
            }
            (result, changed.is_some())
        }
        Target::Ha => match cmd {
            // The table says which clusters changed: persist exactly those.
            Command::HaUpdate {
                updates,
                forget_before_ms,
            } => {
                let (outcomes, touched) = state.ha.apply_batch(&updates, forget_before_ms);
                for (tenant, cluster) in touched {
                    let k = ha_key(&tenant, &cluster);
                    match state.ha.get(&tenant, &cluster) {
                        Some(e) => batch.put_cf(
                            sm,
                            k,
                            to_json(&ClusterElection {
                                tenant,
                                cluster,
                                election: e.clone(),
                            }),
                        ),
                        None => batch.delete_cf(sm, k),
                    }
                }
                (Ok(Outcome::Ha(outcomes)), false)
            }
            other => (state.apply(other), false),
        },
    }
}

fn req_key(id: RequestId) -> Vec<u8> {
    [REQ_PREFIX, id.hex().as_bytes()].concat()
}

impl StateMachine {
    /// Loads the state machine from disk.
    pub fn open(db: Arc<DB>) -> anyhow::Result<Self> {
        let mut applied = Applied {
            applied: get_json(&db, CF_SM, K_APPLIED, ErrorSubject::StateMachine)?,
            membership: get_json(&db, CF_SM, K_MEMBERSHIP, ErrorSubject::StateMachine)?
                .unwrap_or_default(),
            state: State {
                revision: get_json(&db, CF_SM, K_REVISION, ErrorSubject::StateMachine)?
                    .unwrap_or(0),
                ..State::default()
            },
        };
        applied.state.identities =
            get_json(&db, CF_SM, K_IDENTITIES, ErrorSubject::StateMachine)?.unwrap_or_default();
        for (_, w) in load_prefix::<Workspace>(&db, WS_PREFIX)? {
            applied.state.workspaces.insert(w.id.clone(), w);
        }
        for (key, e) in load_prefix::<RingEntry>(&db, RING_PREFIX)? {
            applied.state.rings.insert(String::from_utf8(key)?, e);
        }
        for (_, e) in load_prefix::<ClusterElection>(&db, HA_PREFIX)? {
            applied.state.ha.insert(e);
        }
        for (_, r) in load_prefix::<AppliedRequest>(&db, REQ_PREFIX)? {
            applied.state.requests.insert(r);
        }
        let (revision, _) = watch::channel(applied.state.revision);
        Ok(Self {
            db,
            inner: Arc::new(RwLock::new(applied)),
            revision,
            ring_changes: watch::channel(0).0,
        })
    }

    /// Read access to the applied state (local: callers wanting linearizability ask Raft first).
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.read().state)
    }

    /// Notified with the state's revision after every applied workspace change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Notified after every change of a ring key.
    pub fn subscribe_rings(&self) -> watch::Receiver<u64> {
        self.ring_changes.subscribe()
    }

    fn write_all(&self, a: &Applied, batch: &mut WriteBatch) {
        let sm = cf(&self.db, CF_SM);
        batch.put_cf(sm, K_APPLIED, to_json(&a.applied));
        batch.put_cf(sm, K_MEMBERSHIP, to_json(&a.membership));
        batch.put_cf(sm, K_REVISION, to_json(&a.state.revision));
    }

    fn snapshot_of(a: &Applied) -> (SnapshotMeta, Vec<u8>) {
        let data = to_json(&SnapshotData {
            applied: a.applied,
            membership: a.membership.clone(),
            state: a.state.clone(),
        });
        let meta = SnapshotMeta {
            last_log_id: a.applied,
            last_membership: a.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                a.applied.map(|l| l.index).unwrap_or(0),
                a.state.revision
            ),
        };
        (meta, data)
    }

    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        self.db
            .put_cf_opt(cf(&self.db, CF_SM), K_SNAPSHOT, to_json(&stored), &synced())
            .map_err(|e| {
                io(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    e,
                )
            })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (meta, data) = Self::snapshot_of(&self.inner.read());
        self.save_snapshot(&meta, &data)?;
        crate::metrics::SNAPSHOTS.inc();
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.inner.read();
        Ok((a.applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        let mut batch = WriteBatch::default();
        let mut rings_changed = false;
        let revision = {
            let mut a = self.inner.write();
            let sm = cf(&self.db, CF_SM);
            for entry in entries {
                a.applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => results.push(Ok(Outcome::Nothing)),
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m);
                        results.push(Ok(Outcome::Nothing));
                    }
                    EntryPayload::Normal(p) => {
                        // A retried proposal answers its first outcome, unapplied.
                        if let Some(first) = p.id.and_then(|id| a.state.requests.get(id)) {
                            results.push(first.clone());
                            crate::metrics::REPLAYED.inc();
                            continue;
                        }
                        let (result, ring_changed) =
                            apply_command(&mut a.state, p.command, sm, &mut batch);
                        rings_changed |= ring_changed;
                        if let Some(id) = p.id {
                            for old in a.state.requests.record(id, p.at_ms, result.clone()) {
                                batch.delete_cf(sm, req_key(old));
                            }
                            let remembered = AppliedRequest {
                                id,
                                at_ms: p.at_ms,
                                result: result.clone(),
                            };
                            batch.put_cf(sm, req_key(id), to_json(&remembered));
                        }
                        results.push(result);
                    }
                }
            }
            self.write_all(&a, &mut batch);
            self.db
                .write_opt(batch, &synced())
                .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
            a.state.revision
        };
        self.revision
            .send_if_modified(|r| std::mem::replace(r, revision) != revision);
        if rings_changed {
            self.ring_changes.send_modify(|n| *n += 1);
        }
        crate::metrics::APPLIED.inc_by(results.len() as u64);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = serde_json::from_slice(&bytes).map_err(|e| {
            io(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        let revision = {
            let mut a = self.inner.write();
            let sm = cf(&self.db, CF_SM);
            let mut batch = WriteBatch::default();
            for id in a.state.workspaces.keys() {
                batch.delete_cf(sm, [WS_PREFIX, id.as_bytes()].concat());
            }
            for key in a.state.rings.keys() {
                batch.delete_cf(sm, [RING_PREFIX, key.as_bytes()].concat());
            }
            for e in a.state.ha.list(None) {
                batch.delete_cf(sm, ha_key(&e.tenant, &e.cluster));
            }
            for r in a.state.requests.list() {
                batch.delete_cf(sm, req_key(r.id));
            }
            // A snapshot replaces the state but watchers must still see the revision advance.
            let revision = a.state.revision.max(data.state.revision) + 1;
            *a = Applied {
                applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                state: State {
                    revision,
                    workspaces: data.state.workspaces,
                    rings: data.state.rings,
                    ha: data.state.ha,
                    identities: data.state.identities,
                    requests: data.state.requests,
                },
            };
            batch.put_cf(sm, K_IDENTITIES, to_json(&a.state.identities));
            for (id, w) in &a.state.workspaces {
                batch.put_cf(sm, [WS_PREFIX, id.as_bytes()].concat(), to_json(w));
            }
            for (key, e) in &a.state.rings {
                batch.put_cf(sm, [RING_PREFIX, key.as_bytes()].concat(), to_json(e));
            }
            for e in a.state.ha.list(None) {
                batch.put_cf(sm, ha_key(&e.tenant, &e.cluster), to_json(&e));
            }
            for r in a.state.requests.list() {
                batch.put_cf(sm, req_key(r.id), to_json(&r));
            }
            self.write_all(&a, &mut batch);
            self.db
                .write_opt(batch, &synced())
                .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
            revision
        };
        self.save_snapshot(meta, &bytes)?;
        self.revision.send_replace(revision);
        self.ring_changes.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored: Option<StoredSnapshot> =
            get_json(&self.db, CF_SM, K_SNAPSHOT, ErrorSubject::Snapshot(None))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::Proposal;
    use openraft::CommittedLeaderId;

    fn entry(index: u64, p: &Proposal) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(p.clone()),
        }
    }

    fn create(id: &str) -> Proposal {
        Proposal::new(Command::CreateWorkspace {
            id: id.into(),
            account: "000000000000".into(),
            alias: None,
            tags: Default::default(),
            client_token: None,
            now_ms: 1,
            max_per_account: 10,
        })
    }

    #[tokio::test]
    async fn a_repeated_request_id_answers_its_first_outcome_after_restart_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(open_db(dir.path()).unwrap()).unwrap();
        let p = create("ws-a");
        let first = sm.apply([entry(1, &p)]).await.unwrap();
        assert!(matches!(first[0], Ok(Outcome::Workspace(Some(_)))));
        // A new id with the same command is applied: the id is taken.
        let other = sm.apply([entry(2, &create("ws-a"))]).await.unwrap();
        assert!(matches!(
            other[0],
            Err(crate::state::CommandError::Conflict { .. })
        ));
        // The same id again: the first outcome, nothing applied.
        let revision = sm.read(|s| s.revision);
        assert_eq!(sm.apply([entry(3, &p)]).await.unwrap(), first);
        assert_eq!(sm.read(|s| s.revision), revision);

        // Reopened from disk, the id is still remembered.
        drop(sm);
        let mut sm = StateMachine::open(open_db(dir.path()).unwrap()).unwrap();
        assert_eq!(sm.apply([entry(4, &p)]).await.unwrap(), first);

        // A voter installing a snapshot of that state remembers it too.
        let snap = sm.build_snapshot().await.unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let mut other = StateMachine::open(open_db(dir2.path()).unwrap()).unwrap();
        other
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(other.apply([entry(5, &p)]).await.unwrap(), first);
        drop(other);
        let mut other = StateMachine::open(open_db(dir2.path()).unwrap()).unwrap();
        assert_eq!(other.apply([entry(6, &p)]).await.unwrap(), first);
        assert_eq!(other.read(|s| s.workspaces.len()), 1);
    }
}
