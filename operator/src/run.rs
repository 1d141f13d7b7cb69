//! `dbward-operator`: every replica serves the webhooks (`:9443`), the control API (`:8443`) and the
//! admin port (`:8080`: `/metrics`, `/healthz`, `/readyz`); the replica holding the Lease also runs the
//! reconcilers. Certificates are made and renewed here, and the CA is kept in the webhook
//! configurations' `caBundle`.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use clap::Parser;
use k8s_openapi::{api::core::v1::ResourceRequirements, apimachinery::pkg::api::resource::Quantity};
use kube::Client;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    admission::{
        ApprovalContext, DEFAULT_ADMIN_PORT, InjectSettings, spec::DEFAULT_SIDECAR_UID,
        supports_native_sidecars,
    },
    certs, control, leader, reconcile, serve,
    webhook::{self, WebhookState},
};

/// dbward's Kubernetes operator.
#[derive(Debug, Parser)]
#[command(name = "dbward-operator", version, about)]
pub struct Args {
    /// The operator's namespace (its Service, Lease and certificates Secret live there; pods in it are
    /// never injected).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// This replica's name, its identity as a Lease holder [default: the host name].
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The operator's service account name: the one user allowed to expire approval requests.
    #[arg(long, env = "DBWARD_SERVICE_ACCOUNT", default_value = "dbward-operator")]
    pub service_account: String,
    /// The sidecar image injected into pods.
    #[arg(long, env = "DBWARD_SIDECAR_IMAGE")]
    pub sidecar_image: String,
    /// The sidecar's CPU request (e.g. 50m).
    #[arg(long)]
    pub sidecar_cpu: Option<String>,
    /// The sidecar's memory request and limit (e.g. 64Mi).
    #[arg(long)]
    pub sidecar_memory: Option<String>,
    /// The sidecar image's pull policy.
    #[arg(long)]
    pub sidecar_image_pull_policy: Option<String>,
    /// The uid and gid the injected sidecar runs as: the only uid the egress lock lets through to the
    /// databases, so no app container may run as it. Not 0.
    #[arg(
        long,
        env = "DBWARD_SIDECAR_UID",
        default_value_t = DEFAULT_SIDECAR_UID,
        value_parser = clap::value_parser!(i64).range(1..=i64::from(i32::MAX)),
    )]
    pub sidecar_uid: i64,
    /// Whether injected sidecars also write their session journal to stdout, as JSON lines for the
    /// cluster's log collectors (the journal volume goes with the pod). `--sidecar-journal-stdout=false`
    /// keeps it on the volume only.
    #[arg(long, env = "DBWARD_SIDECAR_JOURNAL_STDOUT", default_value_t = true, action = clap::ArgAction::Set)]
    pub sidecar_journal_stdout: bool,
    /// The injected sidecar's admin port on the pod's IP: its startup and readiness probes (`/readyz`)
    /// and Prometheus `/metrics`. 0 for none (then no probes either).
    #[arg(long, env = "DBWARD_SIDECAR_ADMIN_PORT", default_value_t = DEFAULT_ADMIN_PORT)]
    pub sidecar_admin_port: u16,
    /// Where the webhook server listens.
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// Where the control API listens.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub control_addr: SocketAddr,
    /// Where the admin server (metrics, health) listens.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// The control API's URL as sidecars reach it [default: https://dbward-operator.<namespace>.svc:8443].
    #[arg(long)]
    pub control_url: Option<String>,
    /// An extra DNS name or IP address for the serving certificate (repeatable), e.g. the address the
    /// API server uses to reach an operator running outside the cluster.
    #[arg(long = "cert-name")]
    pub cert_names: Vec<String>,
    /// How long decided approval requests are kept.
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub approval_retention: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    dbward_crds::parse_duration(s).map_err(|e| e.to_string())
}

/// How often the certificates are checked for renewal and the caBundles for drift.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(60);

fn resources(args: &Args) -> Option<ResourceRequirements> {
    let mut requests = std::collections::BTreeMap::new();
    let mut limits = std::collections::BTreeMap::new();
    if let Some(cpu) = &args.sidecar_cpu {
        requests.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    if let Some(mem) = &args.sidecar_memory {
        requests.insert("memory".to_owned(), Quantity(mem.clone()));
        limits.insert("memory".to_owned(), Quantity(mem.clone()));
    }
    if requests.is_empty() {
        return None;
    }
    Some(ResourceRequirements {
        requests: Some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..ResourceRequirements::default()
    })
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what}"))
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(args: Args) -> Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes API: in a pod the service account is used, outside one KUBECONFIG")?;
    let me = match &args.pod_name {
        Some(n) => n.clone(),
        None => std::env::var("HOSTNAME").unwrap_or_else(|_| "dbward-operator".into()),
    };
    let version = client
        .apiserver_version()
        .await
        .context("reading the API server's version")?;
    let native = supports_native_sidecars(&version.major, &version.minor);
    info!(
        version = %version.git_version, native_sidecars = native,
        "connected to the API server"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));

    let names = certs::service_names(&args.namespace, &args.cert_names);
    let bundle = certs::ensure(&client, &args.namespace, &names).await?;
    let resolver = Arc::new(certs::Resolver::new(&bundle)?);
    let tls = certs::server_config(resolver.clone())?;

    let control = control::start(client.clone(), shutdown.clone());
    let mut settings = InjectSettings::new(
        args.namespace.clone(),
        args.sidecar_image.clone(),
        resources(&args),
        native,
    )
    .with_operator_ca(bundle.ca_pem.clone());
    settings.image_pull_policy = args.sidecar_image_pull_policy.clone();
    settings.sidecar_uid = args.sidecar_uid;
    settings.journal_stdout = args.sidecar_journal_stdout;
    settings.admin_port = (args.sidecar_admin_port != 0).then_some(args.sidecar_admin_port);
    if let Some(url) = &args.control_url {
        settings.control_url = url.clone();
    }
    let hooks = Arc::new(WebhookState {
        settings: RwLock::new(settings),
        approval: ApprovalContext::new(&args.namespace, &args.service_account),
        connections: control.connections.clone(),
        namespaces: webhook::watch_namespaces(client.clone(), shutdown.clone()),
        ready: control.ready.subscribe(),
        events: webhook::NamespaceEvents::new(client.clone()),
    });

    let registry = prometheus::Registry::new();
    let metrics = Arc::new(reconcile::Metrics::new(&registry)?);

    let webhook_listener = bind(args.webhook_addr, "webhooks").await?;
    let control_listener = bind(args.control_addr, "control API").await?;
    let admin_listener = bind(args.admin_addr, "admin server").await?;
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(serve::serve(
        webhook_listener,
        Some(tls.clone()),
        webhook::router(hooks.clone()),
        shutdown.clone(),
        "webhooks",
    ));
    servers.spawn(serve::serve(
        control_listener,
        Some(tls),
        control::router(control.clone()),
        shutdown.clone(),
        "control API",
    ));
    servers.spawn(serve::serve(
        admin_listener,
        None,
        admin_router(control.clone(), registry),
        shutdown.clone(),
        "admin",
    ));
    info!(
        webhooks = %args.webhook_addr, control = %args.control_addr, admin = %args.admin_addr,
        "serving"
    );
    tokio::spawn(keep_certificates(
        client.clone(),
        args.namespace.clone(),
        names,
        bundle,
        resolver,
        hooks,
        shutdown.clone(),
    ));

    let ctx = Arc::new(reconcile::ReconcileContext::new(
        client.clone(),
        args.namespace.clone(),
        args.approval_retention,
        metrics,
    ));
    leader::run(client, &args.namespace, &me, shutdown.clone(), move |token| {
        let ctx = ctx.clone();
        async move { reconcile::run(ctx, token).await }
    })
    .await;
    while servers.join_next().await.is_some() {}
    info!("stopped");
    Ok(())
}

/// Renews the certificates when due (any replica may; the Secret serializes them), serves what the
/// Secret holds (another replica may have renewed), and keeps the caBundles and the injected CA current.
async fn keep_certificates(
    client: Client,
    namespace: String,
    names: Vec<String>,
    mut current: certs::Bundle,
    resolver: Arc<certs::Resolver>,
    hooks: Arc<WebhookState>,
    shutdown: CancellationToken,
) {
    loop {
        certs::patch_ca_bundles(&client, &current.ca_pem).await;
        tokio::select! {
            () = tokio::time::sleep(CERT_CHECK_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        match certs::ensure(&client, &namespace, &names).await {
            Ok(b) if b != current => {
                if let Err(e) = resolver.set(&b) {
                    error!(error = %e, "the renewed certificate cannot be served; keeping the current one");
                    continue;
                }
                info!("serving the renewed certificate");
                if b.ca_pem != current.ca_pem {
                    let mut s = hooks
                        .settings
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    s.operator_ca = Some(b.ca_pem.clone());
                }
                current = b;
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot check the certificates; retrying in a minute"),
        }
    }
}

fn admin_router(control: control::SharedState, registry: prometheus::Registry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state((control, Arc::new(registry)))
}

async fn readyz(
    State((control, _)): State<(control::SharedState, Arc<prometheus::Registry>)>,
) -> impl IntoResponse {
    if *control.ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches are loading")
    }
}

async fn metrics(
    State((_, registry)): State<(control::SharedState, Arc<prometheus::Registry>)>,
) -> impl IntoResponse {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    match encoder.encode(&registry.gather(), &mut out) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", encoder.format_type().to_owned())],
            out,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain".to_owned())],
            e.to_string().into_bytes(),
        ),
    }
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received: shutting down"),
        _ = int.recv() => info!("SIGINT received: shutting down"),
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = [
            "dbward-operator",
            "--namespace",
            "dbward-system",
            "--sidecar-image",
            "img",
        ];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn sidecars_copy_their_journal_to_stdout_unless_told_not_to() {
        assert!(parse(&[]).unwrap().sidecar_journal_stdout);
        assert!(
            !parse(&["--sidecar-journal-stdout=false"])
                .unwrap()
                .sidecar_journal_stdout
        );
        assert!(parse(&["--sidecar-journal-stdout", "maybe"]).is_err());
    }

    #[test]
    fn the_sidecar_uid_defaults_to_47301_and_is_never_root() {
        assert_eq!(parse(&[]).unwrap().sidecar_uid, 47301);
        assert_eq!(parse(&["--sidecar-uid", "51000"]).unwrap().sidecar_uid, 51000);
        for bad in ["0", "-1", "2147483648", "nobody"] {
            assert!(parse(&["--sidecar-uid", bad]).is_err(), "{bad}");
        }
    }
}
