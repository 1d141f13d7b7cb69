//! The DatabaseConnection reconciler: reads the Secrets the connection references, opens a TCP
//! connection to `host:port`, looks at the pods that name the connection, and writes
//! `status.conditions` (CredentialsResolved, Reachable, Ready, PodsWithoutSidecar) and
//! `status.observedGeneration` — only when they differ from what is stored. `status.serverVersion` is
//! not the reconciler's: sidecars report it to the control API (`control::server_version`), which writes
//! it under its own field manager; the reconciler never sends it and ignores it when comparing.
//!
//! Every connection is checked again every [`ReconcileContext::connection_resync`] (5 minutes), so a
//! database that goes down or comes back shows within that time. A Secret that is created, changed or
//! deleted re-checks at once the connections that reference it ([`connections_using`], fed by a
//! cluster-wide, metadata-only watch of Secrets); so does a pod that names the connection and runs
//! without the sidecar, when it changes or goes ([`connections_named_by`], fed by a metadata-only watch
//! of pods).
//!
//! The Secrets themselves are read with a GET at each reconcile rather than from a watch cache, so the
//! operator does not hold every Secret of the cluster in memory; only key names are looked at. Pods are
//! read from the pod controller's cache of pods' metadata ([`Pods`]), and the namespace's labels with a
//! GET, only when some pod runs without its sidecar (they say why).

use std::{sync::Arc, time::SystemTime};

use dbward_crds::{DatabaseConnection, condition::types};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    Api, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};
use tokio::{net::TcpStream, time::timeout};
use tracing::{debug, info};

use super::{
    context::{ReconcileContext, instrumented, namespace_and_name},
    error::{Error, Result},
    pods::{missing_reason, namespace_labels},
    status::apply_status,
};

pub mod pods;
pub mod status;

pub use pods::{PodsSeen, connections_named_by, pods_without_sidecar};
pub use status::{Observed, Probe, connection_status};

/// The cache of every pod's metadata that the pod controller keeps.
pub type Pods = Store<PartialObjectMeta<Pod>>;

/// How long a reconcile waits for the pod cache's first list before it leaves PodsWithoutSidecar as it
/// is.
pub const POD_CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

const KIND: &str = "DatabaseConnection";

/// Reconcile one DatabaseConnection (the [`kube::runtime::Controller`] entry point, with `pods` bound).
pub async fn reconcile(
    conn: Arc<DatabaseConnection>,
    ctx: Arc<ReconcileContext>,
    pods: Pods,
) -> Result<Action> {
    instrumented(&*conn, &ctx, reconcile_connection(&conn, &ctx, &pods)).await
}

async fn reconcile_connection(
    conn: &DatabaseConnection,
    ctx: &ReconcileContext,
    pods: &Pods,
) -> Result<Action> {
    let (namespace, name) = namespace_and_name(conn)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let credentials_name = &conn.spec.credentials_secret_ref.name;
    let credentials = read_secret(&secrets, namespace, credentials_name).await?;
    let ca = match &conn.spec.tls.ca_secret_ref {
        None => None,
        Some(ca) if ca.name == *credentials_name => credentials.clone(),
        Some(ca) => read_secret(&secrets, namespace, &ca.name).await?,
    };
    let probe = if status::can_probe(conn) {
        Some(probe(&conn.spec.host, conn.spec.port, ctx.probe_timeout).await)
    } else {
        None
    };
    let seen = pods_seen(ctx, pods, namespace, name).await?;
    let observed = Observed {
        credentials: credentials.as_ref(),
        ca: ca.as_ref(),
        probe: probe.as_ref(),
        pods: seen.as_ref(),
    };
    let status = connection_status(conn, observed, SystemTime::now());
    if status::unchanged(conn.status.as_ref(), &status) {
        debug!(namespace, connection = name, "status unchanged");
    } else {
        let api: Api<DatabaseConnection> = Api::namespaced(ctx.client.clone(), namespace);
        apply_status(&api, name, &status)
            .await
            .map_err(|source| Error::ApplyStatus {
                kind: KIND,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: source.into(),
            })?;
        let ready = dbward_crds::condition::find(&status.conditions, types::READY);
        info!(
            namespace,
            connection = name,
            ready = %ready.map(|c| c.status).unwrap_or_default(),
            reason = ready.map_or("", |c| c.reason.as_str()),
            "status updated"
        );
    }
    Ok(Action::requeue(ctx.connection_resync))
}

/// The pods of `namespace` that name connection `name`, `None` when the pod cache is not loaded within
/// [`POD_CACHE_WAIT`] (or no longer fed).
async fn pods_seen(
    ctx: &ReconcileContext,
    pods: &Pods,
    namespace: &str,
    name: &str,
) -> Result<Option<PodsSeen>> {
    let loaded = timeout(POD_CACHE_WAIT, pods.wait_until_ready()).await;
    if !matches!(loaded, Ok(Ok(()))) {
        debug!(
            namespace,
            connection = name,
            "the pod cache is not loaded; PodsWithoutSidecar kept"
        );
        return Ok(None);
    }
    let state = pods.state();
    let missing = pods_without_sidecar(state.iter().map(|p| &p.metadata), namespace, name);
    if missing.is_empty() {
        return Ok(Some(PodsSeen::AllInjected));
    }
    let labels = if namespace == ctx.operator_namespace {
        None
    } else {
        namespace_labels(ctx, namespace).await?
    };
    Ok(Some(PodsSeen::Missing {
        reason: missing_reason(namespace, &ctx.operator_namespace, labels.as_ref()),
        pods: missing,
    }))
}

/// The Secret `name`, `None` when it does not exist.
async fn read_secret(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Option<Secret>> {
    api.get_opt(name).await.map_err(|source| Error::ReadSecret {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: source.into(),
    })
}

/// Open (and close) a TCP connection to `host:port` within `limit`. The operator does not log in: the
/// credential is the sidecar's to use.
pub async fn probe(host: &str, port: u16, limit: std::time::Duration) -> Probe {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match timeout(limit, TcpStream::connect((bare, port))).await {
        Ok(Ok(_stream)) => Probe::Connected,
        Ok(Err(error)) => Probe::Unreachable(error.to_string()),
        Err(_) => Probe::Unreachable(format!("no answer within {} s", limit.as_secs_f32())),
    }
}

/// Whether `conn` reads the Secret `namespace/name` (credentials or CA bundle).
pub fn references_secret(conn: &DatabaseConnection, namespace: &str, name: &str) -> bool {
    conn.namespace().as_deref() == Some(namespace)
        && (conn.spec.credentials_secret_ref.name == name
            || conn
                .spec
                .tls
                .ca_secret_ref
                .as_ref()
                .is_some_and(|ca| ca.name == name))
}

/// The connections in `store` that read the Secret `secret` (credentials or CA bundle): those to
/// reconcile when it changes. The Secret comes from a metadata-only watch
/// (`Api<PartialObjectMeta<Secret>>`), so no value crosses the wire or sits in the operator's memory.
pub fn connections_using(
    store: &Store<DatabaseConnection>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<DatabaseConnection>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|c| references_secret(c, &namespace, &name))
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    #[test]
    fn connections_reference_their_credentials_and_ca_secrets_in_their_namespace() {
        let conn: DatabaseConnection = serde_json::from_value(serde_json::json!({
            "apiVersion": "dbward.dev/v1alpha1", "kind": "DatabaseConnection",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"host": "db", "database": "orders", "credentialsSecretRef": {"name": "creds"},
                     "tls": {"caSecretRef": {"name": "ca"}}},
        }))
        .unwrap();
        let cases = [
            ("shop", "creds", true),
            ("shop", "ca", true),
            ("shop", "other", false),
            ("billing", "creds", false),
        ];
        for (namespace, name, want) in cases {
            assert_eq!(
                references_secret(&conn, namespace, name),
                want,
                "{namespace}/{name}"
            );
        }
    }

    #[test]
    fn a_secret_change_reaches_the_connections_that_read_it() {
        use kube::runtime::{reflector::store::Writer, watcher};
        let conn = |ns: &str, name: &str, secret: &str, ca: Option<&str>| -> DatabaseConnection {
            let mut spec = serde_json::json!({"host": "db", "database": "d",
                                              "credentialsSecretRef": {"name": secret}});
            if let Some(ca) = ca {
                spec["tls"] = serde_json::json!({"caSecretRef": {"name": ca}});
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "dbward.dev/v1alpha1", "kind": "DatabaseConnection",
                "metadata": {"name": name, "namespace": ns}, "spec": spec,
            }))
            .unwrap()
        };
        let mut writer: Writer<DatabaseConnection> = Writer::default();
        for c in [
            conn("shop", "orders", "db", None),
            conn("shop", "analytics", "other", Some("db")),
            conn("shop", "billing", "other", None),
            conn("lab", "orders", "db", None),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(c));
        }
        let mut secret = PartialObjectMeta::<Secret>::default();
        secret.metadata.name = Some("db".into());
        secret.metadata.namespace = Some("shop".into());
        let mut names: Vec<String> = connections_using(&writer.as_reader(), &secret)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["analytics", "orders"]);
    }

    #[tokio::test]
    async fn probes_report_connected_and_the_os_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let limit = Duration::from_secs(5);
        assert_eq!(probe("127.0.0.1", port, limit).await, Probe::Connected);
        drop(listener);
        match probe("127.0.0.1", port, limit).await {
            Probe::Unreachable(error) => assert!(error.contains("refused"), "{error}"),
            Probe::Connected => panic!("nobody listens on port {port} any more"),
        }
    }
}
