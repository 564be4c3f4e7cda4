//! Authentication and authorization of Hestia's clients. [`Verifier`] checks AWS Signature
//! Version 4 (the Authorization header and presigned URLs) the way AWS does; [`policy`] evaluates
//! IAM-style identity policies against the `aps:` action of each route; [`secrets`] seals stored
//! secrets under the master key; [`token`] issues and verifies short-lived bearer tokens.

mod crypto;
mod error;
pub mod policy;
pub mod secrets;
pub mod sigv4;
pub mod token;

pub use error::AuthError;
pub use sigv4::{Credentials, RequestParts, SigV4Config, Verified, Verifier};
