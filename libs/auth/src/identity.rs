//! Accounts, users, access keys, attached policies and workspace tokens: the replicated identity
//! state. The control plane applies [`IdentityCommand`]s to committed Raft entries; commands carry
//! everything random (ids, sealed secrets, times) so applying them is deterministic. Secrets are
//! stored sealed under the master key (access keys) or as a SHA-256 digest (workspace tokens),
//! never in the clear.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{self, Policy, PolicyError};

/// AWS's limit of access keys per user.
pub const MAX_KEYS_PER_USER: usize = 2;
/// Workspace tokens per workspace.
pub const MAX_TOKENS_PER_WORKSPACE: usize = 100;
/// The user every account starts with; it holds `AdministratorAccess`.
pub const ADMIN_USER: &str = "admin";
/// The managed policy granting everything (the operator's and each account's admin).
pub const ADMINISTRATOR_ACCESS: &str = "AdministratorAccess";
/// Prefix of workspace tokens: `hwt_<token id>_<secret>`.
pub const TOKEN_PREFIX: &str = "hwt_";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identities {
    /// The account the cluster was bootstrapped with; only its users may manage accounts and the
    /// cluster.
    pub operator_account: Option<String>,
    pub accounts: BTreeMap<String, Account>,
    /// Access key id → key.
    pub access_keys: BTreeMap<String, AccessKey>,
    /// Token id → token.
    pub tokens: BTreeMap<String, WorkspaceToken>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
    pub users: BTreeMap<String, User>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub created_at_ms: i64,
    /// Names of attached managed policies.
    pub managed_policies: BTreeSet<String>,
    /// Inline policies: name → JSON document (validated when attached).
    pub inline_policies: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub account: String,
    pub user: String,
    /// The secret access key sealed under the master key, bound to the key id.
    pub sealed_secret: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    Read,
    Write,
}

impl TokenScope {
    pub fn parse(s: &str) -> Option<TokenScope> {
        match s {
            "read" => Some(TokenScope::Read),
            "write" => Some(TokenScope::Write),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
        }
    }

    /// The actions a token of this scope may perform (on its workspace only).
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            TokenScope::Read => &[
                "aps:QueryMetrics",
                "aps:GetSeries",
                "aps:GetLabels",
                "aps:GetMetricMetadata",
            ],
            TokenScope::Write => &["aps:RemoteWrite"],
        }
    }

    pub fn allows(self, action: &str) -> bool {
        self.actions().contains(&action)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceToken {
    pub id: String,
    pub account: String,
    pub workspace: String,
    pub scope: TokenScope,
    pub name: Option<String>,
    /// Hex SHA-256 of the token's secret part.
    pub secret_sha256: String,
    pub created_at_ms: i64,
}

/// A policy attached to a user: a managed one by name, or an inline document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyAttachment {
    Managed(String),
    Inline { name: String, document: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IdentityCommand {
    /// The first start: the operator account, its admin user and key. Applied only while no
    /// account exists.
    Bootstrap {
        account: String,
        name: String,
        key: AccessKey,
        now_ms: i64,
    },
    /// A new account with its admin user (AdministratorAccess) and that user's key.
    CreateAccount {
        account: String,
        name: String,
        key: AccessKey,
        now_ms: i64,
    },
    DeleteAccount {
        account: String,
    },
    CreateUser {
        account: String,
        name: String,
        now_ms: i64,
    },
    /// Deletes the user with its keys.
    DeleteUser {
        account: String,
        name: String,
    },
    CreateAccessKey {
        key: AccessKey,
    },
    DeleteAccessKey {
        account: String,
        user: String,
        id: String,
    },
    AttachPolicy {
        account: String,
        user: String,
        policy: PolicyAttachment,
    },
    DetachPolicy {
        account: String,
        user: String,
        name: String,
    },
    CreateToken {
        token: WorkspaceToken,
    },
    RevokeToken {
        account: String,
        workspace: String,
        id: String,
    },
    /// The workspace is gone: its tokens go too.
    ForgetWorkspace {
        workspace: String,
    },
}

/// Why an identity command was refused (IAM's exception names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    NoSuchEntity(String),
    #[error("{0}")]
    EntityAlreadyExists(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    Invalid(String),
}

impl IdentityError {
    /// The exception name the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSuchEntity(_) => "ResourceNotFoundException",
            Self::EntityAlreadyExists(_) => "ConflictException",
            Self::LimitExceeded(_) => "ServiceQuotaExceededException",
            Self::MalformedPolicyDocument(_) | Self::Invalid(_) => "ValidationException",
        }
    }
}

/// What an applied identity command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IdentityOutcome {
    Done,
    /// `Bootstrap` found accounts already there and changed nothing.
    AlreadyBootstrapped,
}

impl Identities {
    pub fn apply(&mut self, cmd: IdentityCommand) -> Result<IdentityOutcome, IdentityError> {
        match cmd {
            IdentityCommand::Bootstrap {
                account,
                name,
                key,
                now_ms,
            } => {
                if !self.accounts.is_empty() {
                    return Ok(IdentityOutcome::AlreadyBootstrapped);
                }
                self.operator_account = Some(account.clone());
                self.create_account(account, name, key, now_ms)?;
            }
            IdentityCommand::CreateAccount {
                account,
                name,
                key,
                now_ms,
            } => self.create_account(account, name, key, now_ms)?,
            IdentityCommand::DeleteAccount { account } => {
                if self.operator_account.as_deref() == Some(account.as_str()) {
                    return Err(IdentityError::Invalid(
                        "the operator account cannot be deleted".into(),
                    ));
                }
                self.account(&account)?;
                self.accounts.remove(&account);
                self.access_keys.retain(|_, k| k.account != account);
                self.tokens.retain(|_, t| t.account != account);
            }
            IdentityCommand::CreateUser {
                account,
                name,
                now_ms,
            } => {
                let a = self.account_mut(&account)?;
                if a.users.contains_key(&name) {
                    return Err(IdentityError::EntityAlreadyExists(format!(
                        "User with name {name} already exists."
                    )));
                }
                a.users.insert(name.clone(), User::new(name, now_ms));
            }
            IdentityCommand::DeleteUser { account, name } => {
                let a = self.account_mut(&account)?;
                if a.users.remove(&name).is_none() {
                    return Err(no_such_user(&name));
                }
                self.access_keys
                    .retain(|_, k| !(k.account == account && k.user == name));
            }
            IdentityCommand::CreateAccessKey { key } => self.add_key(key)?,
            IdentityCommand::DeleteAccessKey { account, user, id } => {
                self.user_mut(&account, &user)?;
                match self.access_keys.get(&id) {
                    Some(k) if k.account == account && k.user == user => {
                        self.access_keys.remove(&id);
                    }
                    _ => {
                        return Err(IdentityError::NoSuchEntity(format!(
                            "The Access Key with id {id} cannot be found."
                        )))
                    }
                }
            }
            IdentityCommand::AttachPolicy {
                account,
                user,
                policy,
            } => {
                let u = self.user_mut(&account, &user)?;
                match policy {
                    PolicyAttachment::Managed(name) => {
                        if policy::managed(&name).is_none() {
                            return Err(IdentityError::NoSuchEntity(format!(
                                "Policy {name} does not exist or is not attachable."
                            )));
                        }
                        u.managed_policies.insert(name);
                    }
                    PolicyAttachment::Inline { name, document } => {
                        Policy::parse(&document)
                            .map_err(|PolicyError(m)| IdentityError::MalformedPolicyDocument(m))?;
                        u.inline_policies.insert(name, document);
                    }
                }
            }
            IdentityCommand::DetachPolicy {
                account,
                user,
                name,
            } => {
                let u = self.user_mut(&account, &user)?;
                if !u.managed_policies.remove(&name) && u.inline_policies.remove(&name).is_none() {
                    return Err(IdentityError::NoSuchEntity(format!(
                        "Policy {name} is not attached to user {user}."
                    )));
                }
            }
            IdentityCommand::CreateToken { token } => {
                self.account(&token.account)?;
                let on_workspace = self
                    .tokens
                    .values()
                    .filter(|t| t.workspace == token.workspace)
                    .count();
                if on_workspace >= MAX_TOKENS_PER_WORKSPACE {
                    return Err(IdentityError::LimitExceeded(format!(
                        "Cannot exceed quota for tokens per workspace: {MAX_TOKENS_PER_WORKSPACE}"
                    )));
                }
                if self.tokens.contains_key(&token.id) {
                    return Err(IdentityError::EntityAlreadyExists(format!(
                        "Token {} already exists.",
                        token.id
                    )));
                }
                self.tokens.insert(token.id.clone(), token);
            }
            IdentityCommand::RevokeToken {
                account,
                workspace,
                id,
            } => match self.tokens.get(&id) {
                Some(t) if t.account == account && t.workspace == workspace => {
                    self.tokens.remove(&id);
                }
                _ => return Err(IdentityError::NoSuchEntity(format!("Token {id} not found"))),
            },
            IdentityCommand::ForgetWorkspace { workspace } => {
                self.tokens.retain(|_, t| t.workspace != workspace);
            }
        }
        Ok(IdentityOutcome::Done)
    }

    fn create_account(
        &mut self,
        account: String,
        name: String,
        key: AccessKey,
        now_ms: i64,
    ) -> Result<(), IdentityError> {
        if self.accounts.contains_key(&account) || self.accounts.values().any(|a| a.name == name) {
            return Err(IdentityError::EntityAlreadyExists(format!(
                "Account {name} already exists."
            )));
        }
        let mut admin = User::new(ADMIN_USER.to_string(), now_ms);
        admin.managed_policies.insert(ADMINISTRATOR_ACCESS.into());
        let mut users = BTreeMap::new();
        users.insert(ADMIN_USER.to_string(), admin);
        self.accounts.insert(
            account.clone(),
            Account {
                id: account,
                name,
                created_at_ms: now_ms,
                users,
            },
        );
        self.add_key(key)
    }

    fn add_key(&mut self, key: AccessKey) -> Result<(), IdentityError> {
        self.user_mut(&key.account, &key.user)?;
        let owned = self
            .access_keys
            .values()
            .filter(|k| k.account == key.account && k.user == key.user)
            .count();
        if owned >= MAX_KEYS_PER_USER {
            return Err(IdentityError::LimitExceeded(format!(
                "Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}"
            )));
        }
        if self.access_keys.contains_key(&key.id) {
            return Err(IdentityError::EntityAlreadyExists(format!(
                "Access key {} already exists.",
                key.id
            )));
        }
        self.access_keys.insert(key.id.clone(), key);
        Ok(())
    }

    pub fn account(&self, id: &str) -> Result<&Account, IdentityError> {
        self.accounts
            .get(id)
            .ok_or_else(|| IdentityError::NoSuchEntity(format!("Account {id} not found")))
    }

    fn account_mut(&mut self, id: &str) -> Result<&mut Account, IdentityError> {
        self.accounts
            .get_mut(id)
            .ok_or_else(|| IdentityError::NoSuchEntity(format!("Account {id} not found")))
    }

    pub fn user(&self, account: &str, name: &str) -> Result<&User, IdentityError> {
        self.account(account)?
            .users
            .get(name)
            .ok_or_else(|| no_such_user(name))
    }

    fn user_mut(&mut self, account: &str, name: &str) -> Result<&mut User, IdentityError> {
        self.account_mut(account)?
            .users
            .get_mut(name)
            .ok_or_else(|| no_such_user(name))
    }
}

impl User {
    fn new(name: String, now_ms: i64) -> User {
        User {
            name,
            created_at_ms: now_ms,
            managed_policies: BTreeSet::new(),
            inline_policies: BTreeMap::new(),
        }
    }

    /// The user's policies, parsed (inline documents were validated when attached).
    pub fn policies(&self) -> Vec<Policy> {
        let managed = self
            .managed_policies
            .iter()
            .filter_map(|n| policy::managed(n));
        let inline = self
            .inline_policies
            .values()
            .filter_map(|d| Policy::parse(d).ok());
        managed.chain(inline).collect()
    }
}

fn no_such_user(name: &str) -> IdentityError {
    IdentityError::NoSuchEntity(format!("The user with name {name} cannot be found."))
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A new access key id in AWS's shape (`AKIA` + 16 characters).
pub fn new_access_key_id() -> String {
    format!("AKIA{}", random_string(UPPER_ALNUM, 16))
}

/// A new 40-character secret access key.
pub fn new_secret_access_key() -> String {
    random_string(SECRET_CHARS, 40)
}

/// A new 12-digit account id.
pub fn new_account_id() -> String {
    random_string(b"0123456789", 12)
}

/// A new workspace token: (token id, the token a client sends, the digest stored).
pub fn new_workspace_token() -> (String, String, String) {
    let id = random_string(LOWER_ALNUM, 16);
    let secret = random_string(LOWER_ALNUM, 40);
    let digest = token_digest(&secret);
    (id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"), digest)
}

/// Splits `hwt_<id>_<secret>` into (id, secret).
pub fn split_workspace_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

pub fn token_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Account and user names: IAM's characters, 1–64 long.
pub fn check_name(what: &str, name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "{what} must be 1 to 64 characters of letters, digits and +=,.@_-"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, account: &str, user: &str) -> AccessKey {
        AccessKey {
            id: id.into(),
            account: account.into(),
            user: user.into(),
            sealed_secret: "sealed".into(),
            created_at_ms: 1,
        }
    }

    fn bootstrapped() -> Identities {
        let mut ids = Identities::default();
        let cmd = IdentityCommand::Bootstrap {
            account: "111111111111".into(),
            name: "operator".into(),
            key: key("AKIAOP", "111111111111", ADMIN_USER),
            now_ms: 1,
        };
        assert_eq!(ids.apply(cmd.clone()), Ok(IdentityOutcome::Done));
        assert_eq!(ids.apply(cmd), Ok(IdentityOutcome::AlreadyBootstrapped));
        ids
    }

    #[test]
    fn bootstrap_creates_the_operator_with_an_admin_key_once() {
        let ids = bootstrapped();
        assert_eq!(ids.operator_account.as_deref(), Some("111111111111"));
        let admin = ids.user("111111111111", ADMIN_USER).unwrap();
        assert!(admin.managed_policies.contains(ADMINISTRATOR_ACCESS));
        assert_eq!(ids.access_keys.len(), 1);
        assert!(matches!(
            ids.clone().apply(IdentityCommand::DeleteAccount {
                account: "111111111111".into()
            }),
            Err(IdentityError::Invalid(_))
        ));
    }

    #[test]
    fn users_keys_and_policies() {
        let mut ids = bootstrapped();
        let a = "111111111111".to_string();
        let user = |name: &str| IdentityCommand::CreateUser {
            account: a.clone(),
            name: name.into(),
            now_ms: 2,
        };
        ids.apply(user("reader")).unwrap();
        assert!(matches!(
            ids.apply(user("reader")),
            Err(IdentityError::EntityAlreadyExists(_))
        ));
        for id in ["K1", "K2"] {
            ids.apply(IdentityCommand::CreateAccessKey {
                key: key(id, &a, "reader"),
            })
            .unwrap();
        }
        assert!(matches!(
            ids.apply(IdentityCommand::CreateAccessKey {
                key: key("K3", &a, "reader")
            }),
            Err(IdentityError::LimitExceeded(_))
        ));
        let attach = |policy| IdentityCommand::AttachPolicy {
            account: a.clone(),
            user: "reader".into(),
            policy,
        };
        ids.apply(attach(PolicyAttachment::Managed(
            "AmazonPrometheusQueryAccess".into(),
        )))
        .unwrap();
        assert!(matches!(
            ids.apply(attach(PolicyAttachment::Managed("Nope".into()))),
            Err(IdentityError::NoSuchEntity(_))
        ));
        assert!(matches!(
            ids.apply(attach(PolicyAttachment::Inline {
                name: "bad".into(),
                document: "{}".into()
            })),
            Err(IdentityError::MalformedPolicyDocument(_))
        ));
        let reader = ids.user(&a, "reader").unwrap();
        assert_eq!(
            policy::evaluate(&reader.policies(), "aps:QueryMetrics", "*"),
            policy::Decision::Allow
        );
        ids.apply(IdentityCommand::DetachPolicy {
            account: a.clone(),
            user: "reader".into(),
            name: "AmazonPrometheusQueryAccess".into(),
        })
        .unwrap();
        assert!(ids.user(&a, "reader").unwrap().policies().is_empty());
        // Deleting the user deletes its keys.
        ids.apply(IdentityCommand::DeleteUser {
            account: a.clone(),
            name: "reader".into(),
        })
        .unwrap();
        assert_eq!(ids.access_keys.len(), 1);
        // Another account's key cannot be deleted through this account.
        assert!(ids
            .apply(IdentityCommand::DeleteAccessKey {
                account: "222222222222".into(),
                user: ADMIN_USER.into(),
                id: "AKIAOP".into()
            })
            .is_err());
    }

    #[test]
    fn tokens_are_scoped_to_their_workspace_and_account() {
        let mut ids = bootstrapped();
        let (id, token, digest) = new_workspace_token();
        assert_eq!(
            split_workspace_token(&token).map(|(i, _)| i),
            Some(id.as_str())
        );
        let (_, secret) = split_workspace_token(&token).unwrap();
        assert_eq!(token_digest(secret), digest);
        ids.apply(IdentityCommand::CreateToken {
            token: WorkspaceToken {
                id: id.clone(),
                account: "111111111111".into(),
                workspace: "ws-1".into(),
                scope: TokenScope::Read,
                name: None,
                secret_sha256: digest,
                created_at_ms: 3,
            },
        })
        .unwrap();
        let revoke = |account: &str, workspace: &str| IdentityCommand::RevokeToken {
            account: account.into(),
            workspace: workspace.into(),
            id: id.clone(),
        };
        assert!(ids.apply(revoke("111111111111", "ws-2")).is_err());
        assert!(ids.apply(revoke("222222222222", "ws-1")).is_err());
        ids.apply(revoke("111111111111", "ws-1")).unwrap();
        assert!(ids.tokens.is_empty());
        assert!(TokenScope::Read.allows("aps:QueryMetrics"));
        assert!(!TokenScope::Read.allows("aps:RemoteWrite"));
        assert!(TokenScope::Write.allows("aps:RemoteWrite"));
        assert!(!TokenScope::Write.allows("aps:DeleteWorkspace"));
    }

    #[test]
    fn generated_ids_have_aws_shapes() {
        let k = new_access_key_id();
        assert!(k.starts_with("AKIA") && k.len() == 20);
        assert_eq!(new_secret_access_key().len(), 40);
        assert!(new_account_id().chars().all(|c| c.is_ascii_digit()));
        assert!(check_name("UserName", "alice.b@x").is_ok());
        assert!(check_name("UserName", "a/b").is_err());
        assert!(check_name("UserName", "").is_err());
    }
}
