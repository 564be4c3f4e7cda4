//! The replicated state: workspaces with their tags, configuration and limit overrides. Every
//! decision that depends on other workspaces (quota, clientToken replay, state conflicts) is made
//! here, when a command is applied, so it is the same on every voter and linearizable. The state
//! also holds the ingester ring's KV keys (hestia-ring descriptors with their CAS versions) and
//! the HA tracker's elections (hestia-ha) and the identities: accounts, users, access keys,
//! policies and workspace tokens (hestia-auth).

use std::collections::BTreeMap;

use hestia_auth::identity::{Identities, IdentityCommand, IdentityError, IdentityOutcome};
use hestia_ha::HaTable;
use hestia_ring::RingDesc;

use crate::requests::AppliedRequests;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Creating,
    Active,
    /// Refused by the data plane, still visible to DescribeWorkspace.
    Deleting,
    /// Invisible to the API; the data waits for its purge.
    Deleted,
}

impl Status {
    /// The AMP `statusCode`.
    pub fn code(self) -> &'static str {
        match self {
            Status::Creating => "CREATING",
            Status::Active => "ACTIVE",
            Status::Deleting | Status::Deleted => "DELETING",
        }
    }
}

/// UpdateWorkspaceConfiguration's settable fields; `None` = the service default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceConfiguration {
    pub retention_period_in_days: Option<u32>,
    pub out_of_order_time_window_in_seconds: Option<u64>,
    pub rule_query_offset_in_seconds: Option<u64>,
    /// AMP `LimitsPerLabelSet` objects as received (validated by the API).
    pub limits_per_label_set: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub account: String,
    pub alias: Option<String>,
    pub status: Status,
    pub created_at_ms: i64,
    pub tags: BTreeMap<String, String>,
    pub client_token: Option<String>,
    pub deleted_at_ms: Option<i64>,
    pub configuration: WorkspaceConfiguration,
    /// Per-workspace overrides of `hestia_limits::Limits` fields (admin API).
    pub limit_overrides: BTreeMap<String, serde_json::Value>,
}

impl Workspace {
    /// Whether the AMP API shows the workspace.
    pub fn visible(&self) -> bool {
        self.status != Status::Deleted
    }
}

/// A state-machine command. Ids and times are chosen by the proposer so that applying is
/// deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateWorkspace {
        id: String,
        account: String,
        alias: Option<String>,
        tags: BTreeMap<String, String>,
        client_token: Option<String>,
        now_ms: i64,
        max_per_account: usize,
    },
    Activate {
        id: String,
    },
    UpdateAlias {
        id: String,
        alias: Option<String>,
    },
    Delete {
        id: String,
        now_ms: i64,
    },
    /// DELETING → hidden; the data plane already refuses the workspace.
    Hide {
        id: String,
    },
    /// The data was purged; the record goes away.
    Purged {
        id: String,
    },
    Tag {
        id: String,
        tags: BTreeMap<String, String>,
    },
    Untag {
        id: String,
        keys: Vec<String>,
    },
    UpdateConfiguration {
        id: String,
        configuration: WorkspaceConfiguration,
    },
    SetLimitOverrides {
        id: String,
        overrides: BTreeMap<String, serde_json::Value>,
    },
    /// Stores a ring descriptor if the key's version is `expected` (0: absent).
    RingCas {
        key: String,
        expected: u64,
        desc: RingDesc,
    },
    /// Raises instances' heartbeats (never lowers them); unknown instances are ignored.
    RingHeartbeats {
        key: String,
        beats: Vec<(String, i64)>,
    },
    /// HA-tracker reports, applied in order after forgetting clusters silent since
    /// `forget_before_ms`.
    HaUpdate {
        updates: Vec<hestia_ha::Update>,
        forget_before_ms: i64,
    },
    Identity(IdentityCommand),
}

/// The record a command changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Workspace(&'a str),
    Ring(&'a str),
    Ha,
    Identity,
}

impl Command {
    pub fn target(&self) -> Target<'_> {
        match self {
            Command::CreateWorkspace { id, .. }
            | Command::Activate { id }
            | Command::UpdateAlias { id, .. }
            | Command::Delete { id, .. }
            | Command::Hide { id }
            | Command::Purged { id }
            | Command::Tag { id, .. }
            | Command::Untag { id, .. }
            | Command::UpdateConfiguration { id, .. }
            | Command::SetLimitOverrides { id, .. } => Target::Workspace(id),
            Command::RingCas { key, .. } | Command::RingHeartbeats { key, .. } => Target::Ring(key),
            Command::HaUpdate { .. } => Target::Ha,
            Command::Identity(_) => Target::Identity,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Why a command was refused; the API maps each to an AMP exception.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("Workspace {0} not found")]
    NotFound(String),
    #[error("{message}")]
    Conflict { id: String, message: String },
    #[error("Workspace quota of {limit} per account exceeded")]
    QuotaExceeded { limit: usize },
    #[error("{0}")]
    Identity(IdentityError),
}

/// What an applied entry produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Blank, membership and heartbeat entries.
    Nothing,
    /// A workspace command: the workspace as it is now (`None` once hidden or purged).
    Workspace(Option<Box<Workspace>>),
    /// `version` is the new version when `ok`, else the key's current version.
    RingCas {
        ok: bool,
        version: u64,
    },
    /// One per update of an `HaUpdate`.
    Ha(Vec<hestia_ha::Outcome>),
    Identity(IdentityOutcome),
}

impl Outcome {
    pub fn into_workspace(self) -> Option<Workspace> {
        match self {
            Outcome::Workspace(w) => w.map(|w| *w),
            Outcome::Nothing | Outcome::RingCas { .. } | Outcome::Ha(_) | Outcome::Identity(_) => {
                None
            }
        }
    }
}

pub type CommandResult = Result<Outcome, CommandError>;

/// One ring key: the descriptor and the version `RingCas` compares against. Versions only grow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingEntry {
    pub version: u64,
    pub desc: RingDesc,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Bumped by every applied workspace or identity command that succeeded; watchers compare
    /// it. Ring and HA commands leave it alone (ring keys carry their own versions).
    pub revision: u64,
    pub workspaces: BTreeMap<String, Workspace>,
    #[serde(default)]
    pub rings: BTreeMap<String, RingEntry>,
    #[serde(default)]
    pub ha: HaTable,
    #[serde(default)]
    pub identities: Identities,
    /// Outcomes of recently applied proposals, so a retried one is applied once.
    #[serde(default)]
    pub requests: AppliedRequests,
}

impl State {
    pub fn apply(&mut self, cmd: Command) -> CommandResult {
        let workspace = matches!(cmd.target(), Target::Workspace(_) | Target::Identity);
        let result = self.apply_inner(cmd);
        if workspace && result.is_ok() {
            self.revision += 1;
        }
        result
    }

    fn ring_cas(&mut self, key: String, expected: u64, desc: RingDesc) -> Outcome {
        let current = self.rings.get(&key).map_or(0, |e| e.version);
        if current != expected {
            return Outcome::RingCas {
                ok: false,
                version: current,
            };
        }
        let version = current + 1;
        self.rings.insert(key, RingEntry { version, desc });
        Outcome::RingCas { ok: true, version }
    }

    /// One new version when any heartbeat was raised, none otherwise.
    fn ring_heartbeats(&mut self, key: &str, beats: Vec<(String, i64)>) {
        let Some(entry) = self.rings.get_mut(key) else {
            return;
        };
        let mut raised = false;
        for (id, at_ms) in beats {
            if let Some(i) = entry.desc.instances.get_mut(&id) {
                if i.heartbeat_ms < at_ms {
                    i.heartbeat_ms = at_ms;
                    raised = true;
                }
            }
        }
        if raised {
            entry.version += 1;
        }
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Workspace, CommandError> {
        self.workspaces
            .get_mut(id)
            .filter(|w| w.visible())
            .ok_or_else(|| CommandError::NotFound(id.to_string()))
    }

    fn apply_inner(&mut self, cmd: Command) -> CommandResult {
        match cmd {
            Command::CreateWorkspace {
                id,
                account,
                alias,
                tags,
                client_token,
                now_ms,
                max_per_account,
            } => {
                if let Some(token) = &client_token {
                    if let Some(w) = self
                        .workspaces
                        .values()
                        .find(|w| w.account == account && w.client_token.as_deref() == Some(token))
                    {
                        return outcome(w);
                    }
                }
                let owned = self
                    .workspaces
                    .values()
                    .filter(|w| w.account == account && w.visible())
                    .count();
                if owned >= max_per_account {
                    return Err(CommandError::QuotaExceeded {
                        limit: max_per_account,
                    });
                }
                if self.workspaces.contains_key(&id) {
                    return Err(CommandError::Conflict {
                        message: format!("Workspace {id} already exists"),
                        id,
                    });
                }
                let w = Workspace {
                    id: id.clone(),
                    account,
                    alias,
                    status: Status::Creating,
                    created_at_ms: now_ms,
                    tags,
                    client_token,
                    deleted_at_ms: None,
                    configuration: WorkspaceConfiguration::default(),
                    limit_overrides: BTreeMap::new(),
                };
                self.workspaces.insert(id, w.clone());
                Ok(Outcome::Workspace(Some(Box::new(w))))
            }
            Command::Activate { id } => {
                let w = self.get_mut(&id)?;
                if w.status == Status::Creating {
                    w.status = Status::Active;
                }
                outcome(w)
            }
            Command::UpdateAlias { id, alias } => {
                let w = self.get_mut(&id)?;
                if w.status == Status::Deleting {
                    return Err(conflict(&id, "Workspace is being deleted"));
                }
                w.alias = alias;
                outcome(w)
            }
            Command::Delete { id, now_ms } => {
                let w = self.get_mut(&id)?;
                if w.status != Status::Deleting {
                    w.status = Status::Deleting;
                    w.deleted_at_ms = Some(now_ms);
                }
                outcome(w)
            }
            Command::Hide { id } => {
                if let Some(w) = self.workspaces.get_mut(&id) {
                    if w.status == Status::Deleting {
                        w.status = Status::Deleted;
                    }
                }
                Ok(Outcome::Workspace(None))
            }
            Command::Purged { id } => {
                if self
                    .workspaces
                    .get(&id)
                    .is_some_and(|w| w.status == Status::Deleted)
                {
                    self.workspaces.remove(&id);
                    let forget = IdentityCommand::ForgetWorkspace { workspace: id };
                    self.identities
                        .apply(forget)
                        .map_err(CommandError::Identity)?;
                }
                Ok(Outcome::Workspace(None))
            }
            Command::Tag { id, tags } => {
                let w = self.get_mut(&id)?;
                w.tags.extend(tags);
                outcome(w)
            }
            Command::Untag { id, keys } => {
                let w = self.get_mut(&id)?;
                for k in keys {
                    w.tags.remove(&k);
                }
                outcome(w)
            }
            Command::UpdateConfiguration { id, configuration } => {
                let w = self.get_mut(&id)?;
                if w.status != Status::Active {
                    return Err(conflict(&id, "Workspace is not ACTIVE"));
                }
                let c = &mut w.configuration;
                if configuration.retention_period_in_days.is_some() {
                    c.retention_period_in_days = configuration.retention_period_in_days;
                }
                if configuration.out_of_order_time_window_in_seconds.is_some() {
                    c.out_of_order_time_window_in_seconds =
                        configuration.out_of_order_time_window_in_seconds;
                }
                if configuration.rule_query_offset_in_seconds.is_some() {
                    c.rule_query_offset_in_seconds = configuration.rule_query_offset_in_seconds;
                }
                if configuration.limits_per_label_set.is_some() {
                    c.limits_per_label_set = configuration.limits_per_label_set;
                }
                outcome(w)
            }
            Command::SetLimitOverrides { id, overrides } => {
                let w = self.get_mut(&id)?;
                w.limit_overrides = overrides;
                outcome(w)
            }
            Command::RingCas {
                key,
                expected,
                desc,
            } => Ok(self.ring_cas(key, expected, desc)),
            Command::RingHeartbeats { key, beats } => {
                self.ring_heartbeats(&key, beats);
                Ok(Outcome::Nothing)
            }
            Command::HaUpdate {
                updates,
                forget_before_ms,
            } => Ok(Outcome::Ha(
                self.ha.apply_batch(&updates, forget_before_ms).0,
            )),
            Command::Identity(cmd) => {
                if let IdentityCommand::DeleteAccount { account } = &cmd {
                    if self
                        .workspaces
                        .values()
                        .any(|w| &w.account == account && w.visible())
                    {
                        return Err(CommandError::Identity(IdentityError::Invalid(format!(
                            "Account {account} still has workspaces; delete them first"
                        ))));
                    }
                }
                self.identities
                    .apply(cmd)
                    .map(Outcome::Identity)
                    .map_err(CommandError::Identity)
            }
        }
    }
}

/// A workspace command's outcome: the workspace as it is now.
fn outcome(w: &Workspace) -> CommandResult {
    Ok(Outcome::Workspace(Some(Box::new(w.clone()))))
}

fn conflict(id: &str, message: &str) -> CommandError {
    CommandError::Conflict {
        id: id.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: &str, token: Option<&str>) -> Command {
        Command::CreateWorkspace {
            id: id.to_string(),
            account: "000000000000".to_string(),
            alias: None,
            tags: BTreeMap::new(),
            client_token: token.map(str::to_string),
            now_ms: 1,
            max_per_account: 2,
        }
    }

    #[test]
    fn quota_token_replay_and_lifecycle() {
        let mut s = State::default();
        let a = s
            .apply(create("ws-a", Some("t")))
            .unwrap()
            .into_workspace()
            .unwrap();
        let again = s
            .apply(create("ws-other", Some("t")))
            .unwrap()
            .into_workspace()
            .unwrap();
        assert_eq!(a.id, again.id);
        s.apply(create("ws-b", None)).unwrap();
        assert_eq!(
            s.apply(create("ws-c", None)),
            Err(CommandError::QuotaExceeded { limit: 2 })
        );
        s.apply(Command::Activate { id: "ws-a".into() }).unwrap();
        s.apply(Command::Delete {
            id: "ws-a".into(),
            now_ms: 5,
        })
        .unwrap();
        let alias = Command::UpdateAlias {
            id: "ws-a".into(),
            alias: Some("x".into()),
        };
        assert!(matches!(s.apply(alias), Err(CommandError::Conflict { .. })));
        s.apply(Command::Hide { id: "ws-a".into() }).unwrap();
        assert!(matches!(
            s.apply(Command::Activate { id: "ws-a".into() }),
            Err(CommandError::NotFound(_))
        ));
        // The hidden workspace no longer counts against the quota.
        s.apply(create("ws-c", None)).unwrap();
        s.apply(Command::Purged { id: "ws-a".into() }).unwrap();
        s.apply(Command::Purged { id: "ws-a".into() }).unwrap();
        assert!(!s.workspaces.contains_key("ws-a"));
    }

    fn ring_of(ids: &[(&str, i64)]) -> RingDesc {
        let mut d = RingDesc::default();
        for (id, hb) in ids {
            d.instances.insert(
                id.to_string(),
                hestia_ring::InstanceDesc {
                    id: id.to_string(),
                    addr: format!("{id}:9095"),
                    zone: "a".into(),
                    tokens: vec![1],
                    state: hestia_ring::InstanceState::Active,
                    heartbeat_ms: *hb,
                },
            );
        }
        d
    }

    fn cas(key: &str, expected: u64, desc: RingDesc) -> Command {
        Command::RingCas {
            key: key.into(),
            expected,
            desc,
        }
    }

    fn beats(key: &str, beats: &[(&str, i64)]) -> Command {
        Command::RingHeartbeats {
            key: key.into(),
            beats: beats.iter().map(|(i, t)| (i.to_string(), *t)).collect(),
        }
    }

    #[test]
    fn ring_cas_compares_versions_and_leaves_the_workspace_revision() {
        let mut s = State::default();
        let ok = |version| -> CommandResult { Ok(Outcome::RingCas { ok: true, version }) };
        let conflict = |version| -> CommandResult { Ok(Outcome::RingCas { ok: false, version }) };
        assert_eq!(s.apply(cas("r", 1, ring_of(&[("a", 1)]))), conflict(0));
        assert_eq!(s.apply(cas("r", 0, ring_of(&[("a", 1)]))), ok(1));
        assert_eq!(s.apply(cas("r", 0, ring_of(&[("b", 1)]))), conflict(1));
        assert_eq!(s.apply(cas("r", 1, ring_of(&[("b", 1)]))), ok(2));
        // Keys are independent.
        assert_eq!(s.apply(cas("other", 0, RingDesc::default())), ok(1));
        assert_eq!(s.rings["r"].desc, ring_of(&[("b", 1)]));
        assert_eq!(s.revision, 0);
    }

    #[test]
    fn ring_heartbeats_only_raise_known_instances() {
        let mut s = State::default();
        // Heartbeats for a missing key change nothing.
        assert_eq!(s.apply(beats("r", &[("a", 5)])), Ok(Outcome::Nothing));
        assert!(s.rings.is_empty());
        s.apply(cas("r", 0, ring_of(&[("a", 10), ("b", 10)])))
            .unwrap();

        s.apply(beats("r", &[("a", 20), ("b", 5), ("zz", 99)]))
            .unwrap();
        let e = &s.rings["r"];
        assert_eq!(e.version, 2);
        assert_eq!(e.desc.instances["a"].heartbeat_ms, 20);
        assert_eq!(e.desc.instances["b"].heartbeat_ms, 10);
        assert!(!e.desc.instances.contains_key("zz"));

        // Nothing raised: no new version, so no watcher wakes and no CAS is invalidated.
        s.apply(beats("r", &[("a", 20), ("b", 1)])).unwrap();
        assert_eq!(s.rings["r"].version, 2);
        // A CAS against the pre-heartbeat version loses.
        assert_eq!(
            s.apply(cas("r", 1, ring_of(&[("a", 1)]))),
            Ok(Outcome::RingCas {
                ok: false,
                version: 2
            })
        );
        assert_eq!(s.revision, 0);
    }

    #[test]
    fn rings_survive_serde_and_old_states_decode() {
        let mut s = State::default();
        s.apply(create("ws-a", None)).unwrap();
        s.apply(cas("r", 0, ring_of(&[("a", 1)]))).unwrap();
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(serde_json::from_slice::<State>(&json).unwrap(), s);
        // A snapshot written before rings existed.
        let old: State = serde_json::from_str(r#"{"revision":3,"workspaces":{}}"#).unwrap();
        assert!(old.rings.is_empty());
    }
}
