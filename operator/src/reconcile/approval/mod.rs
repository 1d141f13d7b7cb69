//! The ApprovalRequest reconciler: announces new requests, expires the ones nobody decided in time,
//! and deletes decided ones after a retention.
//!
//! - A pending request gets one Event (type Normal, reason `ApprovalRequested`) naming the requester,
//!   the connection, the rule and the `kubectl patch` command that approves it, so `kubectl get events`
//!   shows what waits for a person. "Once" is per operator process: the leader remembers the uids it
//!   announced, so a new leader announces the requests still pending once more. No annotation is
//!   written for it: the spec is immutable and a write per request is not worth an exact once.
//! - Pending past `spec.expiresAt`: the status is applied with phase `Expired`, `decidedAt` now and
//!   reason "nobody decided before expiresAt". Only the operator may do this (the status webhook lets
//!   its service account through); `decidedBy` stays empty, since nobody decided.
//! - Decided (Approved, Denied, Expired): deleted once `decidedAt` (or the creation time when missing)
//!   plus [`ReconcileContext::approval_retention`] has passed, with the uid as precondition so that a
//!   newer request of the same name is never deleted by mistake.
//!
//! Otherwise the request is looked at again at the next of these times.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use dbward_crds::ApprovalRequest;
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Preconditions},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use tracing::info;

use super::{
    context::{ReconcileContext, instrumented, namespace_and_name},
    error::{Error, Result},
    status::apply_status,
};

pub mod decide;

pub use decide::{EXPIRED_REASON, Step, announcement, next_step};

const KIND: &str = "ApprovalRequest";
/// The reason of the Event that announces a new pending request.
pub const APPROVAL_REQUESTED: &str = "ApprovalRequested";
/// The longest single wait: far-away times are re-checked this often, in case the clock jumps.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Reconcile one ApprovalRequest (the [`kube::runtime::Controller`] entry point).
pub async fn reconcile(request: Arc<ApprovalRequest>, ctx: Arc<ReconcileContext>) -> Result<Action> {
    instrumented(&*request, &ctx, reconcile_request(&request, &ctx)).await
}

async fn reconcile_request(request: &ApprovalRequest, ctx: &ReconcileContext) -> Result<Action> {
    let (namespace, name) = namespace_and_name(request)?;
    let uid = request.uid().unwrap_or_default();
    let api: Api<ApprovalRequest> = Api::namespaced(ctx.client.clone(), namespace);
    let now = SystemTime::now();
    match next_step(request, now, ctx.approval_retention) {
        Step::Expire(status) => {
            apply_status(&api, name, &status)
                .await
                .map_err(|source| Error::ApplyStatus {
                    kind: KIND,
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    source: source.into(),
                })?;
            ctx.announced.forget(&uid);
            info!(
                namespace,
                request = name,
                "approval request expired: nobody decided in time"
            );
            Ok(Action::requeue(ctx.approval_retention.min(MAX_WAIT)))
        }
        Step::Delete => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: request.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => info!(
                    namespace,
                    request = name,
                    "decided approval request deleted after retention"
                ),
                // Gone already, or replaced by a newer request of the same name: nothing to delete.
                Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {}
                Err(source) => {
                    return Err(Error::DeleteApproval {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        source: source.into(),
                    });
                }
            }
            ctx.announced.forget(&uid);
            Ok(Action::await_change())
        }
        Step::WaitUntil(at) => {
            if decide::is_pending(request) {
                announce(request, namespace, name, &uid, ctx).await?;
            } else {
                ctx.announced.forget(&uid);
            }
            let wait = at.duration_since(now).unwrap_or_default() + Duration::from_secs(1);
            Ok(Action::requeue(wait.min(MAX_WAIT)))
        }
    }
}

/// Publish the ApprovalRequested Event, unless this process already did for this request.
async fn announce(
    request: &ApprovalRequest,
    namespace: &str,
    name: &str,
    uid: &str,
    ctx: &ReconcileContext,
) -> Result<()> {
    if ctx.announced.contains(uid) {
        return Ok(());
    }
    let event = Event {
        type_: EventType::Normal,
        reason: APPROVAL_REQUESTED.to_owned(),
        note: Some(announcement(request)),
        action: "RequestApproval".to_owned(),
        secondary: None,
    };
    ctx.recorder
        .publish(&event, &request.object_ref(&()))
        .await
        .map_err(|source| Error::PublishEvent {
            reason: APPROVAL_REQUESTED,
            kind: KIND,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: source.into(),
        })?;
    ctx.announced.insert(uid, namespace, name);
    info!(
        namespace,
        request = name,
        connection = %request.spec.connection,
        rule = %request.spec.rule,
        "approval requested"
    );
    Ok(())
}

/// The pending requests this process announced, by uid (with their namespace and name, to prune the
/// set against the controller's store).
#[derive(Debug, Default)]
pub(crate) struct Announced {
    uids: Mutex<HashMap<String, (String, String)>>,
}

impl Announced {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, String)>> {
        self.uids.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn contains(&self, uid: &str) -> bool {
        self.lock().contains_key(uid)
    }

    fn insert(&self, uid: &str, namespace: &str, name: &str) {
        self.lock()
            .insert(uid.to_owned(), (namespace.to_owned(), name.to_owned()));
    }

    fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Keep only the requests for which `still_pending(namespace, name, uid)` holds (the others were
    /// deleted or decided without this process seeing it).
    pub(crate) fn retain(&self, still_pending: impl Fn(&str, &str, &str) -> bool) {
        self.lock()
            .retain(|uid, (namespace, name)| still_pending(namespace, name, uid));
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}
