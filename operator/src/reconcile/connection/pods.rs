//! The PodsWithoutSidecar condition of a DatabaseConnection: whether pods that name the connection in
//! their `dbward.dev/inject` annotation run without the dbward sidecar, why, and which. No I/O here.
//!
//! The pod reconciler reports each such pod with an Event and the gauge `dbward_pods_without_sidecar`;
//! this condition puts the same finding where the connection's users look (`kubectl describe dbconn`).
//! It does not change Ready: the connection itself is in order, its consumers are not.

use std::time::SystemTime;

use dbward_crds::{Condition, DatabaseConnection, condition::types};
use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{ResourceExt, core::PartialObjectMeta, runtime::reflector::ObjectRef};

use crate::{
    admission::spec::{INJECT_ANNOTATION, INJECTED_ANNOTATION},
    reconcile::pods::{MissingReason, runs_without_sidecar, why_missing},
};

/// At most this many pods are named in the condition's message.
pub const MAX_LISTED_PODS: usize = 5;
/// The reason of a False PodsWithoutSidecar: every pod that names the connection has its sidecar.
pub const ALL_INJECTED: &str = "AllInjected";

/// What the reconciler found of the pods that name one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodsSeen {
    /// Every pod that names it runs with the sidecar (or none names it).
    AllInjected,
    /// Some run without it.
    Missing {
        /// Why, the same for every pod of the connection's namespace.
        reason: MissingReason,
        /// Their names, sorted.
        pods: Vec<String>,
    },
}

/// The names of the connections an annotation value names, leniently: trimmed, empty entries skipped.
fn named(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// The names, sorted, of the pods among `pods` in `namespace` that name `connection` in their
/// `dbward.dev/inject` annotation and run without the sidecar (see [`runs_without_sidecar`]).
pub fn pods_without_sidecar<'a>(
    pods: impl IntoIterator<Item = &'a ObjectMeta>,
    namespace: &str,
    connection: &str,
) -> Vec<String> {
    let mut names: Vec<String> = pods
        .into_iter()
        .filter(|meta| meta.namespace.as_deref() == Some(namespace))
        .filter(|meta| runs_without_sidecar(meta).is_some_and(|value| named(value).any(|n| n == connection)))
        .filter_map(|meta| meta.name.clone())
        .collect();
    names.sort();
    names
}

/// The connections to reconcile when `pod` changes: those its `dbward.dev/inject` annotation names, in
/// its namespace, when it carries no `dbward.dev/injected`. A pod being deleted counts too (its last
/// change is its deletion), and pods with their sidecar trigger nothing, so the connections are not
/// reconciled for every change of every injected pod.
pub fn connections_named_by(pod: &PartialObjectMeta<Pod>) -> Vec<ObjectRef<DatabaseConnection>> {
    let annotations = pod.annotations();
    if annotations.contains_key(INJECTED_ANNOTATION) {
        return Vec::new();
    }
    let Some(value) = annotations.get(INJECT_ANNOTATION) else {
        return Vec::new();
    };
    let namespace = pod.namespace().unwrap_or_default();
    let mut refs: Vec<ObjectRef<DatabaseConnection>> = Vec::new();
    for name in named(value) {
        let r = ObjectRef::new(name).within(&namespace);
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    refs
}

/// The PodsWithoutSidecar condition for a connection in `namespace`, from what was `seen`.
pub fn pods_condition(seen: &PodsSeen, namespace: &str, now: SystemTime) -> Condition {
    match seen {
        PodsSeen::AllInjected => Condition::new(
            types::PODS_WITHOUT_SIDECAR,
            false,
            ALL_INJECTED,
            format!(
                "every pod that names this connection in {INJECT_ANNOTATION} runs with the dbward sidecar"
            ),
            now,
        ),
        PodsSeen::Missing { reason, pods } => {
            let many = pods.len() != 1;
            let (count, name, run) = if many {
                (format!("{} pods", pods.len()), "name", "run")
            } else {
                ("1 pod".to_owned(), "names", "runs")
            };
            let mut listed: Vec<String> = pods
                .iter()
                .take(MAX_LISTED_PODS)
                .map(|p| format!("{p:?}"))
                .collect();
            if pods.len() > MAX_LISTED_PODS {
                listed.push(format!("and {} more", pods.len() - MAX_LISTED_PODS));
            }
            let message = format!(
                "{count} that {name} this connection in {INJECT_ANNOTATION} {run} without the dbward sidecar, \
                 so without database access ({}): {}",
                listed.join(", "),
                why_missing(namespace, *reason, many)
            );
            Condition::new(types::PODS_WITHOUT_SIDECAR, true, reason.as_str(), message, now)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use dbward_crds::ConditionStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;

    fn pod(namespace: &str, name: &str, annotations: serde_json::Value) -> PartialObjectMeta<Pod> {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        }))
        .unwrap()
    }

    #[test]
    fn only_pods_of_the_namespace_naming_the_connection_without_their_sidecar_count() {
        let mut deleting = pod("shop", "leaving", json!({"dbward.dev/inject": "orders"}));
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let pods = [
            pod("shop", "web-2", json!({"dbward.dev/inject": "analytics, orders"})),
            pod("shop", "web-1", json!({"dbward.dev/inject": "orders"})),
            pod(
                "shop",
                "injected",
                json!({"dbward.dev/inject": "orders", "dbward.dev/injected": "orders"}),
            ),
            pod("shop", "other", json!({"dbward.dev/inject": "analytics"})),
            pod("shop", "prefix", json!({"dbward.dev/inject": "orders-replica"})),
            pod("shop", "plain", json!({})),
            pod("lab", "elsewhere", json!({"dbward.dev/inject": "orders"})),
            deleting,
        ];
        let metas = pods.iter().map(|p| &p.metadata);
        assert_eq!(
            pods_without_sidecar(metas.clone(), "shop", "orders"),
            ["web-1", "web-2"]
        );
        assert_eq!(
            pods_without_sidecar(metas.clone(), "shop", "analytics"),
            ["other", "web-2"]
        );
        assert_eq!(
            pods_without_sidecar(metas.clone(), "lab", "orders"),
            ["elsewhere"]
        );
        assert!(pods_without_sidecar(metas, "shop", "payments").is_empty());
    }

    #[test]
    fn a_pod_change_reaches_the_connections_it_names_in_its_namespace() {
        let refs = |p: &PartialObjectMeta<Pod>| -> Vec<(String, Option<String>)> {
            connections_named_by(p)
                .into_iter()
                .map(|r| (r.name, r.namespace))
                .collect()
        };
        let shop = |n: &str| (n.to_owned(), Some("shop".to_owned()));
        assert_eq!(
            refs(&pod(
                "shop",
                "a",
                json!({"dbward.dev/inject": " orders,,analytics,orders "})
            )),
            [shop("orders"), shop("analytics")]
        );
        assert_eq!(
            refs(&pod(
                "shop",
                "a",
                json!({"dbward.dev/inject": "orders", "dbward.dev/injected": "orders"})
            )),
            []
        );
        assert_eq!(refs(&pod("shop", "a", json!({"other": "orders"}))), []);
        let mut deleting = pod("shop", "a", json!({"dbward.dev/inject": "orders"}));
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            refs(&deleting),
            [shop("orders")],
            "its deletion may end the condition"
        );
    }

    #[test]
    fn the_condition_names_the_reason_and_a_few_pods() {
        let now = SystemTime::UNIX_EPOCH;
        let ok = pods_condition(&PodsSeen::AllInjected, "shop", now);
        assert_eq!(
            (ok.type_.as_str(), ok.status, ok.reason.as_str()),
            ("PodsWithoutSidecar", ConditionStatus::False, "AllInjected")
        );

        let one = PodsSeen::Missing {
            reason: MissingReason::NamespaceNotOptedIn,
            pods: vec!["web-1".into()],
        };
        let c = pods_condition(&one, "shop", now);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::True, "NamespaceNotOptedIn")
        );
        assert_eq!(
            c.message,
            "1 pod that names this connection in dbward.dev/inject runs without the dbward sidecar, so without \
             database access (\"web-1\"): namespace \"shop\" is not opted in: label it \
             dbward.dev/injection=enabled, then delete the pod so that it is recreated with the sidecar"
        );

        let many = PodsSeen::Missing {
            reason: MissingReason::WebhookMissed,
            pods: (1..=7).map(|i| format!("web-{i}")).collect(),
        };
        let c = pods_condition(&many, "shop", now);
        assert_eq!(c.reason, "WebhookMissed");
        assert!(
            c.message.starts_with(
                "7 pods that name this connection in dbward.dev/inject run without the dbward sidecar, so \
                 without database access (\"web-1\", \"web-2\", \"web-3\", \"web-4\", \"web-5\", and 2 more): \
                 they were created while the injection webhook was down"
            ),
            "{}",
            c.message
        );
        assert!(
            c.message
                .ends_with("delete the pods so that they are recreated with the sidecar")
        );
        let c = pods_condition(
            &PodsSeen::Missing {
                reason: MissingReason::OperatorNamespace,
                pods: vec!["a".into(), "b".into()],
            },
            "dbward-system",
            now,
        );
        assert_eq!(c.reason, "OperatorNamespace");
        assert!(
            c.message
                .contains("operator's namespace \"dbward-system\" are never injected")
        );
    }
}
