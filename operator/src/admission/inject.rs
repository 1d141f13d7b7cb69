//! Pod injection: on Pod CREATE, a pod annotated `dbward.dev/inject: "orders,analytics"` gets the dbward
//! sidecar, the egress lock when a connection asks for it, the projected token, the journal volume, and
//! `PGHOST`/`PGPORT`/`PGDATABASE` for its containers (`docs/operator.md`, "Injection").
//!
//! [`mutate_pod`] decides over typed data and returns a JSON patch; [`review_pod`] wraps it for the
//! webhook. Neither does any I/O: the caller hands in the settings and the namespace's connections.
//!
//! Which containers get the `PG*` variables: every container the pod brings, its init containers
//! included (they often run migrations). With native sidecars those reach the database through the
//! sidecar, which starts first; with a classic sidecar they run before it and cannot, which
//! [`review_pod`] says in a warning. A container keeps any of the variables it sets itself in `env`;
//! values from `envFrom` are not inspected, and Kubernetes lets `env` win over them.
//!
//! When an egress lock is injected, the pod's own containers must not be able to get past it
//! ([`egress`](super::egress)), and a namespace whose Pod Security level refuses the lock gets a warning
//! ([`pod_security`](super::pod_security)).

use std::collections::BTreeMap;

use dbward_crds::DatabaseConnection;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSpec, ResourceRequirements, Volume, VolumeDevice, VolumeMount,
};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::Value;

use super::{
    egress::check_egress_lock,
    names::parse_inject_annotation,
    patch::{PatchBuilder, to_json},
    pod_security::{self, Level},
    spec::{
        self, DEFAULT_SIDECAR_UID, INJECT_ANNOTATION, INJECTED_ANNOTATION, LOCAL_HOST,
        RESERVED_CONTAINER_NAMES, RESERVED_VOLUME_NAMES, TOKEN_AUDIENCE,
    },
};

/// The variables app containers get, pointing libpq-based clients at the sidecar.
const PG_ENV: [&str; 3] = ["PGHOST", "PGPORT", "PGDATABASE"];

/// At most this many known connection names are listed when a pod names an unknown one.
const MAX_LISTED_CONNECTIONS: usize = 20;

/// What injection needs of one DatabaseConnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionTarget {
    /// The DatabaseConnection's name, which pods put in their annotation.
    pub name: String,
    /// The upstream host, for the egress lock.
    pub host: String,
    /// The upstream port, for the egress lock.
    pub port: u16,
    /// Where the sidecar serves the connection inside the pod.
    pub local_port: u16,
    /// Whether only the sidecar may reach `host:port`.
    pub egress_lock: bool,
}

impl ConnectionTarget {
    /// The target of a DatabaseConnection, or `None` for an object without a name (which the API server
    /// never stores).
    pub fn from_resource(connection: &DatabaseConnection) -> Option<Self> {
        let spec = &connection.spec;
        Some(Self {
            name: connection.metadata.name.clone()?,
            host: spec.host.clone(),
            port: spec.port,
            local_port: spec.local_port,
            egress_lock: spec.egress_lock,
        })
    }
}

/// The operator-wide side of injection, from its flags and the API server's version; built once.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectSettings {
    /// The operator's namespace: its pods are never injected.
    pub operator_namespace: String,
    /// The sidecar image (`--sidecar-image`), also used by the egress lock.
    pub sidecar_image: String,
    /// The sidecar's resources (`--sidecar-cpu`, `--sidecar-memory`).
    pub sidecar_resources: Option<ResourceRequirements>,
    /// The control API the sidecar fetches its configuration from.
    pub control_url: String,
    /// Whether the API server runs native sidecars (see
    /// [`supports_native_sidecars`](super::supports_native_sidecars)).
    pub native_sidecars: bool,
    /// The operator's CA (PEM), given to the sidecar to trust the control API; without it the sidecar
    /// trusts the system roots.
    pub operator_ca: Option<String>,
    /// The sidecar image's pull policy (`--sidecar-image-pull-policy`); the cluster's default when unset.
    pub image_pull_policy: Option<String>,
    /// The uid and gid the sidecar runs as, the one the egress lock lets through (`--sidecar-uid`,
    /// [`DEFAULT_SIDECAR_UID`]). Pods whose containers run as it are refused.
    pub sidecar_uid: i64,
    /// Whether the sidecar also writes its session journal to stdout (`--sidecar-journal-stdout`, on by
    /// default): the journal volume is an `emptyDir` and goes with the pod, stdout reaches the cluster's
    /// log collectors.
    pub journal_stdout: bool,
    /// The sidecar's admin port on the pod's IP (`--sidecar-admin-port`, [`DEFAULT_ADMIN_PORT`]): its
    /// startup and readiness probes and `/metrics`. `None` for none.
    pub admin_port: Option<u16>,
}

/// The sidecar's admin port unless `--sidecar-admin-port` says otherwise.
pub const DEFAULT_ADMIN_PORT: u16 = 9476;

impl InjectSettings {
    /// Settings for an operator in `operator_namespace`, its control API at the `dbward-operator`
    /// Service there.
    pub fn new(
        operator_namespace: impl Into<String>,
        sidecar_image: impl Into<String>,
        sidecar_resources: Option<ResourceRequirements>,
        native_sidecars: bool,
    ) -> Self {
        let operator_namespace = operator_namespace.into();
        Self {
            control_url: spec::control_api_url(&operator_namespace),
            operator_namespace,
            sidecar_image: sidecar_image.into(),
            sidecar_resources,
            native_sidecars,
            operator_ca: None,
            image_pull_policy: None,
            sidecar_uid: DEFAULT_SIDECAR_UID,
            journal_stdout: true,
            admin_port: Some(DEFAULT_ADMIN_PORT),
        }
    }

    /// The same settings, giving sidecars `ca_pem` to trust for the control API.
    pub fn with_operator_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.operator_ca = Some(ca_pem.into());
        self
    }
}

/// Everything one injection decision reads.
#[derive(Debug, Clone, Copy)]
pub struct InjectContext<'a> {
    /// The operator-wide settings.
    pub settings: &'a InjectSettings,
    /// The DatabaseConnections of the pod's namespace, and only those: a pod may use no other
    /// namespace's connections. See [`pod_namespace`] for which namespace that is.
    pub connections: &'a [ConnectionTarget],
    /// The labels of the pod's namespace, `None` when not known: only read for its Pod Security level
    /// (see [`pod_security`](super::pod_security)).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
}

/// Why a pod asking for dbward is refused. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `shareProcessNamespace: true` would let every container read the sidecar's memory.
    #[error(
        "shareProcessNamespace is true, so every container could read the sidecar's memory and with it the \
         database credential: remove shareProcessNamespace from the pod, or remove the {INJECT_ANNOTATION} \
         annotation"
    )]
    SharedProcessNamespace,
    /// `hostPID: true` shows the sidecar's process to every container, as a shared process namespace does,
    /// and every other process of the node besides.
    #[error(
        "hostPID is true, so every container would see the sidecar's process (and the node's) and could read          its memory and with it the database credential: run the pod without hostPID, or remove the          {INJECT_ANNOTATION} annotation"
    )]
    HostPid,
    /// `hostNetwork: true` would put the sidecar's ports, and the egress lock's rules, on the node.
    #[error(
        "hostNetwork is true, so the sidecar would serve the database on the node's loopback, open to every \
         host-network pod, and the egress lock would rewrite the node's firewall: run the pod without \
         hostNetwork, or remove the {INJECT_ANNOTATION} annotation"
    )]
    HostNetwork,
    /// A container declares the port the sidecar's admin server listens on.
    #[error(
        "container {container:?} declares port {port}, which the dbward sidecar's admin server (probes and \
         metrics) listens on: use another port, or have the operator use another with --sidecar-admin-port"
    )]
    AdminPortInUse {
        /// The container.
        container: String,
        /// The port.
        port: u16,
    },
    /// The annotation names nothing.
    #[error(
        "annotation {INJECT_ANNOTATION} is empty: list the DatabaseConnections the pod uses, e.g. \
         \"orders,analytics\""
    )]
    EmptyAnnotation,
    /// The annotation has an empty entry, e.g. `"orders,,x"`.
    #[error(
        "annotation {INJECT_ANNOTATION} {value:?} has an empty entry: separate DatabaseConnection names with \
         single commas, e.g. \"orders,analytics\""
    )]
    EmptyName {
        /// The whole annotation value.
        value: String,
    },
    /// An entry cannot be a DatabaseConnection's name.
    #[error(
        "annotation {INJECT_ANNOTATION}: {name:?} is not a valid DatabaseConnection name (lower-case letters, \
         digits, '-' and '.', starting and ending with a letter or digit): use the name shown by \
         `kubectl get databaseconnections`"
    )]
    InvalidName {
        /// The offending entry, trimmed.
        name: String,
    },
    /// Names that are not DatabaseConnections of the pod's namespace.
    #[error("{}", unknown_message(unknown, known))]
    UnknownConnections {
        /// The requested names that do not exist, in the annotation's order.
        unknown: Vec<String>,
        /// The connections that do exist in the namespace, sorted.
        known: Vec<String>,
    },
    /// Two requested connections would be served on the same local port.
    #[error(
        "DatabaseConnections {first:?} and {second:?} both use localPort {port}, and the sidecar can serve \
         only one of them there: give one of them another spec.localPort, or use them from different pods"
    )]
    DuplicateLocalPort {
        /// The shared port.
        port: u16,
        /// The connection listed first in the annotation.
        first: String,
        /// The connection that collides with it.
        second: String,
    },
    /// The pod already uses a name dbward gives a container or volume.
    #[error(
        "the pod already has {kind} named {name:?}, a name dbward uses for what it adds: rename yours, or \
         remove the {INJECT_ANNOTATION} annotation"
    )]
    NameInUse {
        /// "a container", "an init container", "an ephemeral container" or "a volume".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A container of the pod mounts a volume dbward adds: it would get the sidecar's token (and with it
    /// the databases' credentials) or its journal once the volume exists.
    #[error(
        "container {container:?} mounts volume {volume:?}, which dbward adds for its sidecar alone (it holds \
         the pod's dbward token or its session journal): remove that volumeMount"
    )]
    MountsReservedVolume {
        /// The container.
        container: String,
        /// The volume.
        volume: String,
    },
    /// The pod projects a token for dbward's audience into a volume of its own: whoever mounts it could
    /// pose as the sidecar to the operator.
    #[error(
        "volume {volume:?} projects a service-account token with audience \"{TOKEN_AUDIENCE}\", which only \
         dbward's sidecar may hold (the operator hands database credentials to its bearer): remove that \
         token projection or give it another audience"
    )]
    DbwardTokenProjected {
        /// The pod's volume.
        volume: String,
    },
    /// A container runs as the sidecar's uid, which the egress lock lets through to the databases.
    #[error(
        "container {container:?} runs as uid {uid} ({field}), the dbward sidecar's uid, which the egress \
         lock lets through to the database: run it as another uid"
    )]
    RunsAsSidecarUid {
        /// The container.
        container: String,
        /// The field that sets the uid, e.g. `spec.containers[0].securityContext.runAsUser`, or the pod's
        /// `spec.securityContext.runAsUser` when the container inherits it.
        field: String,
        /// The sidecar's uid.
        uid: i64,
    },
    /// A privileged container can do anything in the pod's network namespace, the egress lock included.
    #[error(
        "container {container:?} is privileged ({field}: true), so it could remove the egress lock that \
         keeps every process but the dbward sidecar from the database: run it unprivileged"
    )]
    PrivilegedContainer {
        /// The container.
        container: String,
        /// `spec.containers[N].securityContext.privileged` (or `initContainers`).
        field: String,
    },
    /// A container adds a capability that gets past the egress lock.
    #[error(
        "container {container:?} adds capability {capability:?} ({field}), with which it could get past the \
         egress lock that keeps every process but the dbward sidecar from the database (NET_ADMIN and \
         SYS_ADMIN change the firewall, NET_RAW bypasses it, SETUID and SETGID become the sidecar's user): \
         remove it from capabilities.add"
    )]
    ForbiddenCapability {
        /// The container.
        container: String,
        /// `spec.containers[N].securityContext.capabilities.add` (or `initContainers`).
        field: String,
        /// The capability as written.
        capability: String,
    },
    /// A pod without a spec cannot be created anyway; say so rather than guess.
    #[error("the pod has no spec")]
    NoSpec,
}

fn unknown_message(unknown: &[String], known: &[String]) -> String {
    let what = if unknown.len() == 1 {
        "no DatabaseConnection named"
    } else {
        "no DatabaseConnections named"
    };
    let asked = quoted_list(unknown);
    let hint = "the names in the dbward.dev/inject annotation must be DatabaseConnections of the pod's \
                own namespace";
    if known.is_empty() {
        return format!("{what} {asked} in this namespace, which has none: create it first ({hint})");
    }
    let mut listed = quoted_list(known.get(..MAX_LISTED_CONNECTIONS).unwrap_or(known));
    if known.len() > MAX_LISTED_CONNECTIONS {
        listed.push_str(&format!(" and {} more", known.len() - MAX_LISTED_CONNECTIONS));
    }
    format!("{what} {asked} in this namespace; it has {listed} ({hint})")
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The patch that injects dbward into `pod`, `None` when the pod is to stay as it is (it does not ask
/// for dbward, or already has it), or why it is refused.
///
/// The patch is for the pod as the API server holds it: it adds to missing arrays and maps by creating
/// them, and never rewrites what the pod already has.
pub fn mutate_pod(pod: &Pod, ctx: &InjectContext<'_>) -> Result<Option<json_patch::Patch>, Refusal> {
    Ok(plan(pod, ctx)?.map(|injection| injection.patch))
}

/// What injecting a pod changes.
struct Injection {
    /// The patch.
    patch: json_patch::Patch,
    /// Whether it adds the egress lock.
    egress_lock: bool,
}

fn plan(pod: &Pod, ctx: &InjectContext<'_>) -> Result<Option<Injection>, Refusal> {
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(INJECTED_ANNOTATION)) {
        return Ok(None);
    }
    let Some(value) = annotations.and_then(|a| a.get(INJECT_ANNOTATION)) else {
        return Ok(None);
    };
    let names = parse_inject_annotation(value)?;
    let spec = pod.spec.as_ref().ok_or(Refusal::NoSpec)?;
    check_pod(spec)?;
    check_admin_port(spec, ctx.settings.admin_port)?;
    let connections = resolve(&names, ctx.connections)?;
    let egress_lock = connections.iter().any(|c| c.egress_lock);
    if egress_lock {
        check_egress_lock(spec, ctx.settings.sidecar_uid)?;
    }
    let patch = build_patch(pod, spec, &names, &connections, ctx.settings).finish();
    Ok(patch.map(|patch| Injection { patch, egress_lock }))
}

/// Refuse pods in which the sidecar could not keep its credential, or whose names clash with dbward's.
fn check_pod(spec: &PodSpec) -> Result<(), Refusal> {
    if spec.share_process_namespace == Some(true) {
        return Err(Refusal::SharedProcessNamespace);
    }
    if spec.host_pid == Some(true) {
        return Err(Refusal::HostPid);
    }
    if spec.host_network == Some(true) {
        return Err(Refusal::HostNetwork);
    }
    check_names(spec)?;
    check_mounts(spec)?;
    check_token_projections(spec)
}

/// Refuse a pod whose containers declare the port the sidecar's admin server takes.
fn check_admin_port(spec: &PodSpec, admin_port: Option<u16>) -> Result<(), Refusal> {
    let Some(port) = admin_port else { return Ok(()) };
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        if c.ports
            .iter()
            .flatten()
            .any(|p| p.container_port == i32::from(port))
        {
            return Err(Refusal::AdminPortInUse {
                container: c.name.clone(),
                port,
            });
        }
    }
    Ok(())
}

/// Refuse a pod that asks the kubelet for a token of dbward's audience itself.
fn check_token_projections(spec: &PodSpec) -> Result<(), Refusal> {
    let projects_dbward_token = |volume: &&Volume| {
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_deref());
        sources.unwrap_or_default().iter().any(|source| {
            let token = source.service_account_token.as_ref();
            token.and_then(|t| t.audience.as_deref()) == Some(TOKEN_AUDIENCE)
        })
    };
    match spec.volumes.iter().flatten().find(projects_dbward_token) {
        Some(volume) => Err(Refusal::DbwardTokenProjected {
            volume: volume.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Refuse a container that mounts a volume dbward is about to add. Without the volume such a pod is
/// invalid; with it, the container would read the sidecar's token and could fetch the databases'
/// credentials in its name.
fn check_mounts(spec: &PodSpec) -> Result<(), Refusal> {
    let regular = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mounts =
        regular
            .flat_map(|c| mounted_volumes(&c.name, c.volume_mounts.as_deref(), c.volume_devices.as_deref()))
            .chain(spec.ephemeral_containers.iter().flatten().flat_map(|c| {
                mounted_volumes(&c.name, c.volume_mounts.as_deref(), c.volume_devices.as_deref())
            }));
    for (container, volume) in mounts {
        if RESERVED_VOLUME_NAMES.contains(&volume) {
            return Err(Refusal::MountsReservedVolume {
                container: container.to_owned(),
                volume: volume.to_owned(),
            });
        }
    }
    Ok(())
}

/// `(container, volume)` for each volume a container mounts or uses as a device.
fn mounted_volumes<'a>(
    container: &'a str,
    mounts: Option<&'a [VolumeMount]>,
    devices: Option<&'a [VolumeDevice]>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let mounts = mounts.unwrap_or_default().iter().map(|m| m.name.as_str());
    let devices = devices.unwrap_or_default().iter().map(|d| d.name.as_str());
    mounts.chain(devices).map(move |volume| (container, volume))
}

/// Refuse a pod that already uses a container or volume name dbward adds: the patch would create a
/// duplicate, or the pod's own container would pass for the sidecar.
fn check_names(spec: &PodSpec) -> Result<(), Refusal> {
    let init = spec.init_containers.iter().flatten();
    let ephemeral = spec.ephemeral_containers.iter().flatten();
    let volumes = spec.volumes.iter().flatten();
    let containers = spec
        .containers
        .iter()
        .map(|c| ("a container", c.name.as_str()))
        .chain(init.map(|c| ("an init container", c.name.as_str())))
        .chain(ephemeral.map(|c| ("an ephemeral container", c.name.as_str())));
    let clash = containers
        .filter(|(_, name)| RESERVED_CONTAINER_NAMES.contains(name))
        .chain(
            volumes
                .map(|v| ("a volume", v.name.as_str()))
                .filter(|(_, name)| RESERVED_VOLUME_NAMES.contains(name)),
        )
        .next();
    match clash {
        Some((kind, name)) => Err(Refusal::NameInUse {
            kind,
            name: name.to_owned(),
        }),
        None => Ok(()),
    }
}

/// The namespace's connections for `names`, in the same order; every unknown name is reported at once,
/// and so is the first pair sharing a local port.
fn resolve<'a>(
    names: &[String],
    available: &'a [ConnectionTarget],
) -> Result<Vec<&'a ConnectionTarget>, Refusal> {
    let by_name: BTreeMap<&str, &ConnectionTarget> = available.iter().map(|c| (c.name.as_str(), c)).collect();
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !by_name.contains_key(n.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal::UnknownConnections {
            unknown,
            known: by_name.keys().map(|k| (*k).to_owned()).collect(),
        });
    }
    let chosen: Vec<&ConnectionTarget> = names
        .iter()
        .filter_map(|n| by_name.get(n.as_str()).copied())
        .collect();
    let mut ports: BTreeMap<u16, &str> = BTreeMap::new();
    for c in &chosen {
        if let Some(first) = ports.insert(c.local_port, &c.name) {
            return Err(Refusal::DuplicateLocalPort {
                port: c.local_port,
                first: first.to_owned(),
                second: c.name.clone(),
            });
        }
    }
    Ok(chosen)
}

/// The operations, in an order where each path is valid when applied: the `PG*` variables go in while
/// the container arrays still have their original indices, and the new containers go in last.
fn build_patch(
    pod: &Pod,
    spec: &PodSpec,
    names: &[String],
    connections: &[&ConnectionTarget],
    settings: &InjectSettings,
) -> PatchBuilder {
    let joined = names.join(",");
    let mut patch = PatchBuilder::default();
    patch.add_to_map(
        &["metadata", "annotations"],
        pod.metadata.annotations.is_some(),
        INJECTED_ANNOTATION,
        Value::String(joined.clone()),
    );
    patch.append(
        &["spec", "volumes"],
        spec.volumes.as_ref().map_or(0, Vec::len),
        vec![to_json(&spec::token_volume()), to_json(&spec::journal_volume())],
    );
    if let Some(first) = connections.first() {
        let wanted = [
            LOCAL_HOST.to_owned(),
            first.local_port.to_string(),
            first.name.clone(),
        ];
        add_pg_env(&mut patch, "containers", &spec.containers, &wanted);
        if let Some(init) = &spec.init_containers {
            add_pg_env(&mut patch, "initContainers", init, &wanted);
        }
    }
    let sidecar = to_json(&spec::sidecar_container(settings, &joined));
    let mut init = Vec::new();
    let allow = egress_allow_list(connections);
    if !allow.is_empty() {
        let mut lock = spec::egress_lock_container(
            &settings.sidecar_image,
            settings.sidecar_resources.as_ref(),
            settings.sidecar_uid,
            &allow,
        );
        lock.image_pull_policy = settings.image_pull_policy.clone();
        init.push(to_json(&lock));
    }
    if settings.native_sidecars {
        init.push(sidecar);
    } else {
        patch.prepend(&["spec", "containers"], spec.containers.len(), vec![sidecar]);
    }
    let init_len = spec.init_containers.as_ref().map_or(0, Vec::len);
    patch.prepend(&["spec", "initContainers"], init_len, init);
    patch
}

/// For each container of `array` (`containers` or `initContainers`), the `PG*` variables it does not set
/// itself. `wanted` holds their values, in the order of [`PG_ENV`].
fn add_pg_env(patch: &mut PatchBuilder, array: &str, containers: &[Container], wanted: &[String; 3]) {
    for (index, container) in containers.iter().enumerate() {
        let env = container.env.as_deref().unwrap_or_default();
        let missing: Vec<Value> = PG_ENV
            .iter()
            .zip(wanted)
            .filter(|(name, _)| !sets(env, name))
            .map(|(name, value)| to_json(&spec::value_env(name, value)))
            .collect();
        let index = index.to_string();
        patch.append(&["spec", array, &index, "env"], env.len(), missing);
    }
}

fn sets(env: &[EnvVar], name: &str) -> bool {
    env.iter().any(|e| e.name == name)
}

/// `host:port` of each connection that asks for the egress lock, each once.
fn egress_allow_list(connections: &[&ConnectionTarget]) -> Vec<String> {
    let mut allow: Vec<String> = Vec::new();
    for c in connections.iter().filter(|c| c.egress_lock) {
        let target = spec::allow_target(&c.host, c.port);
        if !allow.contains(&target) {
            allow.push(target);
        }
    }
    allow
}

/// The namespace a pod is created in: the request's, else the pod's own. Look the connections up here.
pub fn pod_namespace(req: &AdmissionRequest<Pod>) -> Option<&str> {
    req.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or_else(|| req.object.as_ref()?.metadata.namespace.as_deref())
}

/// The Pod CREATE webhook (`/mutate-pod`): allowed with the injection patch, allowed unchanged, or
/// denied with the refusal.
///
/// Pods in the operator's own namespace are never changed (the webhook's namespaceSelector should keep
/// them away; this holds even if it does not). Other operations than CREATE pass unchanged. A dry-run
/// request gets the same answer as a real one, so that `kubectl apply --dry-run=server` shows the
/// injected pod; the function has no side effects to skip, and callers should not record Events or
/// metrics for requests with `dry_run` set.
pub fn review_pod(req: &AdmissionRequest<Pod>, ctx: &InjectContext<'_>) -> AdmissionResponse {
    admit_pod(req, ctx).response
}

/// The answer of the Pod CREATE webhook, and what the server around it should report beyond it.
#[derive(Debug)]
pub struct PodAdmission {
    /// The admission response ([`review_pod`]).
    pub response: AdmissionResponse,
    /// The Pod Security level of the pod's namespace, when it refuses the egress lock the pod was just
    /// given: the response carries a warning, and the server records an Event on the Namespace.
    pub pod_security: Option<Level>,
}

/// [`review_pod`], also saying whether the namespace's Pod Security level refuses the egress lock the
/// pod gets (see [`pod_security`](super::pod_security)).
pub fn admit_pod(req: &AdmissionRequest<Pod>, ctx: &InjectContext<'_>) -> PodAdmission {
    // Every answer but an injection with an egress lock has nothing to report beyond the response.
    let answer = |response| PodAdmission {
        response,
        pod_security: None,
    };
    if req.operation != Operation::Create {
        return answer(AdmissionResponse::from(req));
    }
    let Some(pod) = &req.object else {
        return answer(AdmissionResponse::from(req));
    };
    if pod_namespace(req) == Some(ctx.settings.operator_namespace.as_str()) {
        return answer(AdmissionResponse::from(req));
    }
    match plan(pod, ctx) {
        Ok(None) => answer(AdmissionResponse::from(req)),
        Ok(Some(injection)) => match AdmissionResponse::from(req).with_patch(injection.patch) {
            Ok(mut patched) => {
                let refusing = injection
                    .egress_lock
                    .then(|| pod_security::forbidding_level(ctx.namespace_labels))
                    .flatten();
                let mut warnings = classic_sidecar_warnings(pod, ctx.settings);
                warnings.extend(refusing.map(pod_security::warning));
                patched.warnings = (!warnings.is_empty()).then_some(warnings);
                PodAdmission {
                    response: patched,
                    pod_security: refusing,
                }
            }
            Err(e) => answer(AdmissionResponse::from(req).deny(format!(
                "dbward: could not encode the injection patch for pod {}: {e}",
                describe_pod(req, pod)
            ))),
        },
        Err(refusal) => answer(AdmissionResponse::from(req).deny(format!(
            "dbward cannot inject pod {}: {refusal}",
            describe_pod(req, pod)
        ))),
    }
}

/// What a user should know about a classic (non-native) sidecar in this pod.
fn classic_sidecar_warnings(pod: &Pod, settings: &InjectSettings) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(spec) = pod.spec.as_ref().filter(|_| !settings.native_sidecars) else {
        return warnings;
    };
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        warnings.push(
            "dbward: this cluster has no native sidecars (Kubernetes < 1.29), so the pod's init containers run \
             before dbward-sidecar and cannot reach the database"
                .to_owned(),
        );
    }
    if matches!(spec.restart_policy.as_deref(), Some("Never" | "OnFailure")) {
        warnings.push(
            "dbward: this cluster has no native sidecars (Kubernetes < 1.29), so dbward-sidecar keeps running \
             after the pod's containers exit and the pod never completes"
                .to_owned(),
        );
    }
    warnings
}

/// The pod as a user would recognize it in a message: its name, or for a pod a controller is creating
/// (which has only `generateName` yet) the prefix, e.g. `"web-7d9f8-*"`.
fn describe_pod(req: &AdmissionRequest<Pod>, pod: &Pod) -> String {
    let meta = &pod.metadata;
    let name = meta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
        .or_else(|| meta.generate_name.as_ref().map(|g| format!("{g}*")))
        .unwrap_or_else(|| "(unnamed)".to_owned());
    match pod_namespace(req) {
        Some(ns) => format!("{name:?} in namespace {ns:?}"),
        None => format!("{name:?}"),
    }
}
