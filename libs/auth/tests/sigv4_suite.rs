//! The AWS SigV4 signing test suite (`../shared/conformance/sigv4/v4`, read in place): every
//! signed request of every case verifies with the case's credentials in both forms (header and
//! presigned query), our canonical request equals the suite's, and every single-field mutation
//! (method, path, query, a signed header, body, date, region, service, secret, expiry) is
//! rejected. Requests signed by the aws-sigv4 crate verify too.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hestia_auth::sigv4::{parse_amz_date, UNSIGNED_PAYLOAD};
use hestia_auth::{AuthError, Credentials, RequestParts, SigV4Config, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// `../shared` next to the checkout (or the workplace's copy when the checkout is elsewhere).
fn suite_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../../shared/conformance/sigv4/v4"),
        PathBuf::from("/work/shared/conformance/sigv4/v4"),
    ];
    candidates
        .iter()
        .find(|c| c.join("get-vanilla").exists())
        .cloned()
        .unwrap_or_else(|| panic!("SigV4 test suite not found in {candidates:?}"))
}

/// A raw request of the suite: request line, headers (continuation lines folded), body.
#[derive(Debug, Clone)]
struct Raw {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn parse(text: &str) -> Raw {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let request_line = lines.next().expect("request line");
        let (method, target) = request_line.split_once(' ').expect("method");
        let target = match target.rsplit_once(' ') {
            Some((t, v)) if v.starts_with("HTTP/") => t,
            _ => target,
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                let last = fields.last_mut().expect("a header before a continuation");
                last.1.push(' ');
                last.1.push_str(line.trim());
            } else if let Some((n, v)) = line.split_once(':') {
                fields.push((n.to_string(), v.trim().to_string()));
            }
        }
        let mut headers = HeaderMap::new();
        for (n, v) in fields {
            headers.append(
                HeaderName::from_bytes(n.as_bytes()).expect("header name"),
                HeaderValue::from_bytes(v.as_bytes()).expect("header value"),
            );
        }
        Raw {
            method: method.to_string(),
            path,
            query,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            body: Some(&self.body),
        }
    }

    fn set_header(&mut self, name: &'static str, value: &str) {
        self.headers
            .insert(name, HeaderValue::from_str(value).expect("value"));
    }
}

struct Case {
    name: String,
    dir: PathBuf,
    creds: Credentials,
    cfg: SigV4Config,
    now: SystemTime,
    expires: u64,
}

impl Case {
    fn load(dir: &Path) -> Option<Case> {
        let ctx: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("context.json")).ok()?)
                .expect("context.json");
        let c = &ctx["credentials"];
        let ts = ctx["timestamp"]
            .as_str()
            .expect("timestamp")
            .replace(['-', ':'], "");
        let secs = parse_amz_date(&ts).expect("timestamp");
        let mut cfg = SigV4Config::new(
            ctx["region"].as_str().expect("region"),
            ctx["service"].as_str().expect("service"),
        );
        cfg.normalize_path = ctx["normalize"].as_bool().unwrap_or(true);
        cfg.allow_unsigned_payload = true;
        Some(Case {
            name: dir.file_name()?.to_string_lossy().into_owned(),
            dir: dir.to_path_buf(),
            creds: Credentials {
                access_key_id: c["access_key_id"].as_str()?.to_string(),
                secret_access_key: c["secret_access_key"].as_str()?.to_string(),
                session_token: c["token"].as_str().map(str::to_string),
            },
            cfg,
            now: UNIX_EPOCH + Duration::from_secs(secs as u64),
            expires: ctx["expiration_in_seconds"].as_u64().unwrap_or(3600),
        })
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }

    fn verify_with(
        &self,
        cfg: &SigV4Config,
        raw: &Raw,
        now: SystemTime,
        creds: &Credentials,
    ) -> Result<(), AuthError> {
        Verifier::new(cfg.clone())
            .verify(&raw.parts(), now, |ak| {
                (ak == creds.access_key_id).then(|| creds.clone())
            })
            .map(|_| ())
    }

    fn verify(&self, raw: &Raw) -> Result<(), AuthError> {
        self.verify_with(&self.cfg, raw, self.now, &self.creds)
    }
}

fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("../shared/conformance/sigv4/v4")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    dirs.iter().filter_map(|d| Case::load(d)).collect()
}

/// Every mutation of one field of a verified request, each with a name.
fn mutations(case: &Case, signed: &Raw) -> Vec<(String, Result<(), AuthError>)> {
    let mut out = Vec::new();
    let mut check = |what: &str, r: Result<(), AuthError>| out.push((what.to_string(), r));

    let mut m = signed.clone();
    m.method = if m.method == "GET" { "POST" } else { "GET" }.into();
    check("method", case.verify(&m));

    let mut m = signed.clone();
    m.path = format!("{}x", m.path);
    check("path", case.verify(&m));

    let mut m = signed.clone();
    m.query = Some(match &m.query {
        Some(q) => format!("{q}&extra=1"),
        None => "extra=1".into(),
    });
    check("query", case.verify(&m));

    let mut m = signed.clone();
    m.set_header("host", "evil.example.com");
    check("signed header", case.verify(&m));

    let mut m = signed.clone();
    m.body.extend_from_slice(b"x");
    check("body", case.verify(&m));

    // One second later, with the clock moved too: inside the skew, but not what was signed.
    if let Some(d) = signed.headers.get("x-amz-date") {
        let secs = parse_amz_date(d.to_str().unwrap()).unwrap() + 1;
        let mut m = signed.clone();
        m.set_header("x-amz-date", &hestia_auth::sigv4::format_amz_date(secs));
        let now = case.now + Duration::from_secs(1);
        check("date", case.verify_with(&case.cfg, &m, now, &case.creds));
    }

    for (what, from, to) in [
        ("region", format!("/{}/", case.cfg.region), "/eu-west-1/"),
        ("service", format!("/{}/", case.cfg.service), "/other/"),
    ] {
        let mut m = signed.clone();
        let auth = m.headers["authorization"]
            .to_str()
            .unwrap()
            .replace(&from, to);
        m.set_header("authorization", &auth);
        check(what, case.verify(&m));
        // The same request against a server of another region/service.
        let mut cfg = case.cfg.clone();
        if what == "region" {
            cfg.region = "eu-west-1".into();
        } else {
            cfg.service = "other".into();
        }
        check(
            &format!("{what} of the server"),
            case.verify_with(&cfg, signed, case.now, &case.creds),
        );
    }

    let mut wrong = case.creds.clone();
    wrong.secret_access_key.push('x');
    check(
        "secret",
        case.verify_with(&case.cfg, signed, case.now, &wrong),
    );

    let late = case.now + case.cfg.max_skew + Duration::from_secs(1);
    check(
        "replayed after the skew",
        case.verify_with(&case.cfg, signed, late, &case.creds),
    );
    let early = case.now - case.cfg.max_skew - Duration::from_secs(1);
    check(
        "from the future",
        case.verify_with(&case.cfg, signed, early, &case.creds),
    );

    let unknown = Credentials {
        access_key_id: "AKIDOTHER".into(),
        ..case.creds.clone()
    };
    check(
        "unknown key",
        case.verify_with(&case.cfg, signed, case.now, &unknown),
    );
    out
}

#[test]
fn every_suite_request_verifies_and_every_mutation_is_rejected() {
    let cases = cases();
    assert!(cases.len() >= 38, "only {} cases found", cases.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        // Header form: canonical request, then verification, then mutations.
        let signed = Raw::parse(&case.read("header-signed-request.txt").expect("header form"));
        match Verifier::new(case.cfg.clone()).explain(&signed.parts()) {
            Ok((canonical, _)) => {
                let want = case
                    .read("header-canonical-request.txt")
                    .unwrap_or_default();
                if canonical != want {
                    failures.push(format!(
                        "{}: canonical request\n{canonical}\nwanted\n{want}",
                        case.name
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: explain: {e}", case.name)),
        }
        if let Err(e) = case.verify(&signed) {
            failures.push(format!("{} (header): {e}", case.name));
        }
        for (what, r) in mutations(case, &signed) {
            checked += 1;
            if r.is_ok() {
                failures.push(format!("{}: mutated {what} still verifies", case.name));
            }
        }

        // Presigned form.
        let Some(text) = case.read("query-signed-request.txt") else {
            continue;
        };
        let signed = Raw::parse(&text);
        if let Err(e) = case.verify(&signed) {
            failures.push(format!("{} (query): {e}", case.name));
        }
        let expired = case.now + Duration::from_secs(case.expires + 1);
        if case
            .verify_with(&case.cfg, &signed, expired, &case.creds)
            .is_ok()
        {
            failures.push(format!("{} (query): verifies after it expired", case.name));
        }
        let mut m = signed.clone();
        m.query = m
            .query
            .map(|q| q.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"));
        if case.verify(&m).is_ok() {
            failures.push(format!(
                "{} (query): a longer X-Amz-Expires still verifies",
                case.name
            ));
        }
        checked += 2;
    }
    println!(
        "sigv4 suite: {} cases, {} rejected mutations checked, {} failures",
        cases.len(),
        checked,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The two cases carried over from the old suite (no context.json) check the double encoding of
/// an already-encoded path; `double-url-encode` is signed with the suite's usual secret.
#[test]
fn paths_are_encoded_twice() {
    for name in ["double-encode-path", "double-url-encode"] {
        let dir = suite_dir().join(name);
        let signed =
            Raw::parse(&std::fs::read_to_string(dir.join("header-signed-request.txt")).unwrap());
        let want = std::fs::read_to_string(dir.join("header-canonical-request.txt")).unwrap();
        let auth = signed.headers["authorization"]
            .to_str()
            .unwrap()
            .to_string();
        let scope: Vec<&str> = auth
            .split("Credential=")
            .nth(1)
            .unwrap()
            .split('/')
            .collect();
        let cfg = SigV4Config::new(scope[2], scope[3].trim_end_matches(','));
        let (canonical, _) = Verifier::new(cfg.clone()).explain(&signed.parts()).unwrap();
        assert_eq!(canonical.lines().nth(1), want.lines().nth(1), "{name}");
        if name == "double-url-encode" {
            let date = signed.headers["x-amz-date"].to_str().unwrap();
            let now = UNIX_EPOCH + Duration::from_secs(parse_amz_date(date).unwrap() as u64);
            let creds = Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            };
            Verifier::new(cfg)
                .verify(&signed.parts(), now, |_| Some(creds.clone()))
                .unwrap();
        }
    }
}

#[test]
fn errors_carry_aws_codes_and_the_time_window() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "get-vanilla")
        .expect("get-vanilla");
    let signed = Raw::parse(&case.read("header-signed-request.txt").unwrap());
    let late = case.now + Duration::from_secs(301);
    let e = case
        .verify_with(&case.cfg, &signed, late, &case.creds)
        .unwrap_err();
    assert_eq!(e.code(), "InvalidSignatureException");
    assert_eq!(
        e.to_string(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T124101Z - 5 min.)"
    );
    let mut unsigned = signed.clone();
    unsigned.headers.remove("authorization");
    let e = case.verify(&unsigned).unwrap_err();
    assert_eq!(
        (e.code(), e.status().as_u16()),
        ("MissingAuthenticationTokenException", 403)
    );
    let mut m = signed.clone();
    m.set_header("x-amz-content-sha256", UNSIGNED_PAYLOAD);
    let mut strict = case.cfg.clone();
    strict.allow_unsigned_payload = false;
    let e = case
        .verify_with(&strict, &m, case.now, &case.creds)
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 400);
}

/// Requests signed by the aws-sigv4 crate (a remote write with a body hash, a query with
/// a form-encoded PromQL expression) verify; a replaced body does not.
#[test]
fn requests_signed_by_aws_sigv4_verify() {
    use aws_credential_types::Credentials as AwsCredentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    let identity = AwsCredentials::new("AKIDHESTIA", "hestia-secret", None, None, "test").into();
    let now = UNIX_EPOCH + Duration::from_secs(1_764_500_000);
    let settings = SigningSettings::default();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-west-2")
        .name("aps")
        .time(now)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let body = vec![7u8; 4096];
    let uri = "https://aps.example.com/workspaces/ws-1/api/v1/query?query=sum%20by%20%28job%29%20%28up%29&time=1764500000";
    for (method, url, payload) in [
        (
            "POST",
            "https://aps.example.com/workspaces/ws-1/api/v1/remote_write",
            &body[..],
        ),
        ("GET", uri, &[][..]),
    ] {
        let headers = [
            ("host", "aps.example.com"),
            ("content-type", "application/x-protobuf"),
        ];
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(payload),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.insert(n, HeaderValue::from_static(v));
        }
        for (n, v) in instructions.headers() {
            map.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let target = url.trim_start_matches("https://aps.example.com");
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let verifier = Verifier::new(SigV4Config::new("us-west-2", "aps"));
        let creds = Credentials {
            access_key_id: "AKIDHESTIA".into(),
            secret_access_key: "hestia-secret".into(),
            session_token: None,
        };
        let req = RequestParts {
            method,
            path,
            query,
            headers: &map,
            body: Some(payload),
        };
        verifier
            .verify(&req, now, |_| Some(creds.clone()))
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        if !payload.is_empty() {
            let other = vec![8u8; 4096];
            let req = RequestParts {
                body: Some(&other),
                ..req
            };
            assert!(verifier.verify(&req, now, |_| Some(creds.clone())).is_err());
        }
    }
}
