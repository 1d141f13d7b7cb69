//! The command line: `dbward-sidecar run --config FILE` and `dbward-sidecar check --config FILE`, and
//! for local approvals `dbward-sidecar approve|deny NAME` and `dbward-sidecar approvals` ([`approvals`]).

pub mod approvals;
pub mod egress;
mod follow;
pub mod journal;

use std::{net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::approvals::{ApprovalsDirArgs, DecideArgs, ListArgs, approve, deny};
use crate::{
    config::{self, runtime::RunOptions},
    guard::PolicyStore,
    mask::MaskKey,
    proxy::Proxy,
};

/// dbward's Postgres sidecar: holds the database credential, knows who is calling, and relays every
/// statement through policy.
#[derive(Debug, Parser)]
#[command(name = "dbward-sidecar", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "DBWARD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the connections of a config file.
    Run(Box<RunArgs>),
    /// Check a config file and exit: 0 when it is valid, 1 with the first problem otherwise.
    Check(CheckArgs),
    /// Approve a held statement: set its approval request's phase to Approved.
    Approve(DecideArgs),
    /// Deny a held statement: set its approval request's phase to Denied.
    Deny(DecideArgs),
    /// List the approval requests waiting for a decision.
    Approvals(ListArgs),
    /// Install the pod's egress lock (run as the injected init container): only the sidecar's uid may
    /// reach the upstream databases.
    EgressLock(egress::EgressLockArgs),
    /// Read the session journal: list its sessions, or show one as a transcript.
    Replay(journal::ReplayArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// YAML file of DatabaseConnection, AccessPolicy and Secret documents.
    #[arg(long, env = "DBWARD_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML file of DatabaseConnection, AccessPolicy and Secret documents.
    #[arg(
        long,
        env = "DBWARD_CONFIG",
        required_unless_present = "operator",
        conflicts_with = "operator"
    )]
    pub config: Option<PathBuf>,
    /// Take the configuration from the operator's control API at this URL instead of a file (how the
    /// injected sidecar runs).
    #[arg(long, env = "DBWARD_OPERATOR", requires = "connections")]
    pub operator: Option<String>,
    /// With --operator: the DatabaseConnections to serve (the pod's `dbward.dev/inject` annotation).
    #[arg(long, env = "DBWARD_CONNECTIONS", value_delimiter = ',')]
    pub connections: Vec<String>,
    /// With --operator: the pod's projected token (audience dbward.dev).
    #[arg(long, env = "DBWARD_TOKEN_FILE", default_value = config::operator::DEFAULT_TOKEN_FILE)]
    pub token_file: PathBuf,
    /// With --operator: the operator's CA certificate, as PEM text (the injector sets it) or a PEM file's
    /// path. Without it the system roots are trusted.
    #[arg(long, env = "DBWARD_OPERATOR_CA", hide_env_values = true)]
    pub operator_ca: Option<String>,
    /// The pod's identity as NAMESPACE/SERVICEACCOUNT: who a caller without a token is.
    #[arg(long, env = "DBWARD_IDENTITY", default_value = "default/default")]
    pub identity: String,
    /// The pod's name, recorded with the ambient identity.
    #[arg(long, env = "POD_NAME")]
    pub pod: Option<String>,
    /// Certificate (PEM) for TLS toward local clients; without it SSLRequest is answered 'N'.
    #[arg(long, env = "DBWARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "DBWARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Addresses to listen on (repeatable). Loopback only unless you know why.
    #[arg(long = "listen", env = "DBWARD_LISTEN", value_delimiter = ',', default_values = ["127.0.0.1", "::1"])]
    pub listen: Vec<IpAddr>,
    /// After SIGTERM, how long running sessions may go on before they are closed.
    #[arg(long, env = "DBWARD_SHUTDOWN_GRACE", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Sessions served at once over all connections; a client beyond it gets 53300, as from a server at
    /// max_connections.
    #[arg(long, env = "DBWARD_MAX_SESSIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,
    /// Worker threads. 1 (the default) runs every session on one event loop, which costs the least CPU
    /// per statement; more threads help only when the pod has several CPUs to give the sidecar.
    #[arg(long, env = "DBWARD_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Largest statement message (Query, Parse, Bind) accepted, in bytes.
    #[arg(long, env = "DBWARD_MAX_MESSAGE", default_value_t = 64 * 1024 * 1024)]
    pub max_message: usize,
    /// Directory of approval requests, one YAML file each [default: `approvals` next to --config].
    #[arg(long, env = "DBWARD_APPROVALS", value_name = "DIR")]
    pub approvals: Option<PathBuf>,
    /// How long decided approval request files are kept before they are deleted (as the operator's
    /// --approval-retention); approvals stay at least as long as a grant window may still use them.
    #[arg(long, env = "DBWARD_APPROVAL_RETENTION", default_value = "24h", value_parser = duration)]
    pub approval_retention: Duration,
    /// Serve `/healthz`, `/readyz` and `/metrics` (Prometheus) over plain HTTP at this address, e.g.
    /// `127.0.0.1:9476`, or `0.0.0.0:9476` for the kubelet's probes and a scraper. Off when unset.
    #[arg(long, env = "DBWARD_ADMIN", value_name = "ADDR")]
    pub admin: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub journal: journal::JournalArgs,
}

impl RunArgs {
    /// The approvals directory: --approvals, else `approvals` next to --config.
    pub fn approvals_dir(&self) -> Result<PathBuf> {
        approvals::approvals_dir(self.approvals.as_deref(), self.config.as_deref())
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    dbward_crds::parse_duration(s).map_err(|e| e.to_string())
}

/// Checks a config file the way `run` would, without listening.
pub fn check(args: &CheckArgs) -> Result<()> {
    let cfg = config::load_file(&args.config)?;
    let env = |k: &str| std::env::var(k).ok();
    config::runtime::build(&cfg, &RunOptions::default(), None, &env)?;
    config::runtime::policies(&cfg)?;
    println!(
        "{}: {} connection(s), {} policy(ies): valid",
        args.config.display(),
        cfg.connections.len(),
        cfg.policies.len()
    );
    Ok(())
}

/// Loads the config, binds every listener, and serves until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let client_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c).with_context(|| format!("reading --tls-cert {}", c.display()))?,
            std::fs::read(k).with_context(|| format!("reading --tls-key {}", k.display()))?,
        )),
        _ => None,
    };
    let mut opts = RunOptions {
        identity: args.identity.clone(),
        pod: args.pod.clone(),
        client_tls,
        listen: args.listen.clone(),
        shutdown_grace: args.shutdown_grace,
        max_sessions: args.max_sessions as usize,
        max_message: args.max_message,
        ..RunOptions::default()
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    // The admin port answers /healthz at once; /readyz once the listeners are bound.
    let admin_journal = Arc::new(std::sync::OnceLock::new());
    if let Some(addr) = args.admin {
        let listener = crate::admin::bind(addr)
            .await
            .with_context(|| format!("--admin {addr}: cannot listen"))?;
        tokio::spawn(crate::admin::serve(
            listener,
            admin_journal.clone(),
            shutdown.clone(),
        ));
    }
    let (proxy, follow) = match (&args.config, &args.operator) {
        (Some(path), _) => {
            let cfg = config::load_file(path)?;
            let env = |k: &str| std::env::var(k).ok();
            let mut proxy_config = config::runtime::build(&cfg, &opts, None, &env)?;
            proxy_config.shared.journal = args.journal.open(&crate::journal::replay::beside(path))?;
            let store = Arc::new(PolicyStore::new(config::runtime::policies(&cfg)?));
            let approvals_dir = args.approvals_dir()?;
            let approvals: Arc<dyn crate::approval::ApprovalStore> = Arc::new(
                crate::approval::local::DirStore::new(approvals_dir.clone())?
                    .with_retention(args.approval_retention),
            );
            info!(dir = %approvals_dir.display(), "approval requests are kept as files");
            config::runtime::install_guard_with(
                &mut proxy_config,
                store.clone(),
                mask_key()?,
                Some((approvals, crate::guard::DEFAULT_REMINDER)),
            );
            if cfg.policies.is_empty() {
                warn!("the config has no AccessPolicy: every statement will be refused");
            }
            let proxy = Proxy::bind(proxy_config).await?;
            let live = follow::Live {
                store,
                slots: proxy.slots(),
                opts: opts.clone(),
            };
            let follow: tokio::task::JoinHandle<()> = tokio::spawn(follow::follow_file(path.clone(), live));
            (proxy, follow)
        }
        (None, Some(url)) => {
            let ca = match args.operator_ca.as_deref() {
                Some(pem) if pem.trim_start().starts_with("-----BEGIN") => Some(pem.as_bytes().to_vec()),
                Some(path) => {
                    Some(std::fs::read(path).with_context(|| format!("reading --operator-ca {path}"))?)
                }
                None => None,
            };
            let client = Arc::new(config::operator::OperatorClient::new(
                url,
                ca.as_deref(),
                args.token_file.clone(),
            )?);
            let Some(first) = first_config(&client, &args.connections, &shutdown).await else {
                return Ok(());
            };
            let cfg = config::operator::to_file_config(&first)?;
            opts.identity = format!("{}/{}", first.identity.namespace, first.identity.service_account);
            opts.pod = Some(first.identity.pod.clone());
            let mut proxy_config = config::runtime::build(&cfg, &opts, None, &config::operator::no_env)?;
            proxy_config.shared.journal = args
                .journal
                .open(std::path::Path::new(journal::OPERATOR_JOURNAL_DIR))?;
            // The operator shows each database's version as the connection's status.serverVersion.
            proxy_config.shared.logins = Some(config::report::ServerVersions::spawn(client.clone()));
            let store = Arc::new(PolicyStore::new(config::runtime::policies_with(
                &cfg,
                follow::sa_issuers(&first),
            )?));
            let approvals: Arc<dyn crate::approval::ApprovalStore> =
                Arc::new(crate::approval::operator::OperatorStore::new(
                    client.clone(),
                    first.identity.namespace.clone(),
                ));
            config::runtime::install_guard_with(
                &mut proxy_config,
                store.clone(),
                mask_key()?,
                Some((approvals, crate::guard::DEFAULT_REMINDER)),
            );
            info!(
                revision = %first.revision, policies = first.policies.len(),
                "configuration received from the operator"
            );
            let proxy = Proxy::bind(proxy_config).await?;
            let live = follow::Live {
                store,
                slots: proxy.slots(),
                opts: opts.clone(),
            };
            let follow = tokio::spawn(follow::follow_operator(
                client,
                args.connections.clone(),
                first,
                live,
            ));
            (proxy, follow)
        }
        (None, None) => anyhow::bail!("either --config or --operator is needed"),
    };
    for (connection, addr) in proxy.local_addrs() {
        info!(%connection, %addr, "listening");
    }
    info!(startup_ms = started.elapsed().as_secs_f64() * 1000.0, "ready");
    let journal = proxy.journal();
    if let Some(j) = &journal {
        let _ = admin_journal.set(j.clone());
    }
    crate::admin::metrics().set_ready(true);
    proxy.run(shutdown).await;
    follow.abort();
    if let Some(j) = journal {
        j.sync_now();
    }
    Ok(())
}

/// The first configuration from the operator. Until it comes nothing listens (fail closed); the
/// operator being down or not ready is waited out, a refusal is said clearly and retried too (an admin
/// may fix the cause, e.g. a missing Secret). None when shutdown comes first.
async fn first_config(
    client: &config::operator::OperatorClient,
    connections: &[String],
    shutdown: &CancellationToken,
) -> Option<dbward_crds::wire::SidecarConfig> {
    let mut attempt = 0u32;
    loop {
        match client.config(connections, None, Duration::ZERO).await {
            Ok(Some(cfg)) => match config::operator::to_file_config(&cfg) {
                Ok(_) => return Some(cfg),
                Err(e) => {
                    tracing::error!(error = %e, "the operator's configuration cannot be used; asking again")
                }
            },
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "no configuration from the operator yet; not serving until there is one")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config::operator::backoff(attempt)) => {}
            () = shutdown.cancelled() => return None,
        }
        attempt = attempt.saturating_add(1);
    }
}

/// The key of the hash masking strategy: `DBWARD_MASK_KEY` (base64, at least 32 bytes) so hashes
/// agree across sidecars and restarts, else a random key for this process.
fn mask_key() -> Result<MaskKey> {
    use base64::Engine;
    match std::env::var("DBWARD_MASK_KEY") {
        Ok(v) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .context("DBWARD_MASK_KEY is not valid base64")?;
            MaskKey::from_bytes(&bytes).context("DBWARD_MASK_KEY")
        }
        Err(_) => {
            info!("DBWARD_MASK_KEY not set: hashed values are stable only while this sidecar runs");
            MaskKey::random().context("making a masking key")
        }
    }
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop the sidecar with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    shutdown.cancel();
}
