//! Following the configuration while the sidecar runs: the config file (`run --config`), or the
//! operator's control API (`run --operator`). A new configuration is applied whole or not at all: its
//! AccessPolicies judge the next statement of every session, and its DatabaseConnections' settings
//! (server, credentials, trusted issuers) serve the sessions that start after it
//! ([`ConnectionSlots`]). A configuration that does not load or validate changes nothing, and says why.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use dbward_crds::wire::SidecarConfig;
use tracing::{error, info, warn};

use crate::{
    config::{self, ConfigError, FileConfig, operator::OperatorClient, runtime::RunOptions},
    guard::PolicyStore,
    policy::PolicySet,
    proxy::slots::ConnectionSlots,
};

/// What a new configuration replaces in a running sidecar.
pub struct Live {
    pub store: Arc<PolicyStore>,
    pub slots: ConnectionSlots,
    /// The command line's settings the connections are built with (timeouts).
    pub opts: RunOptions,
}

impl Live {
    /// Applies `cfg` with its compiled `policies`, both or neither. Secrets named in the file are
    /// looked up with `env` as at start.
    fn apply(
        &self,
        cfg: &FileConfig,
        policies: Result<PolicySet, ConfigError>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let policies = policies?;
        let contexts = config::runtime::contexts(cfg, &self.opts, env)?;
        self.store.replace(policies);
        crate::admin::metrics()
            .reloads
            .with_label_values(&["applied"])
            .inc();
        for change in self.slots.update(&contexts) {
            change.log();
        }
        Ok(())
    }
}

/// The issuers whose tokens are Kubernetes service-account tokens: their subjects bind `serviceAccount`
/// subjects of policies.
pub(super) fn sa_issuers(cfg: &SidecarConfig) -> BTreeSet<String> {
    cfg.cluster_issuers.iter().map(|i| i.issuer.clone()).collect()
}

/// The host and port of each connection with an egress lock: the pod's firewall rules were written for
/// them when it started.
fn locked_addresses(cfg: &SidecarConfig) -> BTreeMap<String, (String, u16)> {
    cfg.connections
        .iter()
        .filter(|c| c.spec.egress_lock)
        .map(|c| (c.metadata.name.clone(), (c.spec.host.clone(), c.spec.port)))
        .collect()
}

/// How often the config file is checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Follows the config file: when it changes (or on SIGHUP), it is applied ([`Live::apply`]).
pub(super) async fn follow_file(path: PathBuf, live: Live) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = stamp(&path);
    let env = |k: &str| std::env::var(k).ok();
    loop {
        let forced = match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = h.recv() => true,
                () = tokio::time::sleep(RELOAD_INTERVAL) => false,
            },
            None => {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                false
            }
        };
        let now = stamp(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        let applied = config::load_file(&path).and_then(|cfg| {
            live.apply(&cfg, config::runtime::policies(&cfg), &env)
                .map(|()| cfg)
        });
        match applied {
            Ok(cfg) => info!(
                policies = cfg.policies.len(),
                "configuration reloaded from {}",
                path.display()
            ),
            Err(e) => {
                crate::admin::metrics()
                    .reloads
                    .with_label_values(&["rejected"])
                    .inc();
                error!(error = %e, "the changed config was not applied; the configuration in force stays")
            }
        }
    }
}

/// Follows the operator's configuration. An unreachable operator changes nothing (the last good
/// configuration stays); an operator that refuses the pod (its connection deleted, the pod no longer
/// injected) takes every grant away.
pub(super) async fn follow_operator(
    client: Arc<OperatorClient>,
    connections: Vec<String>,
    first: SidecarConfig,
    live: Live,
) {
    let mut revision = first.revision.clone();
    let mut locked = locked_addresses(&first);
    let mut failures = 0u32;
    loop {
        let got = client
            .config(&connections, Some(&revision), config::operator::POLL_WAIT)
            .await;
        let next = match got {
            Ok(None) => {
                failures = 0;
                continue;
            }
            Ok(Some(next)) => next,
            Err(e) if e.is_transient() => {
                warn!(error = %e, "the operator is unreachable; the configuration in force stays");
                tokio::time::sleep(config::operator::backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
            Err(e) => {
                error!(error = %e, "the operator refuses this pod's configuration: every statement is refused until it gives one");
                if let Ok(nothing) = PolicySet::new(Vec::new(), Default::default()) {
                    live.store.replace(nothing);
                }
                revision.clear();
                tokio::time::sleep(config::operator::backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
        };
        failures = 0;
        let applied = config::operator::to_file_config(&next).and_then(|cfg| {
            let policies = config::runtime::policies_with(&cfg, sa_issuers(&next));
            live.apply(&cfg, policies, &config::operator::no_env)
        });
        match applied {
            Ok(()) => {
                info!(revision = %next.revision, policies = next.policies.len(), "configuration updated by the operator");
                let now = locked_addresses(&next);
                for (connection, addr) in &now {
                    if locked.get(connection).is_some_and(|old| old != addr) {
                        warn!(
                            %connection, address = %format!("{}:{}", addr.0, addr.1),
                            "the connection's server moved: the pod's egress lock still closes only the old address until the pod restarts"
                        );
                    }
                }
                locked = now;
            }
            Err(e) => {
                crate::admin::metrics()
                    .reloads
                    .with_label_values(&["rejected"])
                    .inc();
                error!(error = %e, "the operator's new configuration is not valid; the configuration in force stays")
            }
        }
        revision = next.revision;
    }
}
