//! What the sidecar container gets besides the proxy itself: its admin port with the probes on it, and
//! its journal copied to stdout; both are operator settings.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::inject::{
    connections, containers, find, init_containers, inject, inject_with, pod_json, refusal, settings,
};
use crate::admission::{InjectSettings, Refusal, spec::SIDECAR_CONTAINER};

#[test]
fn the_sidecar_copies_its_journal_to_stdout_unless_told_not_to() {
    let args = |s: &InjectSettings| {
        let pod = inject_with(&pod_json("orders"), s, &connections()).unwrap();
        find(init_containers(&pod), SIDECAR_CONTAINER)
            .args
            .clone()
            .unwrap()
    };
    let mut s = settings(true);
    assert!(args(&s).iter().any(|a| a == "--journal-stdout"));
    s.journal_stdout = false;
    assert!(!args(&s).iter().any(|a| a == "--journal-stdout"));
}

#[test]
fn the_sidecar_is_probed_on_its_admin_port_which_apps_may_not_take() {
    for native in [true, false] {
        let pod = inject(&pod_json("orders"), native);
        let sidecar = if native {
            find(init_containers(&pod), SIDECAR_CONTAINER)
        } else {
            find(containers(&pod), SIDECAR_CONTAINER)
        };
        let ports = sidecar.ports.as_deref().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].container_port, 9476);
        assert_eq!(ports[0].name.as_deref(), Some("dbward-admin"));
        for probe in [&sidecar.startup_probe, &sidecar.readiness_probe] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.path.as_deref(), Some("/readyz"));
            assert_eq!(get.port, IntOrString::String("dbward-admin".into()));
        }
        assert!(
            sidecar.liveness_probe.is_none(),
            "a sidecar waiting for the operator is not restarted"
        );
    }
    let mut pod = pod_json("orders");
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 9476}]);
    assert_eq!(
        refusal(&pod),
        Refusal::AdminPortInUse {
            container: "app".into(),
            port: 9476
        }
    );
    let mut off = settings(true);
    off.admin_port = None;
    let pod = inject_with(&pod, &off, &connections()).unwrap();
    let sidecar = find(init_containers(&pod), SIDECAR_CONTAINER);
    assert!(sidecar.ports.is_none() && sidecar.startup_probe.is_none() && sidecar.readiness_probe.is_none());
    assert!(
        !sidecar
            .args
            .as_deref()
            .unwrap()
            .iter()
            .any(|a| a.starts_with("--admin"))
    );
}
