//! The identity API: accounts (operator only), users, access keys, attached policies and
//! workspace tokens, all in the caller's account. Secrets are generated here, sealed into the
//! Raft command and returned once; the audit log never sees them.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, post};
use axum::Router;
use hestia_auth::identity::{
    check_name, new_access_key_id, new_account_id, new_secret_access_key, new_workspace_token,
    AccessKey, Identities, IdentityCommand, IdentityOutcome, PolicyAttachment, TokenScope,
    WorkspaceToken, ADMIN_USER,
};
use hestia_auth::policy::{evaluate, Decision};
use hestia_auth::PrincipalKind;
use serde_json::{json, Map, Value};

use crate::api::{body_object, call, opt_str, Api, ApiState, Caller};
use crate::error::CpError;
use crate::node::ControlPlane;
use crate::state::{Command, Outcome};

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn params_of(parsed: &Result<Map<String, Value>, CpError>) -> Value {
    parsed
        .as_ref()
        .map(|m| Value::Object(m.clone()))
        .unwrap_or(Value::Null)
}

fn required<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, CpError> {
    opt_str(m, name)?.ok_or_else(|| CpError::field(name, "Member must not be null"))
}

impl Api {
    async fn identity(&self, cmd: IdentityCommand) -> Result<(), CpError> {
        self.cp.write(Command::Identity(cmd)).await?;
        if let Some(auth) = &self.auth {
            auth.update(&self.cp.sm.read(|s| s.identities.clone()));
        }
        Ok(())
    }

    async fn identities<T>(&self, f: impl FnOnce(&Identities) -> T) -> Result<T, CpError> {
        self.cp.read(|s| f(&s.identities)).await
    }

    /// A new access key for `user` of `account`: the command to replicate and the secret to
    /// hand out once.
    fn new_key(&self, account: &str, user: &str) -> Result<(AccessKey, String), CpError> {
        let master = self.master.as_ref().ok_or_else(|| {
            CpError::cannot_parse("authentication is disabled on this server: no master key")
        })?;
        let id = new_access_key_id();
        let secret = new_secret_access_key();
        let key = AccessKey {
            sealed_secret: master.seal(secret.as_bytes(), id.as_bytes()),
            id,
            account: account.to_string(),
            user: user.to_string(),
            created_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        Ok((key, secret))
    }

    fn user_arn(account: &str, name: &str) -> String {
        format!("arn:aws:iam::{account}:user/{name}")
    }
}

async fn create_account(State(api): ApiState, who: Caller, body: Bytes) -> Response {
    let parsed = body_object(&body);
    let params = params_of(&parsed);
    call(
        &api,
        "CreateAccount",
        false,
        who,
        params,
        StatusCode::CREATED,
        async {
            let m = parsed?;
            let name = required(&m, "name")?;
            check_name("name", name)?;
            let account = new_account_id();
            let (key, secret) = api.new_key(&account, ADMIN_USER)?;
            let key_id = key.id.clone();
            api.identity(IdentityCommand::CreateAccount {
                account: account.clone(),
                name: name.to_string(),
                key,
                now_ms: chrono::Utc::now().timestamp_millis(),
            })
            .await?;
            Ok(Some(json!({
                "accountId": account,
                "name": name,
                "userName": ADMIN_USER,
                "accessKeyId": key_id,
                "secretAccessKey": secret,
            })))
        },
    )
    .await
}

async fn list_accounts(State(api): ApiState, who: Caller) -> Response {
    call(
        &api,
        "ListAccounts",
        true,
        who,
        json!({}),
        StatusCode::OK,
        async {
            let accounts = api
                .identities(|ids| {
                    ids.accounts
                        .values()
                        .map(|a| {
                            json!({
                                "accountId": a.id,
                                "name": a.name,
                                "createdAt": seconds(a.created_at_ms),
                                "operator": ids.operator_account.as_deref() == Some(a.id.as_str()),
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .await?;
            Ok(Some(json!({ "accounts": accounts })))
        },
    )
    .await
}

async fn delete_account(State(api): ApiState, who: Caller, Path(id): Path<String>) -> Response {
    let params = json!({ "accountId": id });
    call(
        &api,
        "DeleteAccount",
        false,
        who,
        params,
        StatusCode::NO_CONTENT,
        async {
            api.identity(IdentityCommand::DeleteAccount {
                account: id.clone(),
            })
            .await?;
            Ok(None)
        },
    )
    .await
}

async fn create_user(State(api): ApiState, who: Caller, body: Bytes) -> Response {
    let account = who.principal.account.clone();
    let parsed = body_object(&body);
    let params = params_of(&parsed);
    call(
        &api,
        "CreateUser",
        false,
        who,
        params,
        StatusCode::CREATED,
        async {
            let m = parsed?;
            let name = required(&m, "userName")?;
            check_name("userName", name)?;
            let now_ms = chrono::Utc::now().timestamp_millis();
            api.identity(IdentityCommand::CreateUser {
                account: account.clone(),
                name: name.to_string(),
                now_ms,
            })
            .await?;
            Ok(Some(json!({"user": {
                "userName": name,
                "arn": Api::user_arn(&account, name),
                "createdAt": seconds(now_ms),
            }})))
        },
    )
    .await
}

fn policies_json(u: &hestia_auth::identity::User) -> Vec<Value> {
    let managed = u
        .managed_policies
        .iter()
        .map(|n| json!({"policyName": n, "type": "managed"}));
    let inline = u.inline_policies.iter().map(|(n, d)| {
        let doc = serde_json::from_str::<Value>(d).unwrap_or(Value::Null);
        json!({"policyName": n, "type": "inline", "policyDocument": doc})
    });
    managed.chain(inline).collect()
}

async fn list_users(State(api): ApiState, who: Caller) -> Response {
    let account = who.principal.account.clone();
    call(
        &api,
        "ListUsers",
        true,
        who,
        json!({}),
        StatusCode::OK,
        async {
            let users = api
                .identities(|ids| {
                    let a = ids.account(&account)?;
                    Ok::<_, CpError>(
                        a.users
                            .values()
                            .map(|u| {
                                json!({
                                    "userName": u.name,
                                    "arn": Api::user_arn(&account, &u.name),
                                    "createdAt": seconds(u.created_at_ms),
                                    "policies": policies_json(u),
                                })
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .await??;
            Ok(Some(json!({ "users": users })))
        },
    )
    .await
}

async fn delete_user(State(api): ApiState, who: Caller, Path(name): Path<String>) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "userName": name });
    call(
        &api,
        "DeleteUser",
        false,
        who,
        params,
        StatusCode::NO_CONTENT,
        async {
            api.identity(IdentityCommand::DeleteUser {
                account,
                name: name.clone(),
            })
            .await?;
            Ok(None)
        },
    )
    .await
}

async fn create_access_key(
    State(api): ApiState,
    who: Caller,
    Path(user): Path<String>,
) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "userName": user });
    call(
        &api,
        "CreateAccessKey",
        false,
        who,
        params,
        StatusCode::CREATED,
        async {
            let (key, secret) = api.new_key(&account, &user)?;
            let (id, created) = (key.id.clone(), key.created_at_ms);
            api.identity(IdentityCommand::CreateAccessKey { key })
                .await?;
            Ok(Some(json!({"accessKey": {
                "userName": user,
                "accessKeyId": id,
                "secretAccessKey": secret,
                "status": "Active",
                "createdAt": seconds(created),
            }})))
        },
    )
    .await
}

async fn list_access_keys(State(api): ApiState, who: Caller, Path(user): Path<String>) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "userName": user });
    call(
        &api,
        "ListAccessKeys",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            let keys = api
                .identities(|ids| {
                    ids.user(&account, &user)?;
                    Ok::<_, CpError>(
                        ids.access_keys
                            .values()
                            .filter(|k| k.account == account && k.user == user)
                            .map(|k| {
                                json!({
                                    "userName": k.user,
                                    "accessKeyId": k.id,
                                    "status": "Active",
                                    "createdAt": seconds(k.created_at_ms),
                                })
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .await??;
            Ok(Some(json!({ "accessKeys": keys })))
        },
    )
    .await
}

async fn delete_access_key(
    State(api): ApiState,
    who: Caller,
    Path((user, id)): Path<(String, String)>,
) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "userName": user, "accessKeyId": id });
    call(
        &api,
        "DeleteAccessKey",
        false,
        who,
        params,
        StatusCode::NO_CONTENT,
        async {
            api.identity(IdentityCommand::DeleteAccessKey {
                account,
                user: user.clone(),
                id: id.clone(),
            })
            .await?;
            Ok(None)
        },
    )
    .await
}

async fn attach_policy(
    State(api): ApiState,
    who: Caller,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let account = who.principal.account.clone();
    let parsed = body_object(&body);
    let mut params = params_of(&parsed);
    if params.is_object() {
        params["userName"] = Value::from(user.as_str());
    }
    call(
        &api,
        "AttachUserPolicy",
        false,
        who,
        params,
        StatusCode::OK,
        async {
            let m = parsed?;
            let name = required(&m, "policyName")?;
            check_name("policyName", name)?;
            let policy = match m.get("policyDocument") {
                None | Some(Value::Null) => PolicyAttachment::Managed(name.to_string()),
                Some(Value::String(doc)) => PolicyAttachment::Inline {
                    name: name.to_string(),
                    document: doc.clone(),
                },
                Some(doc @ Value::Object(_)) => PolicyAttachment::Inline {
                    name: name.to_string(),
                    document: doc.to_string(),
                },
                Some(_) => {
                    return Err(CpError::field(
                        "policyDocument",
                        "must be a JSON policy document (object or string)",
                    ))
                }
            };
            api.identity(IdentityCommand::AttachPolicy {
                account: account.clone(),
                user: user.clone(),
                policy,
            })
            .await?;
            let policies = api
                .identities(|ids| ids.user(&account, &user).map(policies_json))
                .await??;
            Ok(Some(json!({ "policies": policies })))
        },
    )
    .await
}

async fn list_policies(State(api): ApiState, who: Caller, Path(user): Path<String>) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "userName": user });
    call(
        &api,
        "ListAttachedUserPolicies",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            let policies = api
                .identities(|ids| ids.user(&account, &user).map(policies_json))
                .await??;
            Ok(Some(json!({ "policies": policies })))
        },
    )
    .await
}

async fn detach_policy(
    State(api): ApiState,
    who: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "userName": user, "policyName": name });
    call(
        &api,
        "DetachUserPolicy",
        false,
        who,
        params,
        StatusCode::NO_CONTENT,
        async {
            api.identity(IdentityCommand::DetachPolicy {
                account,
                user: user.clone(),
                name: name.clone(),
            })
            .await?;
            Ok(None)
        },
    )
    .await
}

async fn create_token(
    State(api): ApiState,
    who: Caller,
    Path(workspace): Path<String>,
    body: Bytes,
) -> Response {
    let account = who.principal.account.clone();
    let principal = who.principal.clone();
    let parsed = body_object(&body);
    let mut params = params_of(&parsed);
    if params.is_object() {
        params["workspaceId"] = Value::from(workspace.as_str());
    }
    call(
        &api,
        "CreateToken",
        false,
        who,
        params,
        StatusCode::CREATED,
        async {
            let m = parsed?;
            let scope = required(&m, "scope")?;
            let scope = TokenScope::parse(scope)
                .ok_or_else(|| CpError::field("scope", "Member must be read or write"))?;
            let name = opt_str(&m, "name")?;
            if let Some(n) = name {
                check_name("name", n)?;
            }
            api.workspace(&account, &workspace).await?;
            // A token grants only what its creator may do itself: no escalation through tokens.
            if let PrincipalKind::User { policies, .. } = &principal.kind {
                let resource = format!(
                    "arn:aws:aps:{}:{account}:workspace/{workspace}",
                    api.cp.cfg.region
                );
                for action in scope.actions() {
                    if evaluate(policies, action, &resource) != Decision::Allow {
                        return Err(CpError::AccessDenied(format!(
                            "User: {} is not authorized to perform: {action} on resource: \
                             {resource}, which a {} token would grant",
                            principal.arn,
                            scope.as_str()
                        )));
                    }
                }
            }
            let (id, token, digest) = new_workspace_token();
            let created = chrono::Utc::now().timestamp_millis();
            api.identity(IdentityCommand::CreateToken {
                token: WorkspaceToken {
                    id: id.clone(),
                    account: account.clone(),
                    workspace: workspace.clone(),
                    scope,
                    name: name.map(str::to_string),
                    secret_sha256: digest,
                    created_at_ms: created,
                },
            })
            .await?;
            let mut v = json!({
                "tokenId": id,
                "token": token,
                "workspaceId": workspace,
                "scope": scope.as_str(),
                "createdAt": seconds(created),
            });
            if let Some(n) = name {
                v["name"] = Value::from(n);
            }
            Ok(Some(v))
        },
    )
    .await
}

async fn list_tokens(State(api): ApiState, who: Caller, Path(workspace): Path<String>) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "workspaceId": workspace });
    call(
        &api,
        "ListTokens",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            api.workspace(&account, &workspace).await?;
            let tokens = api
                .identities(|ids| {
                    ids.tokens
                        .values()
                        .filter(|t| t.account == account && t.workspace == workspace)
                        .map(|t| {
                            let mut v = json!({
                                "tokenId": t.id,
                                "scope": t.scope.as_str(),
                                "createdAt": seconds(t.created_at_ms),
                            });
                            if let Some(n) = &t.name {
                                v["name"] = Value::from(n.as_str());
                            }
                            v
                        })
                        .collect::<Vec<_>>()
                })
                .await?;
            Ok(Some(json!({ "tokens": tokens })))
        },
    )
    .await
}

async fn revoke_token(
    State(api): ApiState,
    who: Caller,
    Path((workspace, id)): Path<(String, String)>,
) -> Response {
    let account = who.principal.account.clone();
    let params = json!({ "workspaceId": workspace, "tokenId": id });
    call(
        &api,
        "RevokeToken",
        false,
        who,
        params,
        StatusCode::NO_CONTENT,
        async {
            api.workspace(&account, &workspace).await?;
            api.identity(IdentityCommand::RevokeToken {
                account,
                workspace: workspace.clone(),
                id: id.clone(),
            })
            .await?;
            Ok(None)
        },
    )
    .await
}

/// The identity routes (the auth middleware decides who may call them).
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/admin/accounts", post(create_account).get(list_accounts))
        .route("/admin/accounts/{account}", delete(delete_account))
        .route("/admin/users", post(create_user).get(list_users))
        .route("/admin/users/{user}", delete(delete_user))
        .route(
            "/admin/users/{user}/access-keys",
            post(create_access_key).get(list_access_keys),
        )
        .route(
            "/admin/users/{user}/access-keys/{key}",
            delete(delete_access_key),
        )
        .route(
            "/admin/users/{user}/policies",
            post(attach_policy).get(list_policies),
        )
        .route(
            "/admin/users/{user}/policies/{policy}",
            delete(detach_policy),
        )
        .route(
            "/workspaces/{workspace}/tokens",
            post(create_token).get(list_tokens),
        )
        .route(
            "/workspaces/{workspace}/tokens/{token}",
            delete(revoke_token),
        )
        .with_state(api)
}

/// Keeps `auth` current with this node's applied identities until the node closes.
pub fn follow_identities(
    cp: Arc<ControlPlane>,
    auth: Arc<hestia_auth::Authenticator>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = cp.sm.subscribe();
        loop {
            auth.update(&cp.sm.read(|s| s.identities.clone()));
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = cp.closed() => return,
            }
        }
    })
}

/// Where the first start wrote the operator's credentials.
#[derive(Debug, Clone)]
pub struct BootstrapCredentials {
    pub credentials_file: PathBuf,
    pub config_file: PathBuf,
    pub account: String,
    pub access_key_id: String,
}

impl BootstrapCredentials {
    /// Tells the operator (stdout) where the credentials are and how to use them.
    pub fn announce(&self, region: &str, endpoint: &str) {
        let env = format!(
            "AWS_SHARED_CREDENTIALS_FILE={} AWS_CONFIG_FILE={} AWS_PROFILE={PROFILE}",
            self.credentials_file.display(),
            self.config_file.display()
        );
        println!(
            "Created the operator account {} and an admin access key {}.\n\
             Credentials: {} (profile {PROFILE}); region {region}; endpoint {endpoint}\n\
             Try: {env} aws amp list-workspaces --endpoint-url {endpoint}",
            self.account,
            self.access_key_id,
            self.credentials_file.display(),
        );
        tracing::info!(
            account = %self.account,
            credentials = %self.credentials_file.display(),
            "created the operator account"
        );
    }
}

/// The profile the credentials file holds.
pub const PROFILE: &str = "hestia";

/// On a cluster's first start: creates the operator account (`control_plane.account_id`) with
/// its admin user and access key, and writes `<dir>/credentials` (AWS shared-credentials format,
/// profile `hestia`, mode 0600) and `<dir>/config` (region, endpoint). `None` when the cluster
/// already has accounts (or another node's bootstrap won). The file is written before the
/// command is proposed, so a crash in between cannot lose the only admin key.
pub async fn bootstrap_identities(
    cp: &ControlPlane,
    master: &hestia_auth::secrets::MasterKey,
    dir: &FsPath,
    endpoint: &str,
) -> Result<Option<BootstrapCredentials>, CpError> {
    if cp.read(|s| !s.identities.accounts.is_empty()).await? {
        return Ok(None);
    }
    let account = cp.cfg.account_id.clone();
    let id = new_access_key_id();
    let secret = new_secret_access_key();
    let key = AccessKey {
        sealed_secret: master.seal(secret.as_bytes(), id.as_bytes()),
        id: id.clone(),
        account: account.clone(),
        user: ADMIN_USER.to_string(),
        created_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    let io = |e: std::io::Error| CpError::Internal(format!("writing credentials: {e}"));
    let credentials_file = dir.join("credentials");
    let pending = dir.join("credentials.pending");
    let text = format!("[{PROFILE}]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n");
    write_private(&pending, &text).map_err(io)?;
    let outcome = cp
        .write(Command::Identity(IdentityCommand::Bootstrap {
            account: account.clone(),
            name: "operator".to_string(),
            key,
            now_ms: chrono::Utc::now().timestamp_millis(),
        }))
        .await;
    match outcome {
        Ok(Outcome::Identity(IdentityOutcome::Done)) => {}
        other => {
            let _ = std::fs::remove_file(&pending);
            return other.map(|_| None);
        }
    }
    std::fs::rename(&pending, &credentials_file).map_err(io)?;
    let credentials_file = std::fs::canonicalize(&credentials_file).unwrap_or(credentials_file);
    let config_file = dir.join("config");
    let config = format!(
        "[profile {PROFILE}]\nregion = {}\nendpoint_url = {endpoint}\n",
        cp.cfg.region
    );
    write_private(&config_file, &config).map_err(io)?;
    let config_file = std::fs::canonicalize(&config_file).unwrap_or(config_file);
    Ok(Some(BootstrapCredentials {
        credentials_file,
        config_file,
        account,
        access_key_id: id,
    }))
}

fn write_private(path: &FsPath, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
