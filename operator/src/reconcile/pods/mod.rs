//! The pod reconciler: reports pods that ask for dbward (`dbward.dev/inject`) but run without the
//! sidecar (no `dbward.dev/injected`). Such a pod has no database credential, so it fails closed; this
//! says why, where people look:
//!
//! - an Event on the pod (type Warning, reason `SidecarMissing`) with the reason and what to do — once
//!   per pod and reason per operator process;
//! - the gauge `dbward_pods_without_sidecar{namespace, reason}`.
//!
//! Nothing is written to the pods. The connections the pod names get the condition PodsWithoutSidecar
//! from their own reconciler (the one writer of their conditions), which a change of such a pod
//! triggers (see [`connection`](super::connection)).
//!
//! The controller watches pods' metadata only (`Api<PartialObjectMeta<Pod>>` makes kube ask for
//! metadata-only lists and watches; annotations are all it reads). kube 5 cannot pre-filter a
//! controller's watch by annotation without an unstable feature, and annotations have no server-side
//! selector, so the filter is the first line of [`reconcile`]: a pod that does not ask for dbward costs
//! an annotation lookup and no API call.
//! Reported pods are looked at again every [`RECHECK`], as their namespace's labels may change.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use prometheus::IntGaugeVec;
use tracing::warn;

use super::{
    context::{ReconcileContext, instrumented, namespace_and_name},
    error::{Error, Result},
};

pub mod decide;

pub use decide::{MissingReason, missing_note, missing_reason, runs_without_sidecar, why_missing};

/// The reason of the Event on a pod without its sidecar.
pub const SIDECAR_MISSING: &str = "SidecarMissing";
/// How often a pod without its sidecar is looked at again.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Reconcile one pod (the [`kube::runtime::Controller`] entry point).
pub async fn reconcile(pod: Arc<PartialObjectMeta<Pod>>, ctx: Arc<ReconcileContext>) -> Result<Action> {
    if runs_without_sidecar(&pod.metadata).is_none() {
        // The common case, and the filter: nothing to report, nothing to count.
        if ctx.missing_sidecars.forget(&pod_key(&pod)) {
            ctx.missing_sidecars.export(&ctx.metrics.pods_without_sidecar);
        }
        return Ok(Action::await_change());
    }
    instrumented(&*pod, &ctx, reconcile_pod(&pod, &ctx)).await
}

async fn reconcile_pod(pod: &PartialObjectMeta<Pod>, ctx: &ReconcileContext) -> Result<Action> {
    let (namespace, name) = namespace_and_name(pod)?;
    let Some(connections) = runs_without_sidecar(&pod.metadata) else {
        return Ok(Action::await_change());
    };
    let labels = if namespace == ctx.operator_namespace {
        None
    } else {
        namespace_labels(ctx, namespace).await?
    };
    let reason = missing_reason(namespace, &ctx.operator_namespace, labels.as_ref());
    let key = pod_key(pod);
    let due = ctx.missing_sidecars.observe(&key, namespace, name, reason);
    ctx.missing_sidecars.export(&ctx.metrics.pods_without_sidecar);
    if due {
        let event = Event {
            type_: EventType::Warning,
            reason: SIDECAR_MISSING.to_owned(),
            note: Some(missing_note(namespace, connections, reason)),
            action: "CheckSidecar".to_owned(),
            secondary: None,
        };
        ctx.recorder
            .publish(&event, &pod.object_ref(&()))
            .await
            .map_err(|source| Error::PublishEvent {
                reason: SIDECAR_MISSING,
                kind: "Pod",
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: source.into(),
            })?;
        ctx.missing_sidecars.announced(&key);
        warn!(namespace, pod = name, reason = %reason, "pod runs without its dbward sidecar");
    }
    Ok(Action::requeue(RECHECK))
}

/// The labels of `namespace`, `None` when it does not exist (any more).
pub(crate) async fn namespace_labels(
    ctx: &ReconcileContext,
    namespace: &str,
) -> Result<Option<BTreeMap<String, String>>> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let meta = api
        .get_metadata_opt(namespace)
        .await
        .map_err(|source| Error::ReadNamespace {
            namespace: namespace.to_owned(),
            source: source.into(),
        })?;
    Ok(meta.map(|m| m.metadata.labels.unwrap_or_default()))
}

/// The key of a pod in [`MissingSidecars`]: its uid, or `namespace/name` when it has none.
fn pod_key(pod: &PartialObjectMeta<Pod>) -> String {
    pod.uid()
        .unwrap_or_else(|| format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()))
}

/// One reported pod.
#[derive(Debug, Clone)]
struct Missing {
    namespace: String,
    name: String,
    reason: MissingReason,
    /// Whether the Event for this reason was published.
    announced: bool,
}

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<String, Missing>,
    /// The (namespace, reason) series the gauge currently shows.
    exported: Vec<(String, MissingReason)>,
}

/// The pods this process found without their sidecar, behind the gauge and the once-only Events.
#[derive(Debug, Default)]
pub(crate) struct MissingSidecars {
    inner: Mutex<Inner>,
}

impl MissingSidecars {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record that pod `key` runs without its sidecar for `reason`; true when its Event is due (new pod,
    /// or the reason changed).
    pub(crate) fn observe(&self, key: &str, namespace: &str, name: &str, reason: MissingReason) -> bool {
        let mut inner = self.lock();
        let entry = inner.pods.entry(key.to_owned()).or_insert_with(|| Missing {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            reason,
            announced: false,
        });
        if entry.reason != reason {
            entry.reason = reason;
            entry.announced = false;
        }
        !entry.announced
    }

    /// The Event for pod `key` was published.
    pub(crate) fn announced(&self, key: &str) {
        if let Some(entry) = self.lock().pods.get_mut(key) {
            entry.announced = true;
        }
    }

    /// Forget pod `key`; true when it was recorded.
    pub(crate) fn forget(&self, key: &str) -> bool {
        self.lock().pods.remove(key).is_some()
    }

    /// Keep only the pods for which `exists(namespace, name, key)` holds (the others are gone).
    pub(crate) fn retain(&self, exists: impl Fn(&str, &str, &str) -> bool) -> bool {
        let mut inner = self.lock();
        let before = inner.pods.len();
        inner.pods.retain(|key, m| exists(&m.namespace, &m.name, key));
        inner.pods.len() != before
    }

    /// Set the gauge to the current counts, removing series that dropped to nothing.
    pub(crate) fn export(&self, gauge: &IntGaugeVec) {
        let mut inner = self.lock();
        let mut counts: BTreeMap<(String, MissingReason), i64> = BTreeMap::new();
        for m in inner.pods.values() {
            *counts.entry((m.namespace.clone(), m.reason)).or_default() += 1;
        }
        for (namespace, reason) in &inner.exported {
            if !counts.contains_key(&(namespace.clone(), *reason)) {
                // The series may already be gone (after `clear`); nothing to do then.
                let _ = gauge.remove_label_values(&[namespace.as_str(), reason.as_str()]);
            }
        }
        for ((namespace, reason), n) in &counts {
            gauge
                .with_label_values(&[namespace.as_str(), reason.as_str()])
                .set(*n);
        }
        inner.exported = counts.into_keys().collect();
    }

    /// Forget everything and empty the gauge (this process stops reporting: it lost the lease).
    pub(crate) fn clear(&self, gauge: &IntGaugeVec) {
        let mut inner = self.lock();
        inner.pods.clear();
        inner.exported.clear();
        gauge.reset();
    }
}

/// The gauge's series as `(namespace, reason, value)`, sorted: what `/metrics` would show.
#[cfg(test)]
pub(crate) fn series(gauge: &IntGaugeVec) -> Vec<(String, String, i64)> {
    use prometheus::core::Collector;
    let mut out: Vec<(String, String, i64)> = gauge
        .collect()
        .iter()
        .flat_map(|family| family.get_metric().iter())
        .map(|metric| {
            let label = |name: &str| {
                let pair = metric.get_label().iter().find(|l| l.name() == name);
                pair.map(|l| l.value().to_owned()).unwrap_or_default()
            };
            // Gauge values are whole pod counts.
            #[allow(clippy::cast_possible_truncation)]
            let value = metric.get_gauge().get_value() as i64;
            (label("namespace"), label("reason"), value)
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use prometheus::Opts;

    use super::*;

    fn row(ns: &str, reason: MissingReason, n: i64) -> (String, String, i64) {
        (ns.to_owned(), reason.as_str().to_owned(), n)
    }

    #[test]
    fn the_gauge_counts_pods_by_namespace_and_reason_and_events_are_due_once() {
        use MissingReason::{NamespaceNotOptedIn, WebhookMissed};
        let gauge = IntGaugeVec::new(Opts::new("g", "g"), &["namespace", "reason"]).unwrap();
        let missing = MissingSidecars::default();
        assert!(missing.observe("u1", "shop", "a", WebhookMissed));
        missing.announced("u1");
        assert!(
            !missing.observe("u1", "shop", "a", WebhookMissed),
            "announced once"
        );
        assert!(missing.observe("u2", "shop", "b", WebhookMissed));
        assert!(missing.observe("u3", "lab", "c", NamespaceNotOptedIn));
        missing.export(&gauge);
        assert_eq!(
            series(&gauge),
            [row("lab", NamespaceNotOptedIn, 1), row("shop", WebhookMissed, 2)]
        );

        // A new reason makes the Event due again.
        assert!(missing.observe("u1", "shop", "a", NamespaceNotOptedIn));
        // A pod gone from the store is pruned, a fixed one forgotten; their series drop.
        assert!(missing.retain(|_, name, _| name != "c"));
        assert!(!missing.retain(|_, _, _| true));
        assert!(missing.forget("u2"));
        assert!(!missing.forget("u2"));
        missing.export(&gauge);
        assert_eq!(series(&gauge), [row("shop", NamespaceNotOptedIn, 1)]);

        missing.clear(&gauge);
        assert_eq!(series(&gauge), []);
        assert!(
            missing.observe("u1", "shop", "a", NamespaceNotOptedIn),
            "forgotten"
        );
    }
}
