//! At-most-once application of proposals (Raft client sessions, Ongaro's thesis §6.3).
//!
//! Every write is proposed as a [`Proposal`]: the command plus a request id chosen once by the
//! voter that first receives the call. Forwarding to the leader and every retry after a timeout
//! or a change of leader reuse that id. The state machine remembers the outcome of recently
//! applied ids ([`AppliedRequests`]) and answers a repeated id with the first outcome without
//! applying the command again, so a command the old leader committed and the caller retried is
//! applied once.
//!
//! The table is bounded by count ([`MAX_REQUESTS`]) and age ([`MAX_AGE_MS`], measured with the
//! proposers' clocks carried in the proposals, so every voter evicts the same ids). A retry loop
//! gives up after `node::LEADER_WAIT` (10 s), far inside the age bound. The table is part of the
//! replicated state: persisted with it (`req/<id>` keys, see `store.rs`) and in snapshots.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::state::{Command, CommandResult};

/// How many applied request ids are remembered.
pub const MAX_REQUESTS: usize = 10_000;
/// How long an applied request id is remembered (by the newest proposal's clock).
pub const MAX_AGE_MS: i64 = 10 * 60 * 1000;

/// A request id: 128 random bits, hex in logs and on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u128);

impl RequestId {
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The persisted key suffix: 32 hex digits.
    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 32 {
            return Err(serde::de::Error::custom(
                "request id: 32 hex digits expected",
            ));
        }
        u128::from_str_radix(&s, 16)
            .map(RequestId)
            .map_err(serde::de::Error::custom)
    }
}

/// What a voter proposes: the command, its request id, and the proposer's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ProposalRepr")]
pub struct Proposal {
    /// `None` only for entries logged before proposals carried ids (applied, not remembered).
    pub id: Option<RequestId>,
    pub at_ms: i64,
    pub command: Command,
}

/// A logged entry: a proposal, or a bare command as logs written before request ids hold.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProposalRepr {
    Proposal {
        id: Option<RequestId>,
        at_ms: i64,
        command: Command,
    },
    Legacy(Command),
}

impl From<ProposalRepr> for Proposal {
    fn from(r: ProposalRepr) -> Self {
        match r {
            ProposalRepr::Proposal { id, at_ms, command } => Self { id, at_ms, command },
            ProposalRepr::Legacy(command) => Self {
                id: None,
                at_ms: 0,
                command,
            },
        }
    }
}

impl Proposal {
    /// A proposal with a fresh id, stamped now.
    pub fn new(command: Command) -> Self {
        Self {
            id: Some(RequestId::random()),
            at_ms: chrono::Utc::now().timestamp_millis(),
            command,
        }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id} {}", self.command),
            None => write!(f, "{}", self.command),
        }
    }
}

/// One remembered outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedRequest {
    pub id: RequestId,
    pub at_ms: i64,
    pub result: CommandResult,
}

/// The outcomes of recently applied request ids. Serialized as a list ordered by (time, id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<AppliedRequest>", into = "Vec<AppliedRequest>")]
pub struct AppliedRequests {
    by_id: HashMap<RequestId, (i64, CommandResult)>,
    order: BTreeSet<(i64, RequestId)>,
    /// The newest proposal time seen: the clock the age bound is measured with.
    newest_ms: i64,
}

impl AppliedRequests {
    /// The first outcome of `id`, if it was applied and is still remembered.
    pub fn get(&self, id: RequestId) -> Option<&CommandResult> {
        self.by_id.get(&id).map(|(_, r)| r)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Remembers an applied request; returns the ids evicted to stay within the bounds.
    pub fn record(&mut self, id: RequestId, at_ms: i64, result: CommandResult) -> Vec<RequestId> {
        if let Some((old_at, _)) = self.by_id.insert(id, (at_ms, result)) {
            self.order.remove(&(old_at, id));
        }
        self.order.insert((at_ms, id));
        self.newest_ms = self.newest_ms.max(at_ms);
        let mut evicted = Vec::new();
        while let Some(&(at, oldest)) = self.order.first() {
            let too_many = self.order.len() > MAX_REQUESTS;
            let too_old = at < self.newest_ms.saturating_sub(MAX_AGE_MS);
            if !too_many && !too_old {
                break;
            }
            self.order.pop_first();
            self.by_id.remove(&oldest);
            evicted.push(oldest);
        }
        evicted
    }

    /// Puts back a remembered request as it was persisted (loading from disk).
    pub fn insert(&mut self, r: AppliedRequest) {
        self.newest_ms = self.newest_ms.max(r.at_ms);
        self.order.insert((r.at_ms, r.id));
        self.by_id.insert(r.id, (r.at_ms, r.result));
    }

    /// Every remembered request, oldest first.
    pub fn list(&self) -> Vec<AppliedRequest> {
        self.order
            .iter()
            .filter_map(|&(at_ms, id)| {
                let (_, result) = self.by_id.get(&id)?;
                Some(AppliedRequest {
                    id,
                    at_ms,
                    result: result.clone(),
                })
            })
            .collect()
    }
}

impl From<Vec<AppliedRequest>> for AppliedRequests {
    fn from(list: Vec<AppliedRequest>) -> Self {
        let mut t = Self::default();
        for r in list {
            t.insert(r);
        }
        t
    }
}

impl From<AppliedRequests> for Vec<AppliedRequest> {
    fn from(t: AppliedRequests) -> Self {
        t.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Outcome;

    #[test]
    fn bounded_by_count_and_age_and_survives_serde() {
        let mut t = AppliedRequests::default();
        for i in 0..MAX_REQUESTS as u128 {
            assert!(t
                .record(RequestId(i), 1_000, Ok(Outcome::Nothing))
                .is_empty());
        }
        // One more: the oldest (by time, then id) goes.
        assert_eq!(
            t.record(RequestId(u128::MAX), 1_000, Ok(Outcome::Nothing)),
            vec![RequestId(0)]
        );
        assert_eq!(t.len(), MAX_REQUESTS);
        assert!(t.get(RequestId(0)).is_none());
        assert!(t.get(RequestId(1)).is_some());

        // A proposal past the age bound evicts everything older than it by more than the bound.
        let evicted = t.record(
            RequestId(7_777_777),
            1_001 + MAX_AGE_MS,
            Ok(Outcome::Nothing),
        );
        assert_eq!(evicted.len(), MAX_REQUESTS);
        assert_eq!(t.len(), 1);

        let json = serde_json::to_string(&t).unwrap();
        let back: AppliedRequests = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert!(json.contains(&RequestId(7_777_777).hex()));
    }

    #[test]
    fn proposals_round_trip_and_bare_commands_of_old_logs_decode() {
        let cmd = Command::Activate { id: "ws-a".into() };
        let p = Proposal::new(cmd.clone());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), p);
        let old: Proposal = serde_json::from_str(&serde_json::to_string(&cmd).unwrap()).unwrap();
        assert_eq!(old.id, None);
        assert_eq!(old.command, cmd);
    }

    #[test]
    fn request_ids_are_32_hex_digits() {
        let id = RequestId(0xabc);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000000000000000000000000abc\"");
        assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<RequestId>("\"abc\"").is_err());
        assert!(serde_json::from_str::<RequestId>(&format!("\"{}\"", "g".repeat(32))).is_err());
    }
}
