//! Approval requests in a cluster: ApprovalRequest objects, made and watched through the operator's
//! control API (DESIGN section 6). The operator writes the requester from the pod's verified token; an
//! approver decides with `kubectl patch ... --subresource=status`.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use dbward_crds::{ApprovalPhase, parse_rfc3339, wire};
use futures_util::future::BoxFuture;
use http::StatusCode;
use tracing::warn;

use super::{ApprovalError, ApprovalStore, Decision, NewRequest, Ticket};
use crate::config::operator::{OperatorClient, OperatorError, backoff};

/// How long one wait for a decision lasts at the operator before it is asked again.
const DECISION_WAIT: Duration = Duration::from_secs(30);

/// [`ApprovalStore`] over the operator's control API.
#[derive(Debug, Clone)]
pub struct OperatorStore {
    client: Arc<OperatorClient>,
    /// The pod's namespace, where its requests live (for the approve hint).
    namespace: String,
}

impl OperatorStore {
    pub fn new(client: Arc<OperatorClient>, namespace: String) -> Self {
        Self { client, namespace }
    }
}

fn store_error(e: OperatorError) -> ApprovalError {
    ApprovalError::Task(e.to_string())
}

fn decision(state: &wire::ApprovalState) -> Decision {
    Decision {
        phase: state.phase,
        decided_by: state.decided_by.clone(),
        decided_at: state.decided_at.as_deref().and_then(|t| parse_rfc3339(t).ok()),
        reason: state.reason.clone(),
    }
}

impl ApprovalStore for OperatorStore {
    fn request(&self, req: NewRequest) -> BoxFuture<'static, Result<Ticket, ApprovalError>> {
        let client = self.client.clone();
        Box::pin(async move {
            if req.timeout.is_zero() {
                return Err(ApprovalError::InvalidRequest(
                    "the approval timeout is zero".into(),
                ));
            }
            let body = wire::ApprovalCreate {
                connection: req.connection,
                subject: req.requester.subject,
                uid: req.requester.uid,
                statement: req.statement,
                fingerprint: req.fingerprint,
                rule: req.rule,
                timeout_seconds: req.timeout.as_secs().max(1),
            };
            let t = client.create_approval(&body).await.map_err(store_error)?;
            let expires_at = parse_rfc3339(&t.expires_at).map_err(|e| {
                ApprovalError::Task(format!("the operator's expiresAt {:?}: {e}", t.expires_at))
            })?;
            Ok(Ticket {
                name: t.name,
                reused: t.reused,
                expires_at,
            })
        })
    }

    fn decided(&self, name: &str) -> BoxFuture<'static, Result<Decision, ApprovalError>> {
        let client = self.client.clone();
        let name = name.to_owned();
        Box::pin(async move {
            let mut failures = 0u32;
            loop {
                match client.approval(&name, DECISION_WAIT).await {
                    Ok(state) if state.phase.is_final() => return Ok(decision(&state)),
                    Ok(_) => failures = 0,
                    Err(OperatorError::Refused {
                        status: StatusCode::NOT_FOUND,
                        ..
                    }) => {
                        return Ok(Decision {
                            phase: ApprovalPhase::Expired,
                            decided_by: None,
                            decided_at: Some(SystemTime::now()),
                            reason: Some("the request was removed".into()),
                        });
                    }
                    Err(e) if e.is_transient() => {
                        // The caller's timeout bounds this; meanwhile a restarting operator is waited for.
                        warn!(request = %name, error = %e, "waiting for a decision: the operator did not answer; asking again");
                        tokio::time::sleep(backoff(failures)).await;
                        failures = failures.saturating_add(1);
                    }
                    Err(e) => return Err(store_error(e)),
                }
            }
        })
    }

    fn expire(&self, name: &str, reason: &str) -> BoxFuture<'static, Result<(), ApprovalError>> {
        let client = self.client.clone();
        let (name, reason) = (name.to_owned(), reason.to_owned());
        Box::pin(async move { client.expire_approval(&name, &reason).await.map_err(store_error) })
    }

    fn take_grant(
        &self,
        subject: &str,
        fingerprint: &str,
        window: Duration,
        once: bool,
    ) -> BoxFuture<'static, Result<Option<String>, ApprovalError>> {
        let client = self.client.clone();
        let body = wire::GrantTake {
            subject: subject.to_owned(),
            fingerprint: fingerprint.to_owned(),
            window_seconds: window.as_secs(),
            once,
        };
        Box::pin(async move { client.take_grant(&body).await.map_err(store_error) })
    }

    fn approve_hint(&self, name: &str) -> String {
        format!(
            "kubectl patch approvalrequest {name} -n {} --subresource=status --type=merge -p '{{\"status\":{{\"phase\":\"Approved\"}}}}'",
            self.namespace
        )
    }
}
