//! SigV4 signing with the `aws-sigv4` crate.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use url::Url;

use crate::{AwsClientError, AwsCredentials};

/// The service name Hestia's SigV4 verifier expects (Amazon Managed Service for Prometheus's).
pub const SERVICE: &str = "aps";

/// The headers that sign `method url` with a JSON `body` at `time`: host, content-type (with a
/// body), x-amz-date, x-amz-content-sha256, x-amz-security-token (temporary credentials) and
/// authorization.
pub fn signed_headers(
    method: &Method,
    url: &Url,
    body: Option<&[u8]>,
    credentials: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> Result<HeaderMap, AwsClientError> {
    let content_type = body.map(|_| "application/json");
    signed_headers_with(method, url, body, content_type, credentials, region, time)
}

/// [`signed_headers`] with any content type (and then the `body` is signed as is).
pub fn signed_headers_with(
    method: &Method,
    url: &Url,
    body: Option<&[u8]>,
    content_type: Option<&str>,
    credentials: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> Result<HeaderMap, AwsClientError> {
    let headers: Vec<_> = content_type
        .map(|ct| ("content-type", ct))
        .into_iter()
        .collect();
    signed_headers_for(method, url, body, &headers, credentials, region, time)
}

/// The headers that sign `method url` carrying `headers` (all signed, and returned with the
/// signature's) and `body` at `time`, for service [`SERVICE`]: host, `headers`, x-amz-date,
/// x-amz-content-sha256, x-amz-security-token (temporary credentials) and authorization.
pub fn signed_headers_for(
    method: &Method,
    url: &Url,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    credentials: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> Result<HeaderMap, AwsClientError> {
    let host = url.host_str().ok_or(AwsClientError::NoHost)?;
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let headers: Vec<(&str, &str)> = std::iter::once(("host", host.as_str()))
        .chain(headers.iter().copied())
        .collect();
    let identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        None,
        "hestia-aws-client",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(AwsClientError::signing)?
        .into();
    let signable = SignableRequest::new(
        method.as_str(),
        url.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(body.unwrap_or_default()),
    )
    .map_err(AwsClientError::signing)?;
    let (instructions, _) = sign(signable, &params)
        .map_err(AwsClientError::signing)?
        .into_parts();
    let mut map = HeaderMap::new();
    for (name, value) in headers.into_iter().chain(instructions.headers()) {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).map_err(AwsClientError::signing)?,
            HeaderValue::from_str(value).map_err(AwsClientError::signing)?,
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use hestia_auth::{Credentials, RequestParts, SigV4Config, Verifier};

    use super::*;
    use crate::resolve::tests::creds;

    fn verify(
        verifier: &Verifier,
        method: &str,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        known: &AwsCredentials,
    ) -> Result<hestia_auth::Verified, hestia_auth::AuthError> {
        let req = RequestParts {
            method,
            path: url.path(),
            query: url.query(),
            headers,
            body: Some(body),
        };
        verifier.verify(&req, now, |id| {
            (id == known.access_key_id).then(|| Credentials {
                access_key_id: known.access_key_id.clone(),
                secret_access_key: known.secret_access_key.clone(),
                session_token: known.session_token.clone(),
            })
        })
    }

    #[test]
    fn signatures_verify_with_hestia_auth() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_500_000);
        let verifier = Verifier::new(SigV4Config::new("eu-west-1", SERVICE));
        for (c, method, path, body) in [
            (
                creds("AKID1", "secret1", None),
                Method::POST,
                "/admin/users/a%20b%2Fc/policies",
                Some(br#"{"policyName":"x"}"#.as_slice()),
            ),
            (
                creds("AKID2", "secret2", Some("session")),
                Method::GET,
                "/workspaces/ws-1/tokens",
                None,
            ),
            (
                creds("AKID3", "secret3", None),
                Method::DELETE,
                "/admin/users/%C3%A9",
                None,
            ),
        ] {
            let url = Url::parse(&format!("http://127.0.0.1:8080{path}")).unwrap();
            let headers = signed_headers(&method, &url, body, &c, "eu-west-1", now).expect("signs");
            assert_eq!(headers["host"], "127.0.0.1:8080");
            assert_eq!(body.is_some(), headers.contains_key("content-type"));
            let bytes = body.unwrap_or_default();
            let ok = verify(&verifier, method.as_str(), &url, &headers, bytes, now, &c);
            assert_eq!(ok.expect("verifies").access_key_id, c.access_key_id);
            assert!(verify(&verifier, method.as_str(), &url, &headers, b"{}", now, &c).is_err());
            let other = Url::parse("http://127.0.0.1:8080/admin/users/other").unwrap();
            assert!(verify(&verifier, method.as_str(), &other, &headers, bytes, now, &c).is_err());
            let wrong = creds(&c.access_key_id, "other-secret", c.session_token.as_deref());
            assert!(verify(
                &verifier,
                method.as_str(),
                &url,
                &headers,
                bytes,
                now,
                &wrong
            )
            .is_err());
        }
        let url = Url::parse("http://h/admin/users").unwrap();
        let c = creds("AKID1", "secret1", None);
        let headers = signed_headers(&Method::GET, &url, None, &c, "us-east-1", now).unwrap();
        assert_eq!(headers["host"], "h");
        assert!(verify(&verifier, "GET", &url, &headers, b"", now, &c).is_err());
    }
}
