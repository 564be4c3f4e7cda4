//! Who is calling, and may they: [`Authenticator`] turns a request's credentials (SigV4, a
//! bearer token, Basic, or a bare workspace token) into a [`Principal`] from the current identity
//! [`Directory`], then evaluates the principal's policies for the route's action.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use parking_lot::RwLock;

use crate::crypto::constant_time_eq;
use crate::identity::{split_workspace_token, token_digest, Identities, TokenScope};
use crate::policy::{evaluate, Decision, Policy, RouteAction};
use crate::secrets::MasterKey;
use crate::token::{Claims, TokenError, TokenIssuer};
use crate::{AuthError, Credentials, SigV4Config, Verifier};

/// How a principal proved who it is.
#[derive(Debug, Clone)]
pub enum PrincipalKind {
    /// An IAM user (SigV4, Basic, or an OAuth2 token issued for its key).
    User {
        name: String,
        access_key_id: String,
        policies: Arc<Vec<Policy>>,
    },
    /// A workspace token: its scope on its workspace only.
    Token {
        id: String,
        workspace: String,
        scope: TokenScope,
    },
    /// Authentication is disabled: everything is allowed.
    Anonymous,
}

/// An authenticated caller, in the request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account: String,
    /// `arn:aws:iam::<account>:user/<name>`, the token's ARN, or the account root.
    pub arn: String,
    pub kind: PrincipalKind,
}

impl Principal {
    /// The caller when authentication is disabled: the account root, allowed everything.
    pub fn anonymous(account: &str) -> Principal {
        Principal {
            account: account.to_string(),
            arn: format!("arn:aws:iam::{account}:root"),
            kind: PrincipalKind::Anonymous,
        }
    }

    pub fn access_key_id(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::User { access_key_id, .. } => Some(access_key_id),
            _ => None,
        }
    }
}

/// Why an authenticated principal may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("User: {arn} is not authorized to perform: {action} on resource: {resource}")]
pub struct Denied {
    pub arn: String,
    pub action: String,
    pub resource: String,
}

struct KeyEntry {
    account: String,
    user: String,
    secret: String,
    policies: Arc<Vec<Policy>>,
}

struct TokenEntry {
    account: String,
    workspace: String,
    scope: TokenScope,
    digest: String,
}

/// The identity state compiled for lookups: secrets opened, policies parsed.
#[derive(Default)]
pub struct Directory {
    operator: Option<String>,
    keys: HashMap<String, KeyEntry>,
    tokens: HashMap<String, TokenEntry>,
}

impl Directory {
    pub fn compile(ids: &Identities, master: &MasterKey) -> Directory {
        let mut policies: HashMap<(&str, &str), Arc<Vec<Policy>>> = HashMap::new();
        for a in ids.accounts.values() {
            for u in a.users.values() {
                policies.insert((&a.id, &u.name), Arc::new(u.policies()));
            }
        }
        let mut keys = HashMap::new();
        for k in ids.access_keys.values() {
            let Some(p) = policies.get(&(k.account.as_str(), k.user.as_str())) else {
                continue;
            };
            match master
                .open(&k.sealed_secret, k.id.as_bytes())
                .map(String::from_utf8)
            {
                Ok(Ok(secret)) => {
                    keys.insert(
                        k.id.clone(),
                        KeyEntry {
                            account: k.account.clone(),
                            user: k.user.clone(),
                            secret,
                            policies: p.clone(),
                        },
                    );
                }
                _ => tracing::error!(
                    access_key_id = %k.id,
                    "cannot open the access key's secret: is this node's master key the cluster's?"
                ),
            }
        }
        let tokens = ids
            .tokens
            .values()
            .map(|t| {
                (
                    t.id.clone(),
                    TokenEntry {
                        account: t.account.clone(),
                        workspace: t.workspace.clone(),
                        scope: t.scope,
                        digest: t.secret_sha256.clone(),
                    },
                )
            })
            .collect();
        Directory {
            operator: ids.operator_account.clone(),
            keys,
            tokens,
        }
    }

    fn user(&self, access_key_id: &str) -> Option<Principal> {
        let k = self.keys.get(access_key_id)?;
        Some(Principal {
            account: k.account.clone(),
            arn: format!("arn:aws:iam::{}:user/{}", k.account, k.user),
            kind: PrincipalKind::User {
                name: k.user.clone(),
                access_key_id: access_key_id.to_string(),
                policies: k.policies.clone(),
            },
        })
    }
}

/// A request's credentials, as found in its headers or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    SigV4,
    Bearer(&'a str),
    Basic(&'a str),
    None,
}

impl<'a> Presented<'a> {
    pub fn of(authorization: Option<&'a str>, query: Option<&str>) -> Presented<'a> {
        match authorization.map(str::trim) {
            Some(a) if a.starts_with("AWS4-") => Presented::SigV4,
            Some(a) => match a.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Presented::Bearer(rest.trim())
                }
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
                    Presented::Basic(rest.trim())
                }
                // Seed 004's V1 clients send the bare token.
                None if !a.is_empty() => Presented::Bearer(a),
                _ => Presented::None,
            },
            None if query.is_some_and(|q| q.contains("X-Amz-Signature=")) => Presented::SigV4,
            None => Presented::None,
        }
    }
}

pub struct Authenticator {
    verifier: Verifier,
    issuer: TokenIssuer,
    master: MasterKey,
    directory: RwLock<Arc<Directory>>,
    /// What `directory` was compiled from: updates that change no identity (every workspace
    /// change reaches `update` too) skip opening every secret again.
    compiled_from: parking_lot::Mutex<Identities>,
    token_ttl: Duration,
}

impl Authenticator {
    pub fn new(cfg: SigV4Config, master: MasterKey, token_ttl: Duration) -> Authenticator {
        Authenticator {
            verifier: Verifier::new(cfg),
            issuer: TokenIssuer::new(&master),
            master,
            directory: RwLock::new(Arc::new(Directory::default())),
            compiled_from: parking_lot::Mutex::new(Identities::default()),
            token_ttl,
        }
    }

    pub fn region(&self) -> &str {
        &self.verifier.config().region
    }

    /// Replaces the identities lookups use.
    pub fn update(&self, ids: &Identities) {
        let mut from = self.compiled_from.lock();
        if *from == *ids {
            return;
        }
        let d = Arc::new(Directory::compile(ids, &self.master));
        *self.directory.write() = d;
        *from = ids.clone();
    }

    fn directory(&self) -> Arc<Directory> {
        self.directory.read().clone()
    }

    /// The caller of `req` at `now`.
    pub fn authenticate(
        &self,
        req: &crate::RequestParts<'_>,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        let authorization = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let dir = self.directory();
        match Presented::of(authorization, req.query) {
            Presented::SigV4 => {
                let v = self.verifier.verify(req, now, |id| {
                    dir.keys.get(id).map(|k| Credentials {
                        access_key_id: id.to_string(),
                        secret_access_key: k.secret.clone(),
                        session_token: None,
                    })
                })?;
                dir.user(&v.access_key_id)
                    .ok_or(AuthError::UnrecognizedClient)
            }
            Presented::Basic(b64) => {
                let decoded = STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        AuthError::IncompleteSignature("malformed Basic credentials".into())
                    })?;
                let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                    AuthError::IncompleteSignature("malformed Basic credentials".into())
                })?;
                self.key_pair(&dir, id, secret)
            }
            Presented::Bearer(token) => self.bearer(&dir, token, now),
            Presented::None => Err(AuthError::MissingAuthenticationToken),
        }
    }

    fn key_pair(&self, dir: &Directory, id: &str, secret: &str) -> Result<Principal, AuthError> {
        let k = dir.keys.get(id).ok_or(AuthError::UnrecognizedClient)?;
        if !constant_time_eq(k.secret.as_bytes(), secret.as_bytes()) {
            return Err(AuthError::SignatureMismatch);
        }
        dir.user(id).ok_or(AuthError::UnrecognizedClient)
    }

    fn bearer(
        &self,
        dir: &Directory,
        token: &str,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        if let Some((id, secret)) = split_workspace_token(token) {
            let t = dir.tokens.get(id).ok_or(AuthError::UnrecognizedClient)?;
            if !constant_time_eq(t.digest.as_bytes(), token_digest(secret).as_bytes()) {
                return Err(AuthError::UnrecognizedClient);
            }
            return Ok(Principal {
                account: t.account.clone(),
                arn: format!(
                    "arn:aws:aps:{}:{}:workspace/{}/token/{id}",
                    self.region(),
                    t.account,
                    t.workspace
                ),
                kind: PrincipalKind::Token {
                    id: id.to_string(),
                    workspace: t.workspace.clone(),
                    scope: t.scope,
                },
            });
        }
        let claims = self
            .issuer
            .verify(token, unix_secs(now))
            .map_err(|e| match e {
                TokenError::Expired(_) => AuthError::ExpiredToken,
                _ => AuthError::UnrecognizedClient,
            })?;
        // The key must still exist: deleting it revokes the tokens issued for it.
        dir.user(&claims.access_key_id)
            .filter(|p| p.account == claims.account)
            .ok_or(AuthError::UnrecognizedClient)
    }

    /// OAuth2 client credentials: an access key pair for a short-lived bearer token and its
    /// lifetime in seconds.
    pub fn issue_token(
        &self,
        client_id: &str,
        client_secret: &str,
        now: SystemTime,
    ) -> Result<(String, u64), AuthError> {
        let p = self.key_pair(&self.directory(), client_id, client_secret)?;
        let issued_at = unix_secs(now);
        let ttl = self.token_ttl.as_secs();
        let token = self.issuer.issue(&Claims {
            access_key_id: client_id.to_string(),
            account: p.account,
            issued_at,
            expires_at: issued_at + ttl as i64,
        });
        Ok((token, ttl))
    }

    /// Whether `p` may perform `route`.
    pub fn authorize(&self, p: &Principal, route: &RouteAction<'_>) -> Result<(), Denied> {
        let resource = route.resource(self.region(), &p.account);
        let allowed = match &p.kind {
            PrincipalKind::Anonymous => true,
            PrincipalKind::Token {
                workspace, scope, ..
            } => route.workspace() == Some(workspace.as_str()) && scope.allows(route.action),
            PrincipalKind::User { policies, .. } => {
                let operator_ok = !route.operator_only()
                    || self.directory().operator.as_deref() == Some(p.account.as_str());
                operator_ok && evaluate(policies, route.action, &resource) == Decision::Allow
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(Denied {
                arn: p.arn.clone(),
                action: route.action.to_string(),
                resource,
            })
        }
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{
        AccessKey, IdentityCommand, PolicyAttachment, WorkspaceToken, ADMIN_USER,
    };
    use crate::policy::route_action;
    use crate::RequestParts;

    const OPERATOR: &str = "111111111111";
    const OTHER: &str = "222222222222";

    fn setup() -> (Authenticator, Identities, MasterKey) {
        let master = MasterKey::generate();
        let mut ids = Identities::default();
        let key = |id: &str, account: &str, user: &str, secret: &str| AccessKey {
            id: id.into(),
            account: account.into(),
            user: user.into(),
            sealed_secret: master.seal(secret.as_bytes(), id.as_bytes()),
            created_at_ms: 1,
        };
        ids.apply(IdentityCommand::Bootstrap {
            account: OPERATOR.into(),
            name: "operator".into(),
            key: key("AKIAOPERATOR", OPERATOR, ADMIN_USER, "op-secret"),
            now_ms: 1,
        })
        .unwrap();
        ids.apply(IdentityCommand::CreateAccount {
            account: OTHER.into(),
            name: "team".into(),
            key: key("AKIATEAM", OTHER, ADMIN_USER, "team-secret"),
            now_ms: 1,
        })
        .unwrap();
        ids.apply(IdentityCommand::CreateUser {
            account: OTHER.into(),
            name: "reader".into(),
            now_ms: 1,
        })
        .unwrap();
        ids.apply(IdentityCommand::AttachPolicy {
            account: OTHER.into(),
            user: "reader".into(),
            policy: PolicyAttachment::Managed("AmazonPrometheusQueryAccess".into()),
        })
        .unwrap();
        ids.apply(IdentityCommand::CreateAccessKey {
            key: key("AKIAREADER", OTHER, "reader", "reader-secret"),
        })
        .unwrap();
        ids.apply(IdentityCommand::CreateToken {
            token: WorkspaceToken {
                id: "tok1".into(),
                account: OTHER.into(),
                workspace: "ws-1".into(),
                scope: TokenScope::Write,
                name: None,
                secret_sha256: token_digest("s3cret"),
                created_at_ms: 1,
            },
        })
        .unwrap();
        let a = Authenticator::new(
            SigV4Config::new("us-east-1", "aps"),
            master.clone(),
            Duration::from_secs(3600),
        );
        a.update(&ids);
        (a, ids, master)
    }

    fn with_auth(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn parts<'a>(headers: &'a http::HeaderMap, path: &'a str) -> RequestParts<'a> {
        RequestParts {
            method: "POST",
            path,
            query: None,
            headers,
            body: Some(b""),
        }
    }

    #[test]
    fn basic_bearer_and_workspace_tokens() {
        let (a, mut ids, _) = setup();
        let now = SystemTime::now();
        let basic = |pair: &str| with_auth(&format!("Basic {}", STANDARD.encode(pair)));
        let h = basic("AKIAREADER:reader-secret");
        let p = a.authenticate(&parts(&h, "/"), now).unwrap();
        assert_eq!(p.arn, format!("arn:aws:iam::{OTHER}:user/reader"));
        let h = basic("AKIAREADER:wrong");
        assert_eq!(
            a.authenticate(&parts(&h, "/"), now).unwrap_err(),
            AuthError::SignatureMismatch
        );
        let h = basic("AKIANOPE:x");
        assert_eq!(
            a.authenticate(&parts(&h, "/"), now).unwrap_err(),
            AuthError::UnrecognizedClient
        );

        // Workspace token: bearer and bare, write scope on its workspace only.
        for value in ["Bearer hwt_tok1_s3cret", "hwt_tok1_s3cret"] {
            let h = with_auth(value);
            let p = a.authenticate(&parts(&h, "/"), now).unwrap();
            let write = route_action("POST", "/workspaces/ws-1/api/v1/remote_write").unwrap();
            assert!(a.authorize(&p, &write).is_ok());
            let other = route_action("POST", "/workspaces/ws-2/api/v1/remote_write").unwrap();
            assert!(a.authorize(&p, &other).is_err());
            let query = route_action("GET", "/workspaces/ws-1/api/v1/query").unwrap();
            assert!(a.authorize(&p, &query).is_err());
        }
        let h = with_auth("Bearer hwt_tok1_wrong");
        assert!(a.authenticate(&parts(&h, "/"), now).is_err());

        // OAuth2: a token for the key pair acts as its user, until the key is deleted.
        assert!(a.issue_token("AKIAREADER", "wrong", now).is_err());
        let (token, ttl) = a.issue_token("AKIAREADER", "reader-secret", now).unwrap();
        assert_eq!(ttl, 3600);
        let h = with_auth(&format!("Bearer {token}"));
        let p = a.authenticate(&parts(&h, "/"), now).unwrap();
        let query = route_action("GET", "/workspaces/ws-1/api/v1/query").unwrap();
        assert!(a.authorize(&p, &query).is_ok());
        let later = now + Duration::from_secs(3601);
        assert_eq!(
            a.authenticate(&parts(&h, "/"), later).unwrap_err(),
            AuthError::ExpiredToken
        );
        ids.apply(IdentityCommand::DeleteAccessKey {
            account: OTHER.into(),
            user: "reader".into(),
            id: "AKIAREADER".into(),
        })
        .unwrap();
        a.update(&ids);
        assert_eq!(
            a.authenticate(&parts(&h, "/"), now).unwrap_err(),
            AuthError::UnrecognizedClient
        );
        let none = http::HeaderMap::new();
        assert_eq!(
            a.authenticate(&parts(&none, "/"), now).unwrap_err(),
            AuthError::MissingAuthenticationToken
        );
    }

    #[test]
    fn cluster_actions_need_the_operator_account() {
        let (a, _, _) = setup();
        let now = SystemTime::now();
        let basic = |pair: &str| with_auth(&format!("Basic {}", STANDARD.encode(pair)));
        let create = route_action("POST", "/admin/accounts").unwrap();
        let h = basic("AKIAOPERATOR:op-secret");
        let op = a.authenticate(&parts(&h, "/"), now).unwrap();
        assert!(a.authorize(&op, &create).is_ok());
        let h = basic("AKIATEAM:team-secret");
        let team = a.authenticate(&parts(&h, "/"), now).unwrap();
        let denied = a.authorize(&team, &create).unwrap_err();
        assert_eq!(
            denied.to_string(),
            format!(
                "User: arn:aws:iam::{OTHER}:user/admin is not authorized to perform: \
                 hestia:CreateAccount on resource: arn:aws:hestia:us-east-1:{OTHER}:cluster"
            )
        );
        // The team's admin manages its own users.
        let users = route_action("POST", "/admin/users").unwrap();
        assert!(a.authorize(&team, &users).is_ok());
    }

    #[test]
    fn a_foreign_master_key_opens_no_secret() {
        let (_, ids, _) = setup();
        let d = Directory::compile(&ids, &MasterKey::generate());
        assert!(d.keys.is_empty());
        assert_eq!(d.tokens.len(), 1);
    }
}
