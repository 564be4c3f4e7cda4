//! Refusals at a gateway reach the control plane's audit log: each is logged at once (target
//! `hestia::audit`) and queued; a task sends the queue to a voter in batches (`RecordRefusals`).
//! A full queue drops refusals (counted) rather than slowing the request path down.

use std::sync::Arc;

use hestia_auth::layer::LogAudit;
use hestia_auth::{AuditSink, AuthFailure};
use hestia_proto::control::RecordRefusalsRequest;
use hestia_proto::{CallError, ControlPlaneEndpoints};
use tokio::sync::mpsc;

/// Refusals waiting to be sent.
const QUEUE: usize = 10_000;
/// Refusals per `RecordRefusals` call.
const BATCH: usize = 500;

pub struct ForwardAudit {
    tx: mpsc::Sender<AuthFailure>,
}

impl AuditSink for ForwardAudit {
    fn record(&self, f: &AuthFailure) {
        LogAudit.record(f);
        if self.tx.try_send(f.clone()).is_err() {
            crate::metrics::AUDIT_DROPPED.inc();
        }
    }
}

/// The sink and the task forwarding to the control plane at `endpoints` (runs until aborted).
pub fn forward_to_control_plane(
    endpoints: &[String],
) -> Result<(Arc<dyn AuditSink>, tokio::task::JoinHandle<()>), CallError> {
    let endpoints = ControlPlaneEndpoints::new(endpoints)?;
    let (tx, mut rx) = mpsc::channel::<AuthFailure>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            let refusals_json: Vec<String> = batch
                .iter()
                .filter_map(|f| serde_json::to_string(f).ok())
                .collect();
            let sent = endpoints
                .call("record refusals", |mut c| {
                    let req = RecordRefusalsRequest {
                        refusals_json: refusals_json.clone(),
                    };
                    async move { c.record_refusals(req).await.map(|_| ()) }
                })
                .await;
            if let Err(e) = sent {
                crate::metrics::AUDIT_DROPPED.inc_by(batch.len() as u64);
                tracing::warn!(error = %e, refusals = batch.len(), "refusals not recorded by the control plane");
            }
        }
    });
    Ok((Arc::new(ForwardAudit { tx }), task))
}
