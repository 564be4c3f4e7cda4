//! Authentication and authorization of Hestia's clients. [`Verifier`] checks AWS Signature
//! Version 4 (the Authorization header and presigned URLs) the way AWS does; [`policy`] evaluates
//! IAM-style identity policies against the action of each route; [`identity`] is the replicated
//! state of accounts, users, keys and workspace tokens; [`authn`] turns a request's credentials
//! into a [`Principal`] and authorizes it; [`layer`] is the HTTP middleware in front of every
//! public route; [`secrets`] seals stored secrets under the master key; [`token`] issues and
//! verifies short-lived bearer tokens.

pub mod authn;
mod crypto;
mod error;
pub mod identity;
pub mod layer;
pub mod metrics;
pub mod policy;
pub mod secrets;
pub mod sigv4;
pub mod token;

pub use authn::{Authenticator, Principal, PrincipalKind};
pub use error::AuthError;
pub use layer::{AuditSink, AuthFailure, AuthLayer, AuthMode};
pub use sigv4::{Credentials, RequestParts, SigV4Config, Verified, Verifier};
