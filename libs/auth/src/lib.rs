//! Authentication of Hestia's clients. [`Verifier`] checks AWS Signature Version 4 (the
//! Authorization header and presigned URLs) the way AWS does; accounts, keys and policies come
//! from the control plane.

mod error;
pub mod sigv4;

pub use error::AuthError;
pub use sigv4::{Credentials, RequestParts, SigV4Config, Verified, Verifier};
