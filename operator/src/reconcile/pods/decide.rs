//! Whether a pod runs without the sidecar it asked for, and why. No I/O.

use std::{collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::admission::spec::{INJECT_ANNOTATION, INJECTED_ANNOTATION, INJECTION_ENABLED, INJECTION_LABEL};

/// Why a pod that asked for dbward runs without its sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MissingReason {
    /// The pod is in the operator's own namespace, which is never injected.
    OperatorNamespace,
    /// Its namespace lacks the label `dbward.dev/injection: enabled`.
    NamespaceNotOptedIn,
    /// The namespace is opted in, yet the webhook did not inject: the pod was created while the webhook
    /// was down or not yet installed, or before the namespace was labelled.
    WebhookMissed,
}

impl MissingReason {
    /// The name used in Events and in the metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperatorNamespace => "OperatorNamespace",
            Self::NamespaceNotOptedIn => "NamespaceNotOptedIn",
            Self::WebhookMissed => "WebhookMissed",
        }
    }
}

impl fmt::Display for MissingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The connections a pod asked for (`dbward.dev/inject`) when it runs without the sidecar: it carries
/// the annotation but not `dbward.dev/injected`, and is not being deleted.
pub fn runs_without_sidecar(meta: &ObjectMeta) -> Option<&str> {
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let annotations = meta.annotations.as_ref()?;
    if annotations.contains_key(INJECTED_ANNOTATION) {
        return None;
    }
    annotations.get(INJECT_ANNOTATION).map(String::as_str)
}

/// Why a pod in `namespace` has no sidecar, given the namespace's labels (`None` when the namespace
/// could not be found).
pub fn missing_reason(
    namespace: &str,
    operator_namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> MissingReason {
    if namespace == operator_namespace {
        return MissingReason::OperatorNamespace;
    }
    let opted_in = namespace_labels
        .and_then(|labels| labels.get(INJECTION_LABEL))
        .is_some_and(|v| v == INJECTION_ENABLED);
    if opted_in {
        MissingReason::WebhookMissed
    } else {
        MissingReason::NamespaceNotOptedIn
    }
}

/// The note of the SidecarMissing Event: what the pod asked for, why it did not get it, and what to do.
pub fn missing_note(namespace: &str, connections: &str, reason: MissingReason) -> String {
    let asked = format!(
        "the pod asks for dbward ({INJECT_ANNOTATION}: {connections:?}) but runs without the dbward sidecar, \
         so it has no database access"
    );
    format!("{asked}: {}", why_missing(namespace, reason, false))
}

/// Why pods in `namespace` run without the sidecar, and what to do; about one pod, or several (`many`).
pub fn why_missing(namespace: &str, reason: MissingReason, many: bool) -> String {
    let (pods, it, was) = if many {
        ("the pods", "they are", "they were")
    } else {
        ("the pod", "it is", "it was")
    };
    match reason {
        MissingReason::OperatorNamespace => format!(
            "pods in the operator's namespace {namespace:?} are never injected: run the workload in another \
             namespace"
        ),
        MissingReason::NamespaceNotOptedIn => format!(
            "namespace {namespace:?} is not opted in: label it {INJECTION_LABEL}={INJECTION_ENABLED}, then \
             delete {pods} so that {it} recreated with the sidecar"
        ),
        MissingReason::WebhookMissed => format!(
            "{was} created while the injection webhook was down or not yet installed (or before the \
             namespace was labelled): delete {pods} so that {it} recreated with the sidecar"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn meta(annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_annotated_pods_without_the_injected_mark_are_reported() {
        type Annotations = &'static [(&'static str, &'static str)];
        let cases: &[(Annotations, Option<&str>)] = &[
            (&[], None),
            (&[("other", "x")], None),
            (
                &[("dbward.dev/inject", "orders,analytics")],
                Some("orders,analytics"),
            ),
            (
                &[("dbward.dev/inject", "orders"), ("dbward.dev/injected", "orders")],
                None,
            ),
            (&[("dbward.dev/injected", "orders")], None),
        ];
        for (annotations, want) in cases {
            assert_eq!(runs_without_sidecar(&meta(annotations)), *want, "{annotations:?}");
        }
        assert_eq!(runs_without_sidecar(&ObjectMeta::default()), None);
        let mut deleting = meta(&[("dbward.dev/inject", "orders")]);
        deleting.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            runs_without_sidecar(&deleting),
            None,
            "a pod on its way out is not reported"
        );
    }

    #[test]
    fn the_reason_comes_from_the_namespace() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let enabled = labels(&[("dbward.dev/injection", "enabled")]);
        let disabled = labels(&[("dbward.dev/injection", "disabled")]);
        let other = labels(&[("team", "shop")]);
        let cases = [
            ("shop", None, MissingReason::NamespaceNotOptedIn),
            ("shop", Some(&other), MissingReason::NamespaceNotOptedIn),
            ("shop", Some(&disabled), MissingReason::NamespaceNotOptedIn),
            ("shop", Some(&enabled), MissingReason::WebhookMissed),
            ("dbward-system", Some(&enabled), MissingReason::OperatorNamespace),
            ("dbward-system", None, MissingReason::OperatorNamespace),
        ];
        for (namespace, labels, want) in cases {
            assert_eq!(
                missing_reason(namespace, "dbward-system", labels),
                want,
                "{namespace} {labels:?}"
            );
        }
    }

    #[test]
    fn notes_say_what_to_do() {
        let note = missing_note("shop", "orders", MissingReason::NamespaceNotOptedIn);
        assert!(
            note.starts_with("the pod asks for dbward (dbward.dev/inject: \"orders\")"),
            "{note}"
        );
        assert!(note.ends_with(
            "namespace \"shop\" is not opted in: label it dbward.dev/injection=enabled, then delete the pod \
             so that it is recreated with the sidecar"
        ));
        let note = missing_note("shop", "orders", MissingReason::WebhookMissed);
        assert!(note.contains("injection webhook was down"), "{note}");
        let note = missing_note("dbward-system", "orders", MissingReason::OperatorNamespace);
        assert!(
            note.contains("operator's namespace \"dbward-system\" are never injected"),
            "{note}"
        );
    }
}
