//! The AccessPolicy reconciler: writes `status.conditions` (Valid, Active, Ready),
//! `status.errors` and `status.observedGeneration` — only when they differ from what is stored — and
//! comes back at the next `notBefore`/`validUntil` boundary, when Active flips by itself.
//!
//! Which connections exist is read with a metadata-only list of the namespace's DatabaseConnections at
//! each reconcile, not from a watch cache: the policy controller is re-run when a connection appears or
//! goes (see [`affected_policies`]), and a list made then cannot be older than the change that
//! triggered it, where a second cache could be.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use dbward_crds::{AccessPolicy, DatabaseConnection, condition::types};
use kube::{
    Api, ResourceExt,
    api::ListParams,
    core::PartialObjectMeta,
    runtime::{controller::Action, reflector::ObjectRef, reflector::Store},
};
use tracing::{debug, info};

use super::{
    context::{ReconcileContext, instrumented, namespace_and_name},
    error::{Error, Result},
    status::apply_status,
};

pub mod status;

pub use status::{PolicyReport, policy_status, unknown_connections};

const KIND: &str = "AccessPolicy";
/// How often a policy is looked at again when no boundary is nearer.
pub const POLICY_RESYNC: Duration = Duration::from_secs(600);

/// Reconcile one AccessPolicy (the [`kube::runtime::Controller`] entry point).
pub async fn reconcile(policy: Arc<AccessPolicy>, ctx: Arc<ReconcileContext>) -> Result<Action> {
    instrumented(&*policy, &ctx, reconcile_policy(&policy, &ctx)).await
}

async fn reconcile_policy(policy: &AccessPolicy, ctx: &ReconcileContext) -> Result<Action> {
    let (namespace, name) = namespace_and_name(policy)?;
    let connections: Api<DatabaseConnection> = Api::namespaced(ctx.client.clone(), namespace);
    let existing: BTreeSet<String> = connections
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| Error::ListConnections {
            namespace: namespace.to_owned(),
            source: source.into(),
        })?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let now = SystemTime::now();
    let report = policy_status(policy, &existing, now);
    if policy.status.as_ref() == Some(&report.status) {
        debug!(namespace, policy = name, "status unchanged");
    } else {
        let api: Api<AccessPolicy> = Api::namespaced(ctx.client.clone(), namespace);
        apply_status(&api, name, &report.status)
            .await
            .map_err(|source| Error::ApplyStatus {
                kind: KIND,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: source.into(),
            })?;
        let ready = dbward_crds::condition::find(&report.status.conditions, types::READY);
        info!(
            namespace,
            policy = name,
            ready = %ready.map(|c| c.status).unwrap_or_default(),
            reason = ready.map_or("", |c| c.reason.as_str()),
            errors = report.status.errors.len(),
            "status updated"
        );
    }
    Ok(Action::requeue(requeue_after(report.next_boundary, now)))
}

/// How long to wait before looking again: just past the next boundary, or [`POLICY_RESYNC`] when that
/// is sooner (a safety net against missed events and clock jumps).
pub fn requeue_after(next_boundary: Option<SystemTime>, now: SystemTime) -> Duration {
    match next_boundary {
        // One second past it: at the boundary itself `validUntil` is already over but `notBefore`
        // just begun, and a timer may fire a hair early.
        Some(at) => (at.duration_since(now).unwrap_or_default() + Duration::from_secs(1)).min(POLICY_RESYNC),
        None => POLICY_RESYNC,
    }
}

/// The policies in `store` that a change to `connection` concerns: those of its namespace naming it.
pub fn affected_policies(
    store: &Store<AccessPolicy>,
    connection: &PartialObjectMeta<DatabaseConnection>,
) -> Vec<ObjectRef<AccessPolicy>> {
    let namespace = connection.namespace();
    let name = connection.name_any();
    store
        .state()
        .iter()
        .filter(|p| p.namespace() == namespace && p.spec.connections.contains(&name))
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::UNIX_EPOCH;

    use kube::runtime::{reflector::store::Writer, watcher};

    use super::*;

    #[test]
    fn requeues_just_past_the_boundary_or_at_the_resync() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let secs = Duration::from_secs;
        let cases = [
            (None, POLICY_RESYNC),
            (Some(now + secs(59)), secs(60)),
            (Some(now + secs(3600)), POLICY_RESYNC),
            (Some(now - secs(5)), secs(1)),
        ];
        for (boundary, want) in cases {
            assert_eq!(requeue_after(boundary, now), want, "{boundary:?}");
        }
    }

    #[test]
    fn a_connection_change_reaches_the_policies_of_its_namespace_that_name_it() {
        let policy = |ns: &str, name: &str, conns: &[&str]| -> AccessPolicy {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "dbward.dev/v1alpha1", "kind": "AccessPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"connections": conns, "subjects": [{"group": "dba"}]},
            }))
            .unwrap()
        };
        let mut writer: Writer<AccessPolicy> = Writer::default();
        for p in [
            policy("shop", "a", &["orders"]),
            policy("shop", "b", &["analytics", "orders"]),
            policy("shop", "c", &["analytics"]),
            policy("billing", "d", &["orders"]),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(p));
        }
        let store = writer.as_reader();
        let conn: PartialObjectMeta<DatabaseConnection> = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "orders", "namespace": "shop"},
        }))
        .unwrap();
        let mut names: Vec<String> = affected_policies(&store, &conn)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }
}
