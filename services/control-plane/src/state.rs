//! The replicated state: workspaces with their tags, configuration and limit overrides. Every
//! decision that depends on other workspaces (quota, clientToken replay, state conflicts) is made
//! here, when a command is applied, so it is the same on every voter and linearizable.

use std::collections::BTreeMap;

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
}

pub type CommandResult = Result<Option<Workspace>, CommandError>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Bumped by every applied command that changed something; watchers compare it.
    pub revision: u64,
    pub workspaces: BTreeMap<String, Workspace>,
}

impl State {
    pub fn apply(&mut self, cmd: Command) -> CommandResult {
        let result = self.apply_inner(cmd);
        if result.is_ok() {
            self.revision += 1;
        }
        result
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
                        return Ok(Some(w.clone()));
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
                Ok(Some(w))
            }
            Command::Activate { id } => {
                let w = self.get_mut(&id)?;
                if w.status == Status::Creating {
                    w.status = Status::Active;
                }
                Ok(Some(w.clone()))
            }
            Command::UpdateAlias { id, alias } => {
                let w = self.get_mut(&id)?;
                if w.status == Status::Deleting {
                    return Err(conflict(&id, "Workspace is being deleted"));
                }
                w.alias = alias;
                Ok(Some(w.clone()))
            }
            Command::Delete { id, now_ms } => {
                let w = self.get_mut(&id)?;
                if w.status != Status::Deleting {
                    w.status = Status::Deleting;
                    w.deleted_at_ms = Some(now_ms);
                }
                Ok(Some(w.clone()))
            }
            Command::Hide { id } => {
                if let Some(w) = self.workspaces.get_mut(&id) {
                    if w.status == Status::Deleting {
                        w.status = Status::Deleted;
                    }
                }
                Ok(None)
            }
            Command::Purged { id } => {
                if self
                    .workspaces
                    .get(&id)
                    .is_some_and(|w| w.status == Status::Deleted)
                {
                    self.workspaces.remove(&id);
                }
                Ok(None)
            }
            Command::Tag { id, tags } => {
                let w = self.get_mut(&id)?;
                w.tags.extend(tags);
                Ok(Some(w.clone()))
            }
            Command::Untag { id, keys } => {
                let w = self.get_mut(&id)?;
                for k in keys {
                    w.tags.remove(&k);
                }
                Ok(Some(w.clone()))
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
                Ok(Some(w.clone()))
            }
            Command::SetLimitOverrides { id, overrides } => {
                let w = self.get_mut(&id)?;
                w.limit_overrides = overrides;
                Ok(Some(w.clone()))
            }
        }
    }
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
        let a = s.apply(create("ws-a", Some("t"))).unwrap().unwrap();
        let again = s.apply(create("ws-other", Some("t"))).unwrap().unwrap();
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
}
