//! SigV4 verification cost per request (goal: ≤ 20 µs with a cached signing key): a PromQL
//! query (no body), a 30 KiB remote-write body (its SHA-256 included), the key derivation a
//! cache miss adds, and what the middleware does per remote write in all (directory lookup,
//! verification, policy evaluation).

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use criterion::{criterion_group, criterion_main, Criterion};
use hestia_auth::identity::{AccessKey, Identities, IdentityCommand, PolicyAttachment, ADMIN_USER};
use hestia_auth::policy::route_action;
use hestia_auth::secrets::MasterKey;
use hestia_auth::sigv4::derive_signing_key;
use hestia_auth::{Authenticator, Credentials, RequestParts, SigV4Config, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};

const HOST: &str = "aps.example.com";

/// Headers of `method url` signed by the aws-sigv4 crate at `now`.
fn signed(method: &str, url: &str, body: &[u8], now: std::time::SystemTime) -> HeaderMap {
    let identity = AwsCredentials::new("AKIDBENCH", "bench-secret", None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("aps")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let headers = [("host", HOST), ("content-type", "application/x-protobuf")];
    let req = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .expect("signable");
    let (instructions, _) = sign(req, &params).expect("sign").into_parts();
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.insert(n, HeaderValue::from_static(v));
    }
    for (n, v) in instructions.headers() {
        map.insert(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn bench(c: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(1_764_500_000);
    let creds = Credentials {
        access_key_id: "AKIDBENCH".into(),
        secret_access_key: "bench-secret".into(),
        session_token: None,
    };
    let verifier = Verifier::new(SigV4Config::new("us-east-1", "aps"));
    let mut g = c.benchmark_group("sigv4");

    let query =
        "query=sum%20by%20%28job%29%20%28rate%28http_requests_total%5B5m%5D%29%29&time=1764500000";
    let url = format!("https://{HOST}/workspaces/ws-1/api/v1/query?{query}");
    let headers = signed("GET", &url, b"", now);
    let req = RequestParts {
        method: "GET",
        path: "/workspaces/ws-1/api/v1/query",
        query: Some(query),
        headers: &headers,
        body: Some(b""),
    };
    g.bench_function("verify_query", |b| {
        b.iter(|| {
            verifier
                .verify(&req, now, |_| Some(creds.clone()))
                .expect("verifies")
        })
    });

    let body = vec![0x5au8; 30 << 10];
    let url = format!("https://{HOST}/workspaces/ws-1/api/v1/remote_write");
    let headers = signed("POST", &url, &body, now);
    let req = RequestParts {
        method: "POST",
        path: "/workspaces/ws-1/api/v1/remote_write",
        query: None,
        headers: &headers,
        body: Some(&body),
    };
    g.bench_function("verify_remote_write_30KiB", |b| {
        b.iter(|| {
            verifier
                .verify(&req, now, |_| Some(creds.clone()))
                .expect("verifies")
        })
    });

    // The middleware's whole check: the key from the identity directory, SigV4, the policy.
    let master = MasterKey::generate();
    let mut ids = Identities::default();
    ids.apply(IdentityCommand::Bootstrap {
        account: "123456789012".into(),
        name: "bench".into(),
        key: AccessKey {
            id: "AKIDBENCH".into(),
            account: "123456789012".into(),
            user: ADMIN_USER.into(),
            sealed_secret: master.seal(b"bench-secret", b"AKIDBENCH"),
            created_at_ms: 0,
        },
        now_ms: 0,
    })
    .expect("bootstrap");
    ids.apply(IdentityCommand::DetachPolicy {
        account: "123456789012".into(),
        user: ADMIN_USER.into(),
        name: "AdministratorAccess".into(),
    })
    .expect("detach");
    ids.apply(IdentityCommand::AttachPolicy {
        account: "123456789012".into(),
        user: ADMIN_USER.into(),
        policy: PolicyAttachment::Managed("AmazonPrometheusRemoteWriteAccess".into()),
    })
    .expect("attach");
    let auth = Authenticator::new(
        SigV4Config::new("us-east-1", "aps"),
        master,
        Duration::from_secs(3600),
    );
    auth.update(&ids);
    let route = route_action("POST", "/workspaces/ws-1/api/v1/remote_write").expect("route");
    g.bench_function("authenticate_authorize_remote_write_30KiB", |b| {
        b.iter(|| {
            let p = auth.authenticate(&req, now).expect("authenticates");
            auth.authorize(&p, &route).expect("allowed")
        })
    });

    g.bench_function("derive_signing_key", |b| {
        b.iter(|| derive_signing_key("bench-secret", "20251130", "us-east-1", "aps"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
