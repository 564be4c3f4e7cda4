//! SigV4 signing for Amazon Managed Service for Prometheus compatible endpoints (service `aps`).
use std::path::PathBuf;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SigningParams, SigningSettings,
};
use aws_sigv4::sign::v4;

use crate::{LoadgenError, Settings};

pub struct Signer {
    identity: aws_smithy_runtime_api::client::identity::Identity,
    region: String,
}

/// Keys of `profile` in an AWS shared-credentials (INI) file.
pub fn parse_credentials(text: &str, profile: &str) -> Result<Credentials, LoadgenError> {
    let (mut in_profile, mut id, mut secret, mut token) = (false, None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if in_profile {
            let v = Some(v.trim().to_string());
            match k.trim() {
                "aws_access_key_id" => id = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, token, None, "loadgen")),
        _ => Err(LoadgenError::Credentials(format!(
            "profile [{profile}] has no aws_access_key_id and aws_secret_access_key"
        ))),
    }
}

impl Signer {
    pub fn from_settings(s: &Settings) -> Result<Signer, LoadgenError> {
        let path = s
            .credentials_file
            .clone()
            .or_else(|| std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))
            .ok_or_else(|| LoadgenError::Credentials("no credentials file".into()))?;
        let profile = s
            .profile
            .clone()
            .or_else(|| std::env::var("AWS_PROFILE").ok())
            .unwrap_or_else(|| "default".into());
        let text = std::fs::read_to_string(&path).map_err(|source| LoadgenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Signer {
            identity: parse_credentials(&text, &profile)?.into(),
            region: s.region.clone(),
        })
    }

    /// Headers to add (`authorization`, `x-amz-date`, …) for a POST of `body` to `url` that
    /// carries `headers`.
    pub fn sign(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, LoadgenError> {
        let e = |e: &dyn std::fmt::Display| LoadgenError::Signing(e.to_string());
        let params: SigningParams = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("aps")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|x| e(&x))?
            .into();
        let req = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|x| e(&x))?;
        let (instructions, _) = sign(req, &params).map_err(|x| e(&x))?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n# comment\n[load]\naws_access_key_id=AKIDLOAD\naws_secret_access_key=s2\naws_session_token = tok\n";

    #[test]
    fn reads_profiles() {
        let c = parse_credentials(FILE, "load").unwrap();
        assert_eq!(c.access_key_id(), "AKIDLOAD");
        assert_eq!(c.session_token(), Some("tok"));
        assert_eq!(
            parse_credentials(FILE, "default")
                .unwrap()
                .secret_access_key(),
            "s1"
        );
        assert!(parse_credentials(FILE, "missing").is_err());
    }

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
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLOAD/"));
        assert!(auth.contains("/eu-west-1/aps/aws4_request"));
        assert!(h
            .iter()
            .any(|(k, v)| k == "x-amz-security-token" && v == "tok"));
    }
}
