//! What injection adds to a pod: the names, paths and uids of `docs/operator.md` ("Injection"), and the
//! containers and volumes built from them.
//!
//! The other parts of the system (the sidecar, the chart, the reconciler that reports pods without their
//! sidecar) rely on these exact values, so they live in one place.
//!
//! What an operator of the cluster may choose (the sidecar's uid, `--sidecar-uid`, default
//! [`DEFAULT_SIDECAR_UID`]; its admin port; whether its journal goes to stdout) comes in
//! [`InjectSettings`].

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
        ObjectFieldSelector, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
        SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::InjectSettings;

/// The namespace label that opts a namespace in to injection (the webhook's namespaceSelector).
pub const INJECTION_LABEL: &str = "dbward.dev/injection";
/// The value of [`INJECTION_LABEL`] that opts in.
pub const INJECTION_ENABLED: &str = "enabled";
/// The pod annotation naming the DatabaseConnections a pod uses: `dbward.dev/inject: "orders,analytics"`.
pub const INJECT_ANNOTATION: &str = "dbward.dev/inject";
/// The annotation injection leaves on the pod, listing the connections it set up. A pod carrying it is
/// never changed again, which makes re-invocation of the webhook harmless.
pub const INJECTED_ANNOTATION: &str = "dbward.dev/injected";
/// Name of the sidecar container.
pub const SIDECAR_CONTAINER: &str = "dbward-sidecar";
/// Name of the init container that firewalls the pod's egress to the upstream databases.
pub const EGRESS_LOCK_CONTAINER: &str = "dbward-egress-lock";
/// Name of the projected service-account token volume.
pub const TOKEN_VOLUME: &str = "dbward-token";
/// Name of the session journal volume.
pub const JOURNAL_VOLUME: &str = "dbward-journal";
/// Where the token volume is mounted in the sidecar; the token is the file [`TOKEN_FILE`] in it.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/dbward.dev";
/// File name of the token inside [`TOKEN_MOUNT_PATH`].
pub const TOKEN_FILE: &str = "token";
/// Audience of the projected token: the operator's TokenReview accepts only this one, so a token stolen
/// from the sidecar is useless against the API server and other services.
pub use dbward_crds::wire::TOKEN_AUDIENCE;
/// Lifetime of the projected token; the kubelet refreshes it well before it expires.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// Where the journal volume is mounted in the sidecar.
pub const JOURNAL_MOUNT_PATH: &str = "/var/lib/dbward";
/// The uid and gid the sidecar runs as unless the operator is told otherwise (`--sidecar-uid`). The
/// egress lock lets only this uid reach the databases, so no app may run as it: not 65532, the default
/// user of distroless `nonroot`, Chainguard and ko-built images, but a number no image uses by default.
/// The sidecar image's own `USER` is the same.
pub const DEFAULT_SIDECAR_UID: i64 = 47301;
/// The names dbward gives containers; a pod that already uses one is refused.
pub const RESERVED_CONTAINER_NAMES: [&str; 2] = [SIDECAR_CONTAINER, EGRESS_LOCK_CONTAINER];
/// The names dbward gives volumes; a pod that already uses one is refused.
pub const RESERVED_VOLUME_NAMES: [&str; 2] = [TOKEN_VOLUME, JOURNAL_VOLUME];

/// The sidecar's environment variable holding the operator's CA (PEM), which it trusts for the control
/// API. The CA lives ten years; see `certs`.
pub const OPERATOR_CA_ENV: &str = "DBWARD_OPERATOR_CA";

/// Where app containers reach the sidecar.
pub(crate) const LOCAL_HOST: &str = "127.0.0.1";

/// The URL of the operator's control API as sidecars see it: the `dbward-operator` Service in the
/// operator's namespace, port 8443.
pub fn control_api_url(operator_namespace: &str) -> String {
    format!("https://dbward-operator.{operator_namespace}.svc:8443")
}

/// The sidecar container. As a native sidecar (`native`) it carries `restartPolicy: Always` and goes
/// first among the init containers, so that it is up before the pod's own init containers and app
/// containers start, and is stopped after them.
pub(crate) fn sidecar_container(settings: &InjectSettings, connections: &str) -> Container {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_UID", "metadata.uid"),
    ];
    if let Some(ca) = settings.operator_ca.as_deref() {
        env.push(EnvVar {
            name: OPERATOR_CA_ENV.to_owned(),
            value: Some(ca.to_owned()),
            ..EnvVar::default()
        });
    }
    Container {
        name: SIDECAR_CONTAINER.to_owned(),
        image: Some(settings.sidecar_image.clone()),
        args: Some({
            let mut args = strings([
                "run",
                "--operator",
                &settings.control_url,
                "--connections",
                connections,
            ]);
            if settings.journal_stdout {
                args.push("--journal-stdout".to_owned());
            }
            if let Some(port) = settings.admin_port {
                args.push(format!("--admin=0.0.0.0:{port}"));
            }
            args
        }),
        env: Some(env),
        resources: settings.sidecar_resources.clone(),
        restart_policy: settings.native_sidecars.then(|| "Always".to_owned()),
        security_context: Some(sidecar_security_context(settings.sidecar_uid)),
        image_pull_policy: settings.image_pull_policy.clone(),
        ports: settings.admin_port.map(|port| {
            vec![ContainerPort {
                name: Some(ADMIN_PORT_NAME.to_owned()),
                container_port: i32::from(port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]
        }),
        // With a native sidecar the kubelet starts the app containers only once this probe passes, so
        // an app never meets a sidecar still waiting for its configuration.
        startup_probe: settings
            .admin_port
            .map(|_| probe("/readyz", 1, STARTUP_PROBE_FAILURES)),
        readiness_probe: settings.admin_port.map(|_| probe("/readyz", 5, 3)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: TOKEN_VOLUME.to_owned(),
                mount_path: TOKEN_MOUNT_PATH.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: JOURNAL_VOLUME.to_owned(),
                mount_path: JOURNAL_MOUNT_PATH.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// Name of the sidecar's admin port (`/healthz`, `/readyz`, `/metrics`).
pub const ADMIN_PORT_NAME: &str = "dbward-admin";

/// How many one-second startup probes the sidecar gets to receive its first configuration (5 minutes)
/// before the kubelet restarts it.
const STARTUP_PROBE_FAILURES: i32 = 300;

/// An HTTP GET probe of the admin port.
fn probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

/// The egress-lock init container: the sidecar image's `egress-lock` subcommand, allowed to reach each
/// `host:port` of `allow` only as the sidecar's `uid`. It is root with `NET_ADMIN` and `NET_RAW` and nothing
/// else, because installing firewall rules needs exactly that.
pub(crate) fn egress_lock_container(
    image: &str,
    resources: Option<&ResourceRequirements>,
    uid: i64,
    allow: &[String],
) -> Container {
    let uid = uid.to_string();
    let mut args = strings(["egress-lock", "--uid", uid.as_str()]);
    for target in allow {
        args.push("--allow".to_owned());
        args.push(target.clone());
    }
    Container {
        name: EGRESS_LOCK_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        args: Some(args),
        resources: resources.cloned(),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            // Explicit, so that a pod-level `runAsNonRoot: true` does not stop the pod from starting.
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(strings(["NET_ADMIN", "NET_RAW"])),
                drop: Some(strings(["ALL"])),
            }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// `host:port` as the egress lock's `--allow` takes it; an IPv6 literal is bracketed.
pub(crate) fn allow_target(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The projected service-account token, bound to the pod, for the sidecar to prove the pod's identity to
/// the operator.
pub(crate) fn token_volume() -> Volume {
    Volume {
        name: TOKEN_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(TOKEN_AUDIENCE.to_owned()),
                    expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                    path: TOKEN_FILE.to_owned(),
                }),
                ..VolumeProjection::default()
            }]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The journal: an `emptyDir`, so that a restarted sidecar finds what it acknowledged before.
pub(crate) fn journal_volume() -> Volume {
    Volume {
        name: JOURNAL_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// The sidecar's restrictions: its own non-root `uid` (the one the egress lock lets through, also its
/// gid), nothing writable but its journal, no privilege escalation, no capabilities. It passes the
/// `restricted` Pod Security Standard.
fn sidecar_security_context(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(strings(["ALL"])),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

/// An environment variable from the downward API.
fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A plain environment variable.
pub(crate) fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
