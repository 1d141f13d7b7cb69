//! `mutate_pod`: every patch is applied to the pod's JSON and the result read back as a `Pod`.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Container, EnvVar, Pod, ResourceRequirements},
    apimachinery::pkg::api::resource::Quantity,
};
use serde_json::{Value, json};

use crate::admission::{
    ConnectionTarget, InjectContext, InjectSettings, Refusal, mutate_pod,
    spec::{
        DEFAULT_SIDECAR_UID, EGRESS_LOCK_CONTAINER, INJECTED_ANNOTATION, JOURNAL_VOLUME, SIDECAR_CONTAINER,
        TOKEN_VOLUME,
    },
};

pub(super) fn settings(native: bool) -> InjectSettings {
    InjectSettings::new("dbward-system", "ghcr.io/dbward/sidecar:0.1.0", None, native)
}

fn target(name: &str, host: &str, port: u16, local_port: u16, egress_lock: bool) -> ConnectionTarget {
    ConnectionTarget {
        name: name.to_owned(),
        host: host.to_owned(),
        port,
        local_port,
        egress_lock,
    }
}

/// The namespace's connections: `orders` and `payments` are egress-locked, `analytics` is not,
/// `reports` shares `orders`' local port, `orders-replica` shares its upstream.
pub(super) fn connections() -> Vec<ConnectionTarget> {
    vec![
        target("orders", "orders-db.prod.svc", 5432, 5432, true),
        target("analytics", "10.0.0.7", 6432, 5433, false),
        target("payments", "fd00::7", 5432, 5434, true),
        target("reports", "reports-db", 5432, 5432, false),
        target("orders-replica", "orders-db.prod.svc", 5432, 5435, true),
    ]
}

/// A pod with one app container, annotated with `inject`.
pub(super) fn pod_json(inject: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9f8-",
            "annotations": {"dbward.dev/inject": inject}
        },
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}
    })
}

/// `mutate_pod` over `pod`, with the patch applied.
pub(super) fn inject_with(pod: &Value, settings: &InjectSettings, conns: &[ConnectionTarget]) -> Option<Pod> {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let ctx = InjectContext {
        settings,
        connections: conns,
        namespace_labels: None,
    };
    let patch = mutate_pod(&typed, &ctx).unwrap()?;
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    Some(serde_json::from_value(doc).unwrap())
}

pub(super) fn inject(pod: &Value, native: bool) -> Pod {
    inject_with(pod, &settings(native), &connections()).expect("the pod is changed")
}

pub(super) fn refusal(pod: &Value) -> Refusal {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let settings = settings(true);
    let conns = connections();
    let ctx = InjectContext {
        settings: &settings,
        connections: &conns,
        namespace_labels: None,
    };
    mutate_pod(&typed, &ctx).unwrap_err()
}

pub(super) fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .unwrap()
        .init_containers
        .as_deref()
        .unwrap_or_default()
}

pub(super) fn containers(pod: &Pod) -> &[Container] {
    &pod.spec.as_ref().unwrap().containers
}

fn names(containers: &[Container]) -> Vec<&str> {
    containers.iter().map(|c| c.name.as_str()).collect()
}

pub(super) fn find<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers.iter().find(|c| c.name == name).unwrap()
}

/// A container's plain env as name -> value.
fn env(container: &Container) -> BTreeMap<&str, &str> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e: &EnvVar| Some((e.name.as_str(), e.value.as_deref()?)))
        .collect()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn pods_without_the_annotation_are_unchanged() {
    let mut pod = pod_json("orders");
    pod["metadata"]["annotations"] = json!({"other": "x"});
    assert!(inject_with(&pod, &settings(true), &connections()).is_none());
    pod["metadata"].as_object_mut().unwrap().remove("annotations");
    assert!(inject_with(&pod, &settings(true), &connections()).is_none());
}

#[test]
fn native_sidecar_is_the_first_init_container_after_the_egress_lock() {
    let pod = inject(&pod_json("orders"), true);
    assert_eq!(
        names(init_containers(&pod)),
        [EGRESS_LOCK_CONTAINER, SIDECAR_CONTAINER]
    );
    assert_eq!(names(containers(&pod)), ["app"]);
    let sidecar = find(init_containers(&pod), SIDECAR_CONTAINER);
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(sidecar.image.as_deref(), Some("ghcr.io/dbward/sidecar:0.1.0"));
    assert_eq!(
        sidecar.args.as_deref().unwrap(),
        [
            "run",
            "--operator",
            "https://dbward-operator.dbward-system.svc:8443",
            "--connections",
            "orders",
            "--journal-stdout",
            "--admin=0.0.0.0:9476"
        ]
    );
}

#[test]
fn classic_sidecar_is_the_first_container() {
    let mut pod = pod_json("orders");
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "example/migrate:1"}]);
    let pod = inject(&pod, false);
    assert_eq!(names(containers(&pod)), [SIDECAR_CONTAINER, "app"]);
    assert_eq!(names(init_containers(&pod)), [EGRESS_LOCK_CONTAINER, "migrate"]);
    let sidecar = find(containers(&pod), SIDECAR_CONTAINER);
    assert_eq!(sidecar.restart_policy, None);
    assert_eq!(sidecar.args.as_deref().unwrap()[4], "orders");
}

#[test]
fn native_sidecar_goes_before_the_pods_own_init_containers() {
    let mut pod = pod_json("orders");
    pod["spec"]["initContainers"] = json!([
        {"name": "migrate", "image": "example/migrate:1"},
        {"name": "mesh", "image": "example/mesh:1", "restartPolicy": "Always"}
    ]);
    let pod = inject(&pod, true);
    assert_eq!(
        names(init_containers(&pod)),
        [EGRESS_LOCK_CONTAINER, SIDECAR_CONTAINER, "migrate", "mesh"]
    );
}

#[test]
fn sidecar_runs_unprivileged_with_its_token_and_journal() {
    let pod = inject(&pod_json("orders"), true);
    let sidecar = find(init_containers(&pod), SIDECAR_CONTAINER);
    let sc = sidecar.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(DEFAULT_SIDECAR_UID));
    assert_eq!(sc.run_as_group, Some(DEFAULT_SIDECAR_UID));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref().unwrap(), ["ALL"]);
    assert_eq!(caps.add, None);

    let fields: Vec<(&str, &str)> = sidecar
        .env
        .iter()
        .flatten()
        .map(|e| {
            let field = e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
            (e.name.as_str(), field.field_path.as_str())
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
            ("POD_UID", "metadata.uid")
        ]
    );

    let mounts: Vec<(&str, &str, Option<bool>)> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            (TOKEN_VOLUME, "/var/run/secrets/dbward.dev", Some(true)),
            (JOURNAL_VOLUME, "/var/lib/dbward", None)
        ]
    );

    let volumes = pod.spec.as_ref().unwrap().volumes.as_deref().unwrap();
    assert_eq!(volumes.len(), 2);
    let token = volumes[0].projected.as_ref().unwrap().sources.as_deref().unwrap();
    assert_eq!(volumes[0].name, TOKEN_VOLUME);
    let sa = token[0].service_account_token.as_ref().unwrap();
    assert_eq!(sa.audience.as_deref(), Some("dbward.dev"));
    assert_eq!(sa.expiration_seconds, Some(3600));
    assert_eq!(sa.path, "token");
    assert_eq!(volumes[1].name, JOURNAL_VOLUME);
    assert!(volumes[1].empty_dir.is_some());
}

#[test]
fn the_token_is_mounted_in_the_sidecar_only() {
    let mut pod = pod_json("orders");
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
    for native in [true, false] {
        let pod = inject(&pod, native);
        let all = init_containers(&pod).iter().chain(containers(&pod));
        for c in all.filter(|c| c.name != SIDECAR_CONTAINER) {
            let mounts = c.volume_mounts.iter().flatten();
            assert!(
                mounts.into_iter().all(|m| m.name != TOKEN_VOLUME),
                "{} mounts the token",
                c.name
            );
        }
    }
}

#[test]
fn egress_lock_runs_as_root_with_network_capabilities_only() {
    let pod = inject(&pod_json("orders,analytics,payments,orders-replica"), true);
    let lock = find(init_containers(&pod), EGRESS_LOCK_CONTAINER);
    assert_eq!(lock.image.as_deref(), Some("ghcr.io/dbward/sidecar:0.1.0"));
    // analytics has no egress lock; orders-replica shares orders' upstream; payments is IPv6.
    assert_eq!(
        lock.args.as_deref().unwrap(),
        [
            "egress-lock",
            "--uid",
            "47301",
            "--allow",
            "orders-db.prod.svc:5432",
            "--allow",
            "[fd00::7]:5432"
        ]
    );
    assert_eq!(lock.restart_policy, None);
    let sc = lock.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(0));
    assert_eq!(sc.run_as_non_root, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref().unwrap(), ["NET_ADMIN", "NET_RAW"]);
    assert_eq!(caps.drop.as_deref().unwrap(), ["ALL"]);
    assert!(lock.volume_mounts.is_none());
}

#[test]
fn no_egress_lock_when_no_used_connection_asks_for_it() {
    let native = inject(&pod_json("analytics"), true);
    assert_eq!(names(init_containers(&native)), [SIDECAR_CONTAINER]);
    let classic = inject(&pod_json("analytics"), false);
    assert!(classic.spec.as_ref().unwrap().init_containers.is_none());
    assert_eq!(names(containers(&classic)), [SIDECAR_CONTAINER, "app"]);
}

#[test]
fn app_containers_get_the_first_connection() {
    let mut pod = pod_json("analytics,orders");
    pod["spec"]["containers"] = json!([
        {"name": "app", "image": "a"},
        {"name": "worker", "image": "w", "env": [{"name": "MODE", "value": "batch"}]}
    ]);
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
    for native in [true, false] {
        let pod = inject(&pod, native);
        let want = BTreeMap::from([
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", "5433"),
            ("PGDATABASE", "analytics"),
        ]);
        assert_eq!(env(find(containers(&pod), "app")), want);
        assert_eq!(env(find(init_containers(&pod), "migrate")), want);
        let mut worker = want.clone();
        worker.insert("MODE", "batch");
        assert_eq!(env(find(containers(&pod), "worker")), worker);
        // The sidecar's own environment is only the downward API.
        let sidecar = init_containers(&pod)
            .iter()
            .chain(containers(&pod))
            .find(|c| c.name == SIDECAR_CONTAINER)
            .unwrap();
        assert!(env(sidecar).is_empty());
    }
}

#[test]
fn a_containers_own_pg_variables_are_kept() {
    let mut pod = pod_json("orders");
    pod["spec"]["containers"] = json!([{
        "name": "app",
        "image": "a",
        "env": [
            {"name": "PGHOST", "value": "localhost"},
            {"name": "PGDATABASE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "db"}}}
        ]
    }]);
    let pod = inject(&pod, true);
    let app = find(containers(&pod), "app");
    let env = app.env.as_deref().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["PGHOST", "PGDATABASE", "PGPORT"]);
    assert_eq!(env[0].value.as_deref(), Some("localhost"));
    assert!(env[1].value_from.is_some());
    assert_eq!(env[2].value.as_deref(), Some("5432"));
}

#[test]
fn a_container_setting_all_pg_variables_is_not_touched() {
    let mut pod = pod_json("orders");
    let own = json!([
        {"name": "PGHOST", "value": "h"},
        {"name": "PGPORT", "value": "1"},
        {"name": "PGDATABASE", "value": "d"}
    ]);
    pod["spec"]["containers"][0]["env"] = own.clone();
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let settings = settings(true);
    let conns = connections();
    let ctx = InjectContext {
        settings: &settings,
        connections: &conns,
        namespace_labels: None,
    };
    let patch = mutate_pod(&typed, &ctx).unwrap().unwrap();
    assert!(
        patch
            .iter()
            .all(|op| !op.path().to_string().starts_with("/spec/containers")),
        "{patch}"
    );
}

#[test]
fn the_pod_is_marked_injected_and_reinjection_changes_nothing() {
    for native in [true, false] {
        let mut pod = pod_json(" orders , analytics,orders ");
        pod["metadata"]["annotations"]["team"] = json!("payments");
        let injected = inject(&pod, native);
        assert_eq!(
            annotation(&injected, INJECTED_ANNOTATION),
            Some("orders,analytics")
        );
        assert_eq!(annotation(&injected, "team"), Some("payments"));
        assert_eq!(
            annotation(&injected, "dbward.dev/inject"),
            Some(" orders , analytics,orders ")
        );
        let again = serde_json::to_value(&injected).unwrap();
        assert!(inject_with(&again, &settings(native), &connections()).is_none());
    }
}

#[test]
fn connection_names_are_deduplicated_in_order() {
    let pod = inject(&pod_json("analytics, orders,analytics"), true);
    let sidecar = find(init_containers(&pod), SIDECAR_CONTAINER);
    assert_eq!(sidecar.args.as_deref().unwrap()[4], "analytics,orders");
}

#[test]
fn a_pod_carrying_the_injected_annotation_is_left_alone() {
    let mut pod = pod_json("does-not-exist");
    pod["metadata"]["annotations"][INJECTED_ANNOTATION] = json!("orders");
    pod["spec"]["shareProcessNamespace"] = json!(true);
    assert!(inject_with(&pod, &settings(true), &connections()).is_none());
}

#[test]
fn patch_paths_escape_the_annotation_key() {
    let typed: Pod = serde_json::from_value(pod_json("orders")).unwrap();
    let settings = settings(true);
    let conns = connections();
    let ctx = InjectContext {
        settings: &settings,
        connections: &conns,
        namespace_labels: None,
    };
    let patch = mutate_pod(&typed, &ctx).unwrap().unwrap();
    let paths: Vec<String> = patch.iter().map(|op| op.path().to_string()).collect();
    assert!(
        paths.contains(&"/metadata/annotations/dbward.dev~1injected".to_owned()),
        "{paths:?}"
    );
}

#[test]
fn missing_null_and_empty_arrays_are_created() {
    let mut pod = pod_json("orders");
    pod["spec"]["volumes"] = Value::Null;
    pod["spec"]["initContainers"] = json!([]);
    pod["spec"]["containers"][0]["env"] = Value::Null;
    for native in [true, false] {
        let injected = inject(&pod, native);
        let spec = injected.spec.as_ref().unwrap();
        assert_eq!(spec.volumes.as_ref().unwrap().len(), 2);
        assert!(!init_containers(&injected).is_empty());
        assert_eq!(env(find(containers(&injected), "app")).len(), 3);
    }
}

#[test]
fn existing_volumes_and_init_containers_are_kept() {
    let mut pod = pod_json("orders");
    pod["spec"]["volumes"] =
        json!([{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]);
    pod["spec"]["initContainers"] = json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]);
    let pod = inject(&pod, true);
    let volumes: Vec<&str> = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["data", "cfg", TOKEN_VOLUME, JOURNAL_VOLUME]);
    assert_eq!(
        names(init_containers(&pod)),
        [EGRESS_LOCK_CONTAINER, SIDECAR_CONTAINER, "a", "b"]
    );
}

#[test]
fn fields_the_operator_does_not_know_survive() {
    let mut pod = pod_json("orders");
    pod["spec"]["containers"][0]["futureField"] = json!({"x": 1});
    pod["spec"]["futurePodField"] = json!(true);
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let settings = settings(false);
    let conns = connections();
    let ctx = InjectContext {
        settings: &settings,
        connections: &conns,
        namespace_labels: None,
    };
    let patch = mutate_pod(&typed, &ctx).unwrap().unwrap();
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    // The app container moved to index 1 behind the sidecar, unknown field and all.
    assert_eq!(doc["spec"]["containers"][1]["futureField"], json!({"x": 1}));
    assert_eq!(doc["spec"]["futurePodField"], json!(true));
}

#[test]
fn sidecar_resources_come_from_the_settings() {
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        ..ResourceRequirements::default()
    };
    let settings = InjectSettings::new("ops", "img", Some(resources.clone()), true);
    assert_eq!(settings.control_url, "https://dbward-operator.ops.svc:8443");
    let pod = inject_with(&pod_json("orders"), &settings, &connections()).unwrap();
    for c in init_containers(&pod) {
        assert_eq!(c.resources.as_ref(), Some(&resources), "{}", c.name);
    }
    assert_eq!(find(containers(&pod), "app").resources, None);
}

#[test]
fn a_pod_without_containers_still_gets_a_classic_sidecar() {
    let mut pod = pod_json("orders");
    pod["spec"]["containers"] = json!([]);
    let pod = inject(&pod, false);
    assert_eq!(names(containers(&pod)), [SIDECAR_CONTAINER]);
}

#[test]
fn connections_come_from_the_crd() {
    let conn: dbward_crds::DatabaseConnection = serde_json::from_value(json!({
        "apiVersion": "dbward.dev/v1alpha1",
        "kind": "DatabaseConnection",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "host": "db.example.com",
            "database": "orders",
            "credentialsSecretRef": {"name": "orders-db"},
            "localPort": 6000
        }
    }))
    .unwrap();
    assert_eq!(
        ConnectionTarget::from_resource(&conn),
        Some(target("orders", "db.example.com", 5432, 6000, true))
    );
    let mut unnamed = conn;
    unnamed.metadata.name = None;
    assert_eq!(ConnectionTarget::from_resource(&unnamed), None);
}

#[test]
fn refusals() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut pod = pod_json("orders");
        f(&mut pod);
        refusal(&pod)
    };
    assert_eq!(
        with(&|p| p["spec"]["shareProcessNamespace"] = json!(true)),
        Refusal::SharedProcessNamespace
    );
    assert_eq!(with(&|p| p["spec"]["hostPID"] = json!(true)), Refusal::HostPid);
    assert_eq!(
        with(&|p| p["spec"]["hostNetwork"] = json!(true)),
        Refusal::HostNetwork
    );
    assert_eq!(refusal(&pod_json(" ")), Refusal::EmptyAnnotation);
    assert_eq!(
        refusal(&pod_json("orders,,x")),
        Refusal::EmptyName {
            value: "orders,,x".to_owned()
        }
    );
    assert_eq!(
        refusal(&pod_json("orders,Analytics")),
        Refusal::InvalidName {
            name: "Analytics".to_owned()
        }
    );
    assert_eq!(
        refusal(&pod_json("orders,orders-reports")),
        Refusal::UnknownConnections {
            unknown: vec!["orders-reports".to_owned()],
            known: ["analytics", "orders", "orders-replica", "payments", "reports"]
                .map(str::to_owned)
                .to_vec()
        }
    );
    assert_eq!(
        refusal(&pod_json("analytics,orders,reports")),
        Refusal::DuplicateLocalPort {
            port: 5432,
            first: "orders".to_owned(),
            second: "reports".to_owned()
        }
    );
    let no_spec = with(&|p| {
        p.as_object_mut().unwrap().remove("spec");
    });
    assert_eq!(no_spec, Refusal::NoSpec);
}

#[test]
fn shared_process_namespace_false_is_fine() {
    let mut pod = pod_json("orders");
    pod["spec"]["shareProcessNamespace"] = json!(false);
    pod["spec"]["hostNetwork"] = json!(false);
    inject(&pod, true);
}

#[test]
fn names_dbward_uses_are_refused() {
    let cases = [
        ("containers", SIDECAR_CONTAINER, "a container"),
        ("containers", EGRESS_LOCK_CONTAINER, "a container"),
        ("initContainers", SIDECAR_CONTAINER, "an init container"),
        ("initContainers", EGRESS_LOCK_CONTAINER, "an init container"),
        ("ephemeralContainers", SIDECAR_CONTAINER, "an ephemeral container"),
    ];
    for (array, name, kind) in cases {
        let mut pod = pod_json("analytics");
        let mut list = pod["spec"][array].as_array().cloned().unwrap_or_default();
        list.push(json!({"name": name, "image": "x"}));
        pod["spec"][array] = Value::Array(list);
        assert_eq!(
            refusal(&pod),
            Refusal::NameInUse {
                kind,
                name: name.to_owned()
            },
            "{array} {name}"
        );
    }
    for name in [TOKEN_VOLUME, JOURNAL_VOLUME] {
        let mut pod = pod_json("analytics");
        pod["spec"]["volumes"] = json!([{"name": name, "emptyDir": {}}]);
        assert_eq!(
            refusal(&pod),
            Refusal::NameInUse {
                kind: "a volume",
                name: name.to_owned()
            }
        );
    }
}

#[test]
fn containers_cannot_mount_the_volumes_dbward_adds() {
    for (array, volume) in [
        ("containers", TOKEN_VOLUME),
        ("initContainers", TOKEN_VOLUME),
        ("ephemeralContainers", TOKEN_VOLUME),
        ("containers", JOURNAL_VOLUME),
    ] {
        let mut pod = pod_json("analytics");
        pod["spec"][array] = json!([{
            "name": "thief",
            "image": "x",
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": volume, "mountPath": "/stolen", "subPath": "token"}
            ]
        }]);
        assert_eq!(
            refusal(&pod),
            Refusal::MountsReservedVolume {
                container: "thief".to_owned(),
                volume: volume.to_owned()
            },
            "{array} {volume}"
        );
    }
    let mut pod = pod_json("analytics");
    pod["spec"]["containers"][0]["volumeDevices"] = json!([{"name": TOKEN_VOLUME, "devicePath": "/dev/x"}]);
    assert!(matches!(refusal(&pod), Refusal::MountsReservedVolume { .. }));
    let message = Refusal::MountsReservedVolume {
        container: "app".to_owned(),
        volume: TOKEN_VOLUME.to_owned(),
    }
    .to_string();
    assert!(message.contains("remove that volumeMount"), "{message}");
}

#[test]
fn pods_cannot_project_a_token_for_dbward_themselves() {
    let mut pod = pod_json("analytics");
    pod["spec"]["volumes"] = json!([{"name": "mine", "projected": {"sources": [
        {"configMap": {"name": "c"}},
        {"serviceAccountToken": {"audience": "dbward.dev", "path": "t"}}
    ]}}]);
    assert_eq!(
        refusal(&pod),
        Refusal::DbwardTokenProjected {
            volume: "mine".to_owned()
        }
    );
    // Tokens for other audiences are the pod's own business.
    pod["spec"]["volumes"][0]["projected"]["sources"][1]["serviceAccountToken"]["audience"] = json!("vault");
    inject(&pod, true);
    pod["spec"]["volumes"][0]["projected"]["sources"][1]["serviceAccountToken"] = json!({"path": "t"});
    inject(&pod, true);
}

#[test]
fn refusal_messages_say_what_to_do() {
    let msg = |r: Refusal| r.to_string();
    assert!(msg(Refusal::SharedProcessNamespace).contains("remove shareProcessNamespace"));
    assert!(msg(Refusal::HostPid).contains("without hostPID"));
    let unknown = msg(refusal(&pod_json("ordres,payment")));
    assert!(
        unknown.starts_with(
            "no DatabaseConnections named \"ordres\", \"payment\" in this namespace; it has \"analytics\", \
             \"orders\", \"orders-replica\", \"payments\", \"reports\""
        ),
        "{unknown}"
    );
    let none = Refusal::UnknownConnections {
        unknown: vec!["orders".to_owned()],
        known: Vec::new(),
    };
    assert!(
        msg(none).starts_with("no DatabaseConnection named \"orders\" in this namespace, which has none")
    );
    let many = Refusal::UnknownConnections {
        unknown: vec!["x".to_owned()],
        known: (0..25).map(|i| format!("c{i:02}")).collect(),
    };
    let many = msg(many);
    assert!(many.contains("\"c19\" and 5 more"), "{many}");
    assert!(!many.contains("c20"), "{many}");
    let ports = msg(refusal(&pod_json("orders,reports")));
    assert!(ports.contains("another spec.localPort"), "{ports}");
    assert!(msg(refusal(&pod_json("orders,,x"))).contains("single commas"));
}

#[test]
fn the_sidecar_trusts_the_operators_ca_and_both_containers_follow_the_pull_policy() {
    let mut settings =
        settings(true).with_operator_ca("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n");
    settings.image_pull_policy = Some("Always".into());
    let pod = inject_with(&pod_json("orders"), &settings, &connections()).unwrap();
    let sidecar = find(init_containers(&pod), SIDECAR_CONTAINER);
    assert_eq!(
        env(sidecar).get("DBWARD_OPERATOR_CA").copied(),
        Some("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")
    );
    assert_eq!(sidecar.image_pull_policy.as_deref(), Some("Always"));
    let lock = find(init_containers(&pod), EGRESS_LOCK_CONTAINER);
    assert_eq!(lock.image_pull_policy.as_deref(), Some("Always"));
    assert!(!env(lock).contains_key("DBWARD_OPERATOR_CA"));
    // Without them, neither is set: the cluster's defaults and the system roots apply.
    let plain = inject(&pod_json("orders"), true);
    let sidecar = find(init_containers(&plain), SIDECAR_CONTAINER);
    assert!(!env(sidecar).contains_key("DBWARD_OPERATOR_CA"));
    assert_eq!(sidecar.image_pull_policy, None);
}
