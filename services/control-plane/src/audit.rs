//! A CloudTrail-like audit log of every control-plane call, appended (synced) to this node's
//! RocksDB. Keys are `event time ms BE | event id`, so a time range is one ordered scan. The log
//! is per node: each voter records the calls it served.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, WriteOptions, DB};
use serde_json::Value;

use hestia_auth::{AuditSink, AuthFailure, Principal, PrincipalKind};

use crate::error::CpError;
use crate::store::CF_AUDIT;

#[derive(Clone)]
pub struct AuditLog {
    db: Arc<DB>,
    region: String,
}

/// One call as CloudTrail records it.
pub struct AuditEvent<'a> {
    pub time_ms: i64,
    pub event_id: &'a str,
    pub event_name: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    /// CloudTrail's `userIdentity` ([`user_identity`], [`refused_identity`]).
    pub user_identity: Value,
    pub source_ip: String,
    pub user_agent: String,
    pub read_only: bool,
    pub request_parameters: Value,
    pub response_elements: Value,
    pub error: Option<(&'a str, String)>,
}

/// CloudTrail's `userIdentity` of an authenticated caller.
pub fn user_identity(p: &Principal) -> Value {
    let kind = match &p.kind {
        PrincipalKind::User { .. } => "IAMUser",
        PrincipalKind::Token { .. } => "WorkspaceToken",
        PrincipalKind::Anonymous => "Root",
    };
    let mut v = serde_json::json!({"type": kind, "accountId": p.account, "arn": p.arn});
    if let PrincipalKind::User {
        name,
        access_key_id,
        ..
    } = &p.kind
    {
        v["userName"] = Value::from(name.as_str());
        v["accessKeyId"] = Value::from(access_key_id.as_str());
    }
    v
}

/// The `userIdentity` of a refused request: whoever it proved to be, if anyone.
fn refused_identity(f: &AuthFailure) -> Value {
    let mut v = match (&f.principal_arn, &f.account) {
        (Some(arn), Some(account)) => {
            let kind = if arn.contains(":user/") {
                "IAMUser"
            } else {
                "WorkspaceToken"
            };
            serde_json::json!({"type": kind, "accountId": account, "arn": arn})
        }
        _ => serde_json::json!({"type": "Unknown"}),
    };
    if let Some(k) = &f.access_key_id {
        v["accessKeyId"] = Value::from(k.as_str());
    }
    v
}

impl AuditSink for AuditLog {
    /// Refused requests are events too: the action (or the method and path) with the error.
    fn record(&self, f: &AuthFailure) {
        let event_id = crate::api::uuid_v4();
        let name = match &f.action {
            Some(a) => a.split_once(':').map_or(a.as_str(), |(_, n)| n).to_string(),
            None => format!("{} {}", f.method, f.path),
        };
        let mut params = serde_json::json!({"method": f.method, "path": f.path});
        if let Some(k) = &f.access_key_id {
            params["accessKeyId"] = Value::from(k.as_str());
        }
        let appended = self.append(AuditEvent {
            time_ms: f.time_ms,
            event_id: &event_id,
            event_name: &name,
            region: &self.region,
            account: f.account.as_deref().unwrap_or(""),
            user_identity: refused_identity(f),
            source_ip: f.source_ip.clone(),
            user_agent: f.user_agent.clone(),
            read_only: false,
            request_parameters: params,
            response_elements: Value::Null,
            error: Some((&f.error_code, f.message.clone())),
        });
        if let Err(e) = appended {
            tracing::error!(error = %e, "recording a refused request in the audit log");
        }
    }
}

impl AuditLog {
    pub fn new(db: Arc<DB>, region: &str) -> Self {
        Self {
            db,
            region: region.to_string(),
        }
    }

    pub fn append(&self, e: AuditEvent<'_>) -> Result<(), CpError> {
        let time = chrono::DateTime::from_timestamp_millis(e.time_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut json = serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": e.user_identity,
            "eventTime": time,
            "eventSource": "aps.amazonaws.com",
            "eventName": e.event_name,
            "awsRegion": e.region,
            "sourceIPAddress": e.source_ip,
            "userAgent": e.user_agent,
            "requestParameters": e.request_parameters,
            "responseElements": e.response_elements,
            "requestID": e.event_id,
            "eventID": e.event_id,
            "readOnly": e.read_only,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": e.account,
            "eventCategory": "Management",
        });
        if let Some((code, message)) = e.error {
            json["errorCode"] = Value::from(code);
            json["errorMessage"] = Value::from(message);
        }
        let key = [&e.time_ms.max(0).to_be_bytes()[..], e.event_id.as_bytes()].concat();
        let cf = self
            .db
            .cf_handle(CF_AUDIT)
            .expect("column family created at open");
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(cf, key, json.to_string(), &opts)
            .map_err(|e| CpError::Internal(format!("audit log: {e}")))
    }

    /// Events with `start_ms <= time < end_ms`, oldest first, at most `limit`; the token resumes
    /// after the last returned event.
    pub fn range(
        &self,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
        next_token: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), CpError> {
        let start_key = match next_token {
            Some(t) => decode_hex(t).ok_or_else(|| CpError::field("nextToken", "invalid token"))?,
            None => start_ms.max(0).to_be_bytes().to_vec(),
        };
        let cf = self
            .db
            .cf_handle(CF_AUDIT)
            .expect("column family created at open");
        let mut events = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start_key, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| CpError::Internal(e.to_string()))?;
            let t = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
                .unwrap_or(i64::MAX);
            if t >= end_ms {
                break;
            }
            if events.len() == limit {
                return Ok((events, Some(encode_hex(&k))));
            }
            events.push(serde_json::from_slice(&v).map_err(|e| CpError::Internal(e.to_string()))?);
        }
        Ok((events, None))
    }
}

fn encode_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
