//! `review_pod`: the webhook's answer to a whole admission request.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use serde_json::{Value, json};

use super::inject::{connections, pod_json, settings};
use crate::admission::{
    ConnectionTarget, InjectContext, InjectSettings, PodAdmission, admit_pod, pod_namespace,
    pod_security::Level, review_pod,
};

/// An admission request for `pod`, as the API server sends it for a pod a ReplicaSet creates: no name
/// yet, the namespace only on the request.
fn request(pod: &Value, operation: &str, namespace: Option<&str>, dry_run: bool) -> AdmissionRequest<Pod> {
    serde_json::from_value(json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "",
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod,
        "oldObject": null,
        "dryRun": dry_run
    }))
    .unwrap()
}

fn review(
    req: &AdmissionRequest<Pod>,
    settings: &InjectSettings,
    conns: &[ConnectionTarget],
) -> AdmissionResponse {
    review_pod(
        req,
        &InjectContext {
            settings,
            connections: conns,
            namespace_labels: None,
        },
    )
}

fn review_native(req: &AdmissionRequest<Pod>) -> AdmissionResponse {
    review(req, &settings(true), &connections())
}

/// The response's patch applied to the request's pod.
fn patched(req: &AdmissionRequest<Pod>, resp: &AdmissionResponse) -> Pod {
    let patch: json_patch::Patch = serde_json::from_slice(resp.patch.as_deref().unwrap()).unwrap();
    let mut doc = serde_json::to_value(req.object.as_ref().unwrap()).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    serde_json::from_value(doc).unwrap()
}

#[test]
fn an_annotated_pod_is_allowed_with_a_json_patch() {
    let req = request(&pod_json("orders"), "CREATE", Some("shop"), false);
    let resp = review_native(&req);
    assert!(resp.allowed);
    assert_eq!(resp.uid, req.uid);
    let wire = serde_json::to_value(&resp).unwrap();
    assert_eq!(wire["patchType"], "JSONPatch");
    let pod = patched(&req, &resp);
    let init = pod.spec.unwrap().init_containers.unwrap();
    assert_eq!(init[1].name, "dbward-sidecar");
    assert_eq!(resp.warnings, None);
}

#[test]
fn other_pods_pass_unchanged() {
    let mut pod = pod_json("orders");
    pod["metadata"]["annotations"] = json!({});
    let resp = review_native(&request(&pod, "CREATE", Some("shop"), false));
    assert!(resp.allowed);
    assert!(resp.patch.is_none());
}

#[test]
fn the_operators_namespace_is_never_injected() {
    let mut pod = pod_json("orders");
    pod["spec"]["shareProcessNamespace"] = json!(true);
    let resp = review_native(&request(&pod, "CREATE", Some("dbward-system"), false));
    assert!(resp.allowed);
    assert!(resp.patch.is_none());
    // Also when only the pod names the namespace.
    pod["metadata"]["namespace"] = json!("dbward-system");
    let resp = review_native(&request(&pod, "CREATE", None, false));
    assert!(resp.allowed);
    assert!(resp.patch.is_none());
}

#[test]
fn only_create_is_mutated() {
    for op in ["UPDATE", "DELETE", "CONNECT"] {
        let resp = review_native(&request(&pod_json("orders"), op, Some("shop"), false));
        assert!(resp.allowed, "{op}");
        assert!(resp.patch.is_none(), "{op}");
    }
}

#[test]
fn a_request_without_an_object_passes() {
    let mut req = request(&pod_json("orders"), "CREATE", Some("shop"), false);
    req.object = None;
    let resp = review_native(&req);
    assert!(resp.allowed);
    assert!(resp.patch.is_none());
}

#[test]
fn dry_run_gets_the_same_patch() {
    let real = review_native(&request(&pod_json("orders"), "CREATE", Some("shop"), false));
    let dry = review_native(&request(&pod_json("orders"), "CREATE", Some("shop"), true));
    assert!(dry.allowed);
    assert_eq!(dry.patch, real.patch);
}

#[test]
fn refusals_are_denials_naming_the_pod() {
    let resp = review_native(&request(&pod_json("ordres"), "CREATE", Some("shop"), false));
    assert!(!resp.allowed);
    assert!(resp.patch.is_none());
    let msg = &resp.result.message;
    assert!(
        msg.starts_with("dbward cannot inject pod \"web-7d9f8-*\" in namespace \"shop\": no DatabaseConnection named \"ordres\""),
        "{msg}"
    );

    let mut pod = pod_json("orders");
    pod["metadata"]["name"] = json!("debug");
    pod["spec"]["shareProcessNamespace"] = json!(true);
    let resp = review_native(&request(&pod, "CREATE", Some("shop"), false));
    assert!(!resp.allowed);
    assert!(
        resp.result
            .message
            .contains("pod \"debug\" in namespace \"shop\": shareProcessNamespace")
    );
}

#[test]
fn the_namespace_comes_from_the_request_or_the_pod() {
    let mut pod = pod_json("orders");
    pod["metadata"]["namespace"] = json!("from-pod");
    assert_eq!(
        pod_namespace(&request(&pod, "CREATE", Some("shop"), false)),
        Some("shop")
    );
    assert_eq!(
        pod_namespace(&request(&pod, "CREATE", None, false)),
        Some("from-pod")
    );
    assert_eq!(
        pod_namespace(&request(&pod, "CREATE", Some(""), false)),
        Some("from-pod")
    );
    assert_eq!(
        pod_namespace(&request(&pod_json("orders"), "CREATE", None, false)),
        None
    );
}

#[test]
fn classic_sidecars_come_with_warnings_where_they_fall_short() {
    let mut pod = pod_json("orders");
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
    pod["spec"]["restartPolicy"] = json!("Never");
    let req = request(&pod, "CREATE", Some("shop"), false);
    let resp = review(&req, &settings(false), &connections());
    assert!(resp.allowed);
    let warnings = resp.warnings.clone().unwrap();
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].contains("init containers run before dbward-sidecar"));
    assert!(warnings[1].contains("never completes"));
    assert_eq!(
        patched(&req, &resp).spec.unwrap().containers[0].name,
        "dbward-sidecar"
    );

    let resp = review(&req, &settings(true), &connections());
    assert_eq!(resp.warnings, None);
    let plain = review(
        &request(&pod_json("orders"), "CREATE", Some("shop"), false),
        &settings(false),
        &connections(),
    );
    assert_eq!(plain.warnings, None);
}

#[test]
fn the_response_is_a_valid_admission_review() {
    let resp = review_native(&request(&pod_json("orders"), "CREATE", Some("shop"), false));
    let review = serde_json::to_value(resp.into_review()).unwrap();
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    assert!(!review["response"]["patch"].is_null(), "{review}");
}

/// `admit_pod` of `req` in a namespace labelled `labels`.
fn admit_in(req: &AdmissionRequest<Pod>, native: bool, labels: &[(&str, &str)]) -> PodAdmission {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    admit_pod(
        req,
        &InjectContext {
            settings: &settings(native),
            connections: &connections(),
            namespace_labels: Some(&labels),
        },
    )
}

#[test]
fn an_egress_lock_in_a_namespace_enforcing_baseline_or_restricted_comes_with_a_warning() {
    let req = request(&pod_json("orders"), "CREATE", Some("shop"), false);
    for (value, level) in [("baseline", Level::Baseline), ("restricted", Level::Restricted)] {
        let admission = admit_in(&req, true, &[("pod-security.kubernetes.io/enforce", value)]);
        assert_eq!(admission.pod_security, Some(level), "{value}");
        let resp = &admission.response;
        assert!(resp.allowed && resp.patch.is_some(), "still injected: {value}");
        let warnings = resp.warnings.clone().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(&format!(
                "dbward: this namespace enforces Pod Security \"{value}\", which refuses dbward-egress-lock"
            )),
            "{}",
            warnings[0]
        );
    }
    // Alongside the classic sidecar's warnings.
    let mut pod = pod_json("orders");
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
    let classic = request(&pod, "CREATE", Some("shop"), false);
    let admission = admit_in(
        &classic,
        false,
        &[("pod-security.kubernetes.io/enforce", "baseline")],
    );
    let warnings = admission.response.warnings.unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[1].contains("Pod Security \"baseline\""));
}

#[test]
fn no_pod_security_warning_without_a_refusing_level_or_an_egress_lock() {
    let locked = request(&pod_json("orders"), "CREATE", Some("shop"), false);
    for labels in [
        &[][..],
        &[("pod-security.kubernetes.io/enforce", "privileged")][..],
        &[
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/audit", "baseline"),
        ][..],
    ] {
        let admission = admit_in(&locked, true, labels);
        assert_eq!(admission.pod_security, None, "{labels:?}");
        assert_eq!(admission.response.warnings, None, "{labels:?}");
    }
    // analytics has no egress lock, and the sidecar alone passes restricted.
    let unlocked = request(&pod_json("analytics"), "CREATE", Some("shop"), false);
    let admission = admit_in(
        &unlocked,
        true,
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    assert_eq!(admission.pod_security, None);
    assert_eq!(admission.response.warnings, None);
    // Nothing injected, nothing to warn about: a refused pod, a pod not asking, the operator's namespace.
    let refused = request(&pod_json("ordres"), "CREATE", Some("shop"), false);
    let mut plain = pod_json("orders");
    plain["metadata"]["annotations"] = json!({});
    let plain = request(&plain, "CREATE", Some("shop"), false);
    let operators = request(&pod_json("orders"), "CREATE", Some("dbward-system"), false);
    for req in [refused, plain, operators] {
        let admission = admit_in(&req, true, &[("pod-security.kubernetes.io/enforce", "baseline")]);
        assert_eq!(admission.pod_security, None);
        assert_eq!(admission.response.warnings, None);
    }
    // The same patch as without the labels: the warning is all that changes.
    let labels = [("pod-security.kubernetes.io/enforce", "baseline")];
    let warned = admit_in(&locked, true, &labels).response;
    assert_eq!(warned.patch, review_native(&locked).patch);
}
