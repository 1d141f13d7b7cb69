//! The reconcilers: what the operator writes back to the cluster about dbward's objects, and why.
//!
//! - **DatabaseConnection** ([`connection`]), also triggered by Secrets' metadata and by pods that name
//!   it but run without the sidecar: writes the status conditions CredentialsResolved, Reachable, Ready
//!   and PodsWithoutSidecar and `observedGeneration`, so that a connection whose Secret or key is
//!   missing, or whose database does not accept TCP connections, says so where `kubectl get dbconn`
//!   shows it, before a sidecar fails on it; and one whose pods run without their sidecar says which and
//!   why. (`status.serverVersion` is written by the control API from the sidecars' reports.)
//! - **AccessPolicy** ([`policy`]), also triggered by DatabaseConnections' metadata: writes Valid,
//!   Active, Ready, `errors` and `observedGeneration`: an invalid policy grants nothing, a time-boxed
//!   one switches on and off by itself, and one naming missing connections grants less than it says —
//!   each visible on the object.
//! - **ApprovalRequest** ([`approval`]): sets phase Expired when nobody decided in time, deletes decided
//!   requests after a retention, and announces new ones with an Event, so a held statement fails
//!   instead of waiting forever, old decisions do not pile up, and `kubectl get events` shows what waits
//!   for a person.
//! - **Pod** ([`pods`]), metadata only: an Event and the gauge `dbward_pods_without_sidecar` for pods
//!   that asked for dbward but run without the sidecar, and so without database access.
//!
//! Decisions are plain functions over typed data in each module's `status`/`decide` file (unit-tested
//! with tables of cases); the reconcilers around them read, decide, and write only what changed.
//! Statuses are written by server-side apply of the status subresource under the field manager
//! `dbward-operator` with `force` ([`status::apply_status`]), and only when the computed status differs
//! from the stored one, so reconciling an unchanged object makes no write. Conditions keep their
//! `lastTransitionTime` while their status holds.
//!
//! [`run`] runs the four controllers until its token is cancelled. The operator's `main` runs it only
//! while it holds the leader Lease; Events and the pod gauge are therefore the leader's alone.

use std::{future::Future, sync::Arc, time::Duration};

use dbward_crds::{AccessPolicy, ApprovalRequest, DatabaseConnection};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    Api, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller,
        controller::{self, Action},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub mod approval;
pub mod connection;
mod context;
pub mod error;
mod metrics;
pub mod pods;
pub mod policy;
pub mod status;

#[cfg(test)]
pub(crate) mod tests;

pub use context::{CONNECTION_RESYNC, DEFAULT_APPROVAL_RETENTION, PROBE_TIMEOUT, ReconcileContext};
pub use error::Error;
pub use metrics::Metrics;
pub use status::{FIELD_MANAGER, SERVER_VERSION_FIELD_MANAGER};

use context::error_policy;

/// How often the bookkeeping behind the pod gauge and the once-only Events is pruned of objects that
/// are gone.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Run the DatabaseConnection, AccessPolicy, ApprovalRequest and Pod controllers until `shutdown` is
/// cancelled; then let running reconciles finish, and return. The pod gauge is emptied on return, so a
/// replica that lost the lease stops reporting.
pub async fn run(ctx: Arc<ReconcileContext>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let config = watcher::Config::default();
    let stopped = || {
        let token = shutdown.clone();
        async move { token.cancelled().await }
    };

    // The pod controller's cache of pods' metadata is also what the connection reconciler reads. A pod
    // change reaches that cache and the connection controller (through its own watch) at about the same
    // time; the reconcile reads the cache after its Secret reads and probe, and a change it misses all
    // the same shows at the next trigger or resync.
    let pods = Controller::new(Api::<PartialObjectMeta<Pod>>::all(client.clone()), config.clone());
    let pod_store = pods.store();

    let connections = Controller::new(Api::<DatabaseConnection>::all(client.clone()), config.clone());
    let connection_store = connections.store();
    let connection_pods = pod_store.clone();
    let connections = connections
        .watches(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            config.clone(),
            move |secret| connection::connections_using(&connection_store, &secret),
        )
        .watches(
            Api::<PartialObjectMeta<Pod>>::all(client.clone()),
            config.clone(),
            |pod| connection::connections_named_by(&pod),
        )
        .graceful_shutdown_on(stopped())
        .run(
            move |conn, ctx| connection::reconcile(conn, ctx, connection_pods.clone()),
            error_policy,
            ctx.clone(),
        )
        .for_each(log_outcome);

    let policies = Controller::new(Api::<AccessPolicy>::all(client.clone()), config.clone());
    let policy_store = policies.store();
    let policies = policies
        .watches(
            Api::<PartialObjectMeta<DatabaseConnection>>::all(client.clone()),
            config.clone(),
            move |conn| policy::affected_policies(&policy_store, &conn),
        )
        .graceful_shutdown_on(stopped())
        .run(policy::reconcile, error_policy, ctx.clone())
        .for_each(log_outcome);

    let approvals = Controller::new(Api::<ApprovalRequest>::all(client.clone()), config.clone());
    let approval_store = approvals.store();
    let approvals = approvals
        .graceful_shutdown_on(stopped())
        .run(approval::reconcile, error_policy, ctx.clone())
        .for_each(log_outcome);

    let pods = pods
        .graceful_shutdown_on(stopped())
        .run(pods::reconcile, error_policy, ctx.clone())
        .for_each(log_outcome);

    info!("reconcilers started");
    tokio::join!(
        connections,
        policies,
        approvals,
        pods,
        housekeeping(&ctx, &pod_store, &approval_store, stopped()),
    );
    ctx.missing_sidecars.clear(&ctx.metrics.pods_without_sidecar);
    ctx.announced.clear();
    info!("reconcilers stopped");
}

/// Every [`HOUSEKEEPING`] until `stopped`: forget reported pods and announced requests that are gone
/// (the controllers never see deletions), and refresh the gauge.
async fn housekeeping(
    ctx: &ReconcileContext,
    pods: &Store<PartialObjectMeta<Pod>>,
    approvals: &Store<ApprovalRequest>,
    stopped: impl Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = tick.tick() => {}
        }
        prune(ctx, pods, approvals);
    }
}

/// Forget what `pods` and `approvals` no longer hold (or hold as a different object of the same name).
fn prune(ctx: &ReconcileContext, pods: &Store<PartialObjectMeta<Pod>>, approvals: &Store<ApprovalRequest>) {
    let same = |uid: Option<String>, key: &str| uid.is_none_or(|uid| uid == key);
    let pruned = ctx.missing_sidecars.retain(|namespace, name, key| {
        pods.get(&ObjectRef::new(name).within(namespace))
            .is_some_and(|pod| same(pod.uid(), key) && pods::runs_without_sidecar(&pod.metadata).is_some())
    });
    if pruned {
        ctx.missing_sidecars.export(&ctx.metrics.pods_without_sidecar);
    }
    ctx.announced.retain(|namespace, name, uid| {
        approvals
            .get(&ObjectRef::new(name).within(namespace))
            .is_some_and(|req| same(req.uid(), uid) && approval::decide::is_pending(&req))
    });
}

/// Log what a controller reports besides reconcile failures (which the error policy logs).
fn log_outcome<K: Resource>(
    outcome: Result<(ObjectRef<K>, Action), controller::Error<Error, watcher::Error>>,
) -> std::future::Ready<()>
where
    K::DynamicType: std::fmt::Debug,
{
    match outcome {
        Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(controller::Error::ObjectNotFound(obj)) => debug!(%obj, "object gone before its reconcile"),
        Err(controller::Error::QueueError(error)) => warn!(%error, "watch failed; retrying"),
        Err(error) => warn!(%error, "controller error"),
    }
    std::future::ready(())
}
