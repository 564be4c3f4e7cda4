//! Client-side AWS logic shared by Hestia's tools (`hestia admin`, `hestia-loadgen`): static
//! credentials found the way the AWS CLI finds them (environment, shared credentials file,
//! config file), region and endpoint resolution, the AWS files' INI dialect, and SigV4 signing
//! with the `aws-sigv4` crate (service `aps` by default).

mod error;
mod ini;
mod resolve;
mod sign;

pub use error::AwsClientError;
pub use ini::{parse_ini, read_ini, Ini, Section};
pub use resolve::{
    file_credentials, resolve, AwsCredentials, AwsEnv, Target, DEFAULT_ENDPOINT, DEFAULT_PROFILE,
    DEFAULT_REGION,
};
pub use sign::{signed_headers, signed_headers_for, signed_headers_with, SERVICE};
