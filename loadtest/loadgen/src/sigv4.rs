//! SigV4 signing for Amazon Managed Service for Prometheus compatible endpoints (service `aps`),
//! with credentials from a profile of an AWS shared credentials file.
use std::time::SystemTime;

use hestia_aws_client::{
    file_credentials, signed_headers_for, AwsCredentials, AwsEnv, DEFAULT_PROFILE,
};
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};

use crate::{LoadgenError, Settings};

pub struct Signer {
    credentials: AwsCredentials,
    region: String,
}

impl Signer {
    /// Credentials of `--profile` (else $AWS_PROFILE, else `default`) in `--credentials-file`
    /// (else $AWS_SHARED_CREDENTIALS_FILE, else `~/.aws/credentials`), for `--region`.
    pub fn from_settings(s: &Settings) -> Result<Signer, LoadgenError> {
        let env = AwsEnv::from_process();
        let path = s
            .credentials_file
            .clone()
            .or_else(|| env.credentials_path())
            .ok_or_else(|| LoadgenError::Credentials("no credentials file".into()))?;
        let profile = s
            .profile
            .as_deref()
            .or(env.profile.as_deref())
            .unwrap_or(DEFAULT_PROFILE);
        Ok(Signer {
            credentials: file_credentials(&path, profile)?,
            region: s.region.clone(),
        })
    }

    /// The headers of a POST of `body` to `url` that carries `headers`: those, all signed, and
    /// the signature's (`authorization`, `x-amz-date`, …).
    pub fn sign(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HeaderMap, LoadgenError> {
        let url = Url::parse(url).map_err(|e| LoadgenError::Invalid(format!("url {url}: {e}")))?;
        Ok(signed_headers_for(
            &Method::POST,
            &url,
            Some(body),
            headers,
            &self.credentials,
            &self.region,
            SystemTime::now(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n# comment\n[load]\naws_access_key_id=AKIDLOAD\naws_secret_access_key=s2\naws_session_token = tok\n";

    #[test]
    fn signs_with_aps_scope() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(&p, FILE).unwrap();
        let s = Settings {
            sigv4: true,
            region: "eu-west-1".into(),
            credentials_file: Some(p),
            profile: Some("load".into()),
            ..Default::default()
        };
        let signer = Signer::from_settings(&s).unwrap();
        let h = signer
            .sign(
                "http://127.0.0.1:8080/workspaces/ws-load-0/api/v1/remote_write",
                &[("content-type", "application/x-protobuf")],
                b"body",
            )
            .unwrap();
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLOAD/"));
        assert!(auth.contains("/eu-west-1/aps/aws4_request"));
        assert!(auth.contains("SignedHeaders=content-type;host;"), "{auth}");
        assert_eq!(h["x-amz-security-token"], "tok");
        assert_eq!(h["content-type"], "application/x-protobuf");

        let missing = Settings {
            profile: Some("missing".into()),
            ..s
        };
        let err = Signer::from_settings(&missing).err().unwrap().to_string();
        assert!(err.contains("[missing] in "), "{err}");
    }
}
