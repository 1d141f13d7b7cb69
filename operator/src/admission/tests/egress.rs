//! Pods whose own containers could get past the egress lock are refused; the sidecar's uid is a setting.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::inject::{connections, pod_json, settings};
use crate::admission::{
    InjectContext, InjectSettings, Refusal, mutate_pod,
    spec::{DEFAULT_SIDECAR_UID, EGRESS_LOCK_CONTAINER, SIDECAR_CONTAINER},
};

/// `mutate_pod` over `pod` with `settings`: the patched pod, or the refusal.
fn judge_with(pod: &Value, settings: &InjectSettings) -> Result<Pod, Refusal> {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let conns = connections();
    let ctx = InjectContext {
        settings,
        connections: &conns,
        namespace_labels: None,
    };
    let patch = mutate_pod(&typed, &ctx)?.expect("the pod asks for dbward");
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    Ok(serde_json::from_value(doc).unwrap())
}

fn judge(pod: &Value) -> Result<Pod, Refusal> {
    judge_with(pod, &settings(true))
}

/// A pod using the egress-locked `orders`, changed by `f`.
fn locked(f: impl FnOnce(&mut Value)) -> Value {
    let mut pod = pod_json("orders");
    f(&mut pod);
    pod
}

fn runs_as(container: &str, field: &str, uid: i64) -> Refusal {
    Refusal::RunsAsSidecarUid {
        container: container.to_owned(),
        field: field.to_owned(),
        uid,
    }
}

#[test]
fn the_default_sidecar_uid_is_not_distroless_nonroot() {
    assert_eq!(DEFAULT_SIDECAR_UID, 47301);
    assert_eq!(settings(true).sidecar_uid, 47301);
    // An app on a distroless, Chainguard or ko image (65532) is fine.
    let pod = locked(|p| p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 65532}));
    assert!(judge(&pod).is_ok());
}

#[test]
fn a_container_running_as_the_sidecars_uid_is_refused() {
    let pod = locked(|p| p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 47301}));
    assert_eq!(
        judge(&pod).unwrap_err(),
        runs_as("app", "spec.containers[0].securityContext.runAsUser", 47301)
    );
    let pod = locked(|p| {
        p["spec"]["initContainers"] = json!([
            {"name": "migrate", "image": "m", "securityContext": {"runAsUser": 1000}},
            {"name": "seed", "image": "s", "securityContext": {"runAsUser": 47301}},
        ]);
    });
    assert_eq!(
        judge(&pod).unwrap_err(),
        runs_as("seed", "spec.initContainers[1].securityContext.runAsUser", 47301)
    );
}

#[test]
fn the_pods_uid_counts_unless_the_container_sets_its_own() {
    let pod = locked(|p| p["spec"]["securityContext"] = json!({"runAsUser": 47301}));
    assert_eq!(
        judge(&pod).unwrap_err(),
        runs_as("app", "spec.securityContext.runAsUser", 47301)
    );
    // The container overrides the pod.
    let pod = locked(|p| {
        p["spec"]["securityContext"] = json!({"runAsUser": 47301});
        p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1000});
    });
    assert!(judge(&pod).is_ok());
    // ... but a second container that does not inherits it.
    let pod = locked(|p| {
        p["spec"]["securityContext"] = json!({"runAsUser": 47301});
        p["spec"]["containers"] = json!([
            {"name": "app", "image": "a", "securityContext": {"runAsUser": 1000}},
            {"name": "worker", "image": "w"},
        ]);
    });
    assert_eq!(
        judge(&pod).unwrap_err(),
        runs_as("worker", "spec.securityContext.runAsUser", 47301)
    );
    // And a container may not pick the uid under a harmless pod default.
    let pod = locked(|p| {
        p["spec"]["securityContext"] = json!({"runAsUser": 1000});
        p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 47301});
    });
    assert_eq!(
        judge(&pod).unwrap_err(),
        runs_as("app", "spec.containers[0].securityContext.runAsUser", 47301)
    );
}

#[test]
fn a_privileged_container_is_refused() {
    let pod = locked(|p| p["spec"]["containers"][0]["securityContext"] = json!({"privileged": true}));
    assert_eq!(
        judge(&pod).unwrap_err(),
        Refusal::PrivilegedContainer {
            container: "app".to_owned(),
            field: "spec.containers[0].securityContext.privileged".to_owned(),
        }
    );
    let pod = locked(|p| {
        p["spec"]["initContainers"] =
            json!([{"name": "setup", "image": "s", "securityContext": {"privileged": true}}]);
    });
    assert_eq!(
        judge(&pod).unwrap_err(),
        Refusal::PrivilegedContainer {
            container: "setup".to_owned(),
            field: "spec.initContainers[0].securityContext.privileged".to_owned(),
        }
    );
    let pod = locked(|p| p["spec"]["containers"][0]["securityContext"] = json!({"privileged": false}));
    assert!(judge(&pod).is_ok());
}

#[test]
fn capabilities_that_get_past_the_lock_are_refused() {
    for capability in [
        "NET_ADMIN",
        "NET_RAW",
        "SYS_ADMIN",
        "SETUID",
        "SETGID",
        "ALL",
        "CAP_NET_ADMIN",
        "net_raw",
        "cap_setuid",
    ] {
        let pod = locked(|p| {
            p["spec"]["containers"][0]["securityContext"] = json!({
                "runAsUser": 1000,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", capability]},
            });
        });
        assert_eq!(
            judge(&pod).unwrap_err(),
            Refusal::ForbiddenCapability {
                container: "app".to_owned(),
                field: "spec.containers[0].securityContext.capabilities.add".to_owned(),
                capability: capability.to_owned(),
            },
            "{capability}"
        );
    }
    let pod = locked(|p| {
        p["spec"]["initContainers"] = json!([{"name": "net", "image": "n", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]);
    });
    assert!(
        matches!(judge(&pod).unwrap_err(), Refusal::ForbiddenCapability { container, .. } if container == "net")
    );
}

#[test]
fn a_careful_pod_passes() {
    let pod = locked(|p| {
        p["spec"]["securityContext"] = json!({"runAsUser": 1000, "runAsNonRoot": true, "fsGroup": 2000});
        p["spec"]["containers"][0]["securityContext"] = json!({
            "runAsUser": 1000,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]},
        });
        p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
    });
    let injected = judge(&pod).unwrap();
    let init = injected.spec.unwrap().init_containers.unwrap();
    assert_eq!(init[0].name, EGRESS_LOCK_CONTAINER);
    // Containers that say nothing run as their image's user, which the webhook cannot see: not refused.
    assert!(judge(&pod_json("orders")).is_ok());
}

#[test]
fn without_an_egress_lock_there_is_nothing_to_get_past() {
    // analytics sets egressLock: false.
    let mut pod = pod_json("analytics");
    pod["spec"]["containers"][0]["securityContext"] = json!({
        "runAsUser": 47301, "privileged": true, "capabilities": {"add": ["NET_ADMIN"]},
    });
    assert!(judge(&pod).is_ok());
    // One locked connection among them is enough.
    pod["metadata"]["annotations"]["dbward.dev/inject"] = json!("analytics,orders");
    assert!(matches!(
        judge(&pod).unwrap_err(),
        Refusal::RunsAsSidecarUid { .. }
    ));
}

#[test]
fn the_sidecar_uid_is_a_setting() {
    let mut custom = settings(true);
    custom.sidecar_uid = 51000;
    let pod = locked(|p| p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 47301}));
    let injected = judge_with(&pod, &custom).unwrap();
    let init = injected.spec.unwrap().init_containers.unwrap();
    let lock = init.iter().find(|c| c.name == EGRESS_LOCK_CONTAINER).unwrap();
    assert_eq!(
        &lock.args.as_deref().unwrap()[..3],
        ["egress-lock", "--uid", "51000"]
    );
    let sidecar = init.iter().find(|c| c.name == SIDECAR_CONTAINER).unwrap();
    let sc = sidecar.security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(51000), Some(51000)));

    let pod = locked(|p| p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 51000}));
    assert_eq!(
        judge_with(&pod, &custom).unwrap_err(),
        runs_as("app", "spec.containers[0].securityContext.runAsUser", 51000)
    );
}

#[test]
fn refusal_messages_name_the_container_and_the_field() {
    let pod = locked(|p| p["spec"]["securityContext"] = json!({"runAsUser": 47301}));
    assert_eq!(
        judge(&pod).unwrap_err().to_string(),
        "container \"app\" runs as uid 47301 (spec.securityContext.runAsUser), the dbward sidecar's uid, which \
         the egress lock lets through to the database: run it as another uid"
    );
    let pod = locked(|p| p["spec"]["containers"][0]["securityContext"] = json!({"privileged": true}));
    let msg = judge(&pod).unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "container \"app\" is privileged (spec.containers[0].securityContext.privileged: true)"
        ),
        "{msg}"
    );
    let pod = locked(|p| {
        p["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"add": ["SETUID"]}});
    });
    let msg = judge(&pod).unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "container \"app\" adds capability \"SETUID\" (spec.containers[0].securityContext.capabilities.add)"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("remove it from capabilities.add"), "{msg}");
}
