//! Injection against a real API server (docs/operator.md, "Injection"): the operator, run out of cluster
//! with the chart's RBAC, patches its CA into both webhook configurations, and its webhook mutates an
//! annotated Pod in an opted-in namespace as the contract says — a native sidecar on 1.29+, a classic one
//! before — and refuses what it must, with messages saying why.
//!
//! `injection` is one test function, so that its steps share one operator (see e2e/README.md). The
//! same expectations are also checked offline, against the operator's own patch applied to the same
//! pods (`expectations_hold_for_the_operators_patch`), so that they are known to be right before a
//! cluster is at hand.

use std::collections::BTreeMap;

use dbward_crds::DatabaseConnection;
use dbward_e2e::{
    Env, binaries,
    cluster::{APPROVAL_WEBHOOK, POD_WEBHOOK, SIDECAR_IMAGE},
    kubeconfig_or_skip,
    objects::{self, from_json},
    say,
};
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    core::v1::{Container, EnvVar, Pod, PodSpec},
};
use kube::{Api, ResourceExt, api::PostParams};
use serde_json::json;

const INJECT: &str = "dbward.dev/inject";
const INJECTED: &str = "dbward.dev/injected";
const SIDECAR: &str = "dbward-sidecar";
const EGRESS_LOCK: &str = "dbward-egress-lock";

// ---- the objects ----------------------------------------------------------------------------------

/// `orders`: egress lock on (the default), local port 15432.
fn orders_connection(ns: &str, run: &str) -> DatabaseConnection {
    objects::connection(
        ns,
        "orders",
        run,
        json!({
            "host": "orders.db.example", "port": 5432, "database": "orders",
            "credentialsSecretRef": {"name": "orders-db"}, "localPort": 15432,
        }),
    )
}

/// `analytics`: no egress lock, local port 15433.
fn analytics_connection(ns: &str, run: &str) -> DatabaseConnection {
    objects::connection(
        ns,
        "analytics",
        run,
        json!({
            "host": "analytics.db.example", "port": 5433, "database": "analytics",
            "credentialsSecretRef": {"name": "orders-db"}, "localPort": 15433, "egressLock": false,
        }),
    )
}

fn container(name: &str, env: &[(&str, &str)]) -> Container {
    let mut c = json!({"name": name, "image": objects::APP_IMAGE});
    if !env.is_empty() {
        let env: Vec<_> = env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        c["env"] = json!(env);
    }
    from_json("a container", c)
}

/// A pod using `orders`, with an init container and a second container that sets its own PGPORT.
fn orders_pod(ns: &str, run: &str) -> Pod {
    let mut pod = objects::pod(ns, "orders-app", run, "app", &[(INJECT, "orders")]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.init_containers = Some(vec![container("app-init", &[])]);
        spec.containers.push(container("worker", &[("PGPORT", "6000")]));
    }
    pod
}

fn analytics_pod(ns: &str, run: &str) -> Pod {
    objects::pod(ns, "analytics-app", run, "app", &[(INJECT, "analytics")])
}

fn shared_pid_pod(ns: &str, run: &str) -> Pod {
    let mut pod = objects::pod(ns, "shared-pid", run, "app", &[(INJECT, "orders")]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.share_process_namespace = Some(true);
    }
    pod
}

fn unknown_connection_pod(ns: &str, run: &str) -> Pod {
    objects::pod(ns, "unknown-conn", run, "app", &[(INJECT, "nope")])
}

/// A pod that already carries the annotation of injection: a re-invocation of the webhook.
fn reinvoked_pod(ns: &str, run: &str) -> Pod {
    objects::pod(
        ns,
        "reinvoked",
        run,
        "app",
        &[(INJECT, "orders"), (INJECTED, "orders")],
    )
}

// ---- the expectations -----------------------------------------------------------------------------

fn names(containers: &[Container]) -> Vec<&str> {
    containers.iter().map(|c| c.name.as_str()).collect()
}

fn find<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} among {:?}", names(containers)))
}

fn env_of(c: &Container) -> BTreeMap<String, EnvVar> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.clone()))
        .collect()
}

fn value<'a>(env: &'a BTreeMap<String, EnvVar>, name: &str, container: &str) -> &'a str {
    env.get(name)
        .and_then(|e| e.value.as_deref())
        .unwrap_or_else(|| panic!("container {container} has no {name} value; its env: {env:?}"))
}

fn spec(pod: &Pod) -> &PodSpec {
    pod.spec
        .as_ref()
        .unwrap_or_else(|| panic!("pod {} has no spec", pod.name_any()))
}

fn inits(pod: &Pod) -> &[Container] {
    spec(pod).init_containers.as_deref().unwrap_or_default()
}

/// The pod of [`orders_pod`] as injected: on a native-sidecar server (`native`) or not, told to reach
/// the control API at `control_url` and to trust `ca_pem`.
fn check_orders_pod(pod: &Pod, native: bool, control_url: &str, ca_pem: &str) {
    assert_eq!(
        pod.annotations().get(INJECTED).map(String::as_str),
        Some("orders"),
        "the pod lacks the annotation {INJECTED}"
    );
    let containers = &spec(pod).containers;
    let sidecar = if native {
        // Native sidecar: an init container with restartPolicy Always, after the egress lock (which must
        // have run before it) and before the pod's own init containers.
        assert_eq!(
            names(inits(pod)),
            [EGRESS_LOCK, SIDECAR, "app-init"],
            "init containers"
        );
        assert_eq!(names(containers), ["app", "worker"], "containers");
        find(inits(pod), SIDECAR)
    } else {
        assert_eq!(names(inits(pod)), [EGRESS_LOCK, "app-init"], "init containers");
        assert_eq!(names(containers), [SIDECAR, "app", "worker"], "containers");
        find(containers, SIDECAR)
    };
    assert_eq!(
        sidecar.restart_policy.as_deref(),
        native.then_some("Always"),
        "the sidecar's restartPolicy (native sidecars: {native})"
    );
    assert_eq!(sidecar.image.as_deref(), Some(SIDECAR_IMAGE));
    assert_eq!(
        sidecar.args.as_deref().unwrap_or_default(),
        [
            "run",
            "--operator",
            control_url,
            "--connections",
            "orders",
            "--journal-stdout",
            "--admin=0.0.0.0:9476"
        ],
        "the sidecar's args"
    );
    let sidecar_env = env_of(sidecar);
    assert_eq!(
        value(&sidecar_env, "DBWARD_OPERATOR_CA", SIDECAR),
        ca_pem,
        "DBWARD_OPERATOR_CA is not the operator's CA"
    );
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_UID", "metadata.uid"),
    ] {
        let got = sidecar_env
            .get(var)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(got, Some(field), "the sidecar's {var}");
    }
    let sc = sidecar.security_context.clone().unwrap_or_default();
    assert_eq!(sc.run_as_user, Some(47301), "the sidecar's uid");
    assert_eq!(sc.run_as_group, Some(47301), "the sidecar's gid");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let dropped = sc.capabilities.and_then(|c| c.drop).unwrap_or_default();
    assert_eq!(dropped, ["ALL"], "the sidecar's dropped capabilities");
    let mounts: BTreeMap<&str, (&str, Option<bool>)> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), (m.mount_path.as_str(), m.read_only)))
        .collect();
    assert_eq!(
        mounts.get("dbward-token"),
        Some(&("/var/run/secrets/dbward.dev", Some(true))),
        "the sidecar's token mount; mounts: {mounts:?}"
    );
    assert_eq!(
        mounts.get("dbward-journal").map(|m| m.0),
        Some("/var/lib/dbward"),
        "the sidecar's journal mount; mounts: {mounts:?}"
    );

    let lock = find(inits(pod), EGRESS_LOCK);
    assert_eq!(lock.image.as_deref(), Some(SIDECAR_IMAGE));
    assert_eq!(
        lock.args.as_deref().unwrap_or_default(),
        [
            "egress-lock",
            "--uid",
            "47301",
            "--allow",
            "orders.db.example:5432"
        ],
        "the egress lock's args"
    );
    let lock_sc = lock.security_context.clone().unwrap_or_default();
    assert_eq!(lock_sc.run_as_user, Some(0), "the egress lock runs as root");
    let caps = lock_sc.capabilities.unwrap_or_default();
    let mut added = caps.add.unwrap_or_default();
    added.sort();
    assert_eq!(added, ["NET_ADMIN", "NET_RAW"], "the egress lock's capabilities");
    assert_eq!(caps.drop.unwrap_or_default(), ["ALL"]);

    let volumes = spec(pod).volumes.clone().unwrap_or_default();
    let token = volumes
        .iter()
        .find(|v| v.name == "dbward-token")
        .and_then(|v| v.projected.as_ref())
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.iter().find_map(|s| s.service_account_token.clone()))
        .unwrap_or_else(|| panic!("no projected token in volume dbward-token; volumes: {volumes:?}"));
    assert_eq!(token.audience.as_deref(), Some("dbward.dev"));
    assert_eq!(token.expiration_seconds, Some(3600));
    assert_eq!(token.path, "token");
    assert!(
        volumes
            .iter()
            .any(|v| v.name == "dbward-journal" && v.empty_dir.is_some()),
        "no emptyDir volume dbward-journal; volumes: {volumes:?}"
    );
    // The token is the sidecar's alone.
    for c in containers.iter().chain(inits(pod)).filter(|c| c.name != SIDECAR) {
        assert!(
            !c.volume_mounts.iter().flatten().any(|m| m.name == "dbward-token"),
            "container {} mounts the sidecar's token",
            c.name
        );
    }

    // PG* for the app's containers, their own values kept.
    for (name, port) in [("app", "15432"), ("worker", "6000"), ("app-init", "15432")] {
        let c = containers
            .iter()
            .chain(inits(pod))
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("container {name} is gone"));
        let e = env_of(c);
        assert_eq!(value(&e, "PGHOST", name), "127.0.0.1", "{name}: PGHOST");
        assert_eq!(value(&e, "PGPORT", name), port, "{name}: PGPORT");
        assert_eq!(value(&e, "PGDATABASE", name), "orders", "{name}: PGDATABASE");
    }
}

/// The pod of [`analytics_pod`] as injected: no egress lock, so the sidecar alone, first.
fn check_analytics_pod(pod: &Pod, native: bool) {
    let sidecar = if native {
        assert_eq!(
            names(inits(pod)),
            [SIDECAR],
            "init containers without egress lock"
        );
        assert_eq!(names(&spec(pod).containers), ["app"]);
        &inits(pod)[0]
    } else {
        assert!(inits(pod).is_empty(), "init containers: {:?}", names(inits(pod)));
        assert_eq!(names(&spec(pod).containers), [SIDECAR, "app"]);
        &spec(pod).containers[0]
    };
    assert_eq!(sidecar.restart_policy.as_deref(), native.then_some("Always"));
    let args = sidecar.args.as_deref().unwrap_or_default();
    let connections = args
        .iter()
        .position(|a| a == "--connections")
        .and_then(|i| args.get(i + 1));
    assert_eq!(connections.map(String::as_str), Some("analytics"), "{args:?}");
    let app = env_of(find(&spec(pod).containers, "app"));
    assert_eq!(value(&app, "PGPORT", "app"), "15433");
    assert_eq!(value(&app, "PGDATABASE", "app"), "analytics");
}

fn check_shared_pid_refusal(message: &str) {
    assert!(
        message.contains("shareProcessNamespace"),
        "the refusal does not say why: {message}"
    );
}

fn check_unknown_connection_refusal(message: &str) {
    for part in ["\"nope\"", "\"orders\"", "\"analytics\""] {
        assert!(
            message.contains(part),
            "the refusal of an unknown connection does not name {part}: {message}"
        );
    }
}

/// Whether dbward left the pod alone: no container or token volume of its own.
fn assert_untouched(pod: &Pod, why: &str) {
    let spec = spec(pod);
    let all: Vec<&str> = names(&spec.containers)
        .into_iter()
        .chain(names(spec.init_containers.as_deref().unwrap_or_default()))
        .collect();
    assert!(
        !all.contains(&SIDECAR) && !all.contains(&EGRESS_LOCK),
        "{why}: yet the pod got dbward's containers: {all:?}"
    );
    let volumes: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert!(
        !volumes.contains(&"dbward-token"),
        "{why}: yet the pod got the token volume"
    );
}

// ---- against the cluster --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection() {
    let Some(kubeconfig) = kubeconfig_or_skip("injection") else {
        return;
    };
    let env = Env::start(kubeconfig, binaries!()).await;
    let run = env.run.clone();

    // --- The operator patched its CA into both webhook configurations (Env::start waited for it) ---
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(env.client.clone());
    for name in [POD_WEBHOOK, APPROVAL_WEBHOOK] {
        let config = hooks
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        for w in config.webhooks.iter().flatten() {
            let ca = w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
            assert_eq!(
                ca,
                Some(env.ca_pem.as_bytes()),
                "{name} ({}) does not carry the operator's CA",
                w.name
            );
        }
    }
    say!("injection: caBundle patched into {POD_WEBHOOK} and {APPROVAL_WEBHOOK}");

    // --- An opted-in namespace with two connections; one more namespace that is not opted in ---
    let ns = env.namespace("app", true).await;
    let plain = env.namespace("plain", false).await;
    for n in [&ns, &plain] {
        env.service_account(n, "app").await;
    }
    env.create(&objects::secret(
        &ns,
        "orders-db",
        &run,
        &[("username", "orders"), ("password", "not-used")],
    ))
    .await;
    env.create(&orders_connection(&ns, &run)).await;
    env.create(&analytics_connection(&ns, &run)).await;

    // --- Injected ---
    let pod = env.create_pod(&orders_pod(&ns, &run)).await;
    say!(
        "injection: pod {ns}/orders-app admitted with init containers {:?} and containers {:?}",
        names(inits(&pod)),
        names(&spec(&pod).containers)
    );
    check_orders_pod(&pod, env.native_sidecars, &env.control_url, &env.ca_pem);
    say!("injection: the sidecar, egress lock, token, journal and PG* env are as the contract says");
    let pod = env.create_pod(&analytics_pod(&ns, &run)).await;
    check_analytics_pod(&pod, env.native_sidecars);

    // --- Refused ---
    let message = env.refused_pod(&shared_pid_pod(&ns, &run)).await;
    check_shared_pid_refusal(&message);
    say!("injection: shareProcessNamespace refused: {message}");
    let message = env.refused_pod(&unknown_connection_pod(&ns, &run)).await;
    check_unknown_connection_refusal(&message);
    say!("injection: unknown connection refused: {message}");

    // --- Left alone ---
    let plain_pod = env
        .create_pod(&objects::pod(&ns, "no-annotation", &run, "app", &[]))
        .await;
    assert_untouched(&plain_pod, "the pod has no dbward.dev/inject annotation");
    let outside = env
        .create_pod(&objects::pod(
            &plain,
            "not-opted-in",
            &run,
            "app",
            &[(INJECT, "orders")],
        ))
        .await;
    assert_untouched(&outside, "the namespace is not opted in");
    // Re-invocation: a pod that already has the annotation of injection is not injected again (a dry
    // run: the webhook answers as for a real create).
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = pods
        .create(&dry, &reinvoked_pod(&ns, &run))
        .await
        .unwrap_or_else(|e| panic!("the dry-run create of an already injected pod failed: {e}"));
    assert_untouched(&answered, "the pod is already injected");
    say!(
        "injection: pods without the annotation, outside opted-in namespaces, or already injected are left alone"
    );

    env.assert_operator_running();
}

// ---- offline --------------------------------------------------------------------------------------

/// The expectations above, checked against the operator's own patch of the same pods (no cluster):
/// what `injection` asserts is what the webhook is meant to do, on both kinds of server.
#[test]
fn expectations_hold_for_the_operators_patch() {
    use dbward_operator::admission::{ConnectionTarget, InjectContext, InjectSettings, mutate_pod};
    const URL: &str = "https://127.0.0.1:8443";
    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let (ns, run) = ("shop", "offline");
    let targets: Vec<ConnectionTarget> = [orders_connection(ns, run), analytics_connection(ns, run)]
        .iter()
        .filter_map(ConnectionTarget::from_resource)
        .collect();
    for native in [true, false] {
        let mut settings =
            InjectSettings::new("dbward-e2e-offline", SIDECAR_IMAGE, None, native).with_operator_ca(CA);
        settings.control_url = URL.to_owned();
        let ctx = InjectContext {
            settings: &settings,
            connections: &targets,
            namespace_labels: None,
        };
        let inject = |pod: Pod| -> Pod {
            let patch = mutate_pod(&pod, &ctx)
                .unwrap_or_else(|r| panic!("refused: {r}"))
                .unwrap_or_else(|| panic!("pod {} left alone", pod.name_any()));
            let mut doc = serde_json::to_value(&pod).unwrap_or_else(|e| panic!("{e}"));
            json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| panic!("the patch does not apply: {e}"));
            from_json("the patched pod", doc)
        };
        check_orders_pod(&inject(orders_pod(ns, run)), native, URL, CA);
        check_analytics_pod(&inject(analytics_pod(ns, run)), native);
        let refusal = |pod: Pod| match mutate_pod(&pod, &ctx) {
            Err(r) => r.to_string(),
            Ok(p) => panic!("pod {} was not refused: {p:?}", pod.name_any()),
        };
        check_shared_pid_refusal(&refusal(shared_pid_pod(ns, run)));
        check_unknown_connection_refusal(&refusal(unknown_connection_pod(ns, run)));
        for pod in [
            objects::pod(ns, "no-annotation", run, "app", &[]),
            reinvoked_pod(ns, run),
        ] {
            let patch = mutate_pod(&pod, &ctx).unwrap_or_else(|r| panic!("refused: {r}"));
            assert!(
                patch.is_none(),
                "pod {} would be changed: {patch:?}",
                pod.name_any()
            );
        }
    }
}
