//! Keeping the control API's view current: reflectors over the three kinds, a metadata watch on Secrets
//! (only to notice that a referenced one changed; values are read on demand), and the cluster's
//! service-account issuer.

use std::{collections::HashSet, sync::Arc, time::Duration};

use dbward_crds::{
    AccessPolicy, ApprovalRequest, DatabaseConnection,
    wire::{ClusterIssuer, TOKEN_AUDIENCE},
};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{ControlState, SharedState};

/// How often the cluster issuer's keys are read again.
const ISSUER_REFRESH: Duration = Duration::from_secs(300);
/// The largest discovery document or key set read.
const MAX_DISCOVERY_BYTES: usize = 1024 * 1024;

/// Starts the reflectors and the issuer refresher; returns the state once built (not yet ready: it
/// becomes ready when every store has its first list).
pub fn start(client: Client, shutdown: CancellationToken) -> SharedState {
    let (connections, conn_writer) = reflector::store::<DatabaseConnection>();
    let (policies, pol_writer) = reflector::store::<AccessPolicy>();
    let (approvals, ar_writer) = reflector::store::<ApprovalRequest>();
    let state = Arc::new(ControlState::new(
        client.clone(),
        connections.clone(),
        policies.clone(),
        approvals.clone(),
        shutdown.clone(),
    ));
    let cfg = watcher::Config::default();
    let conn_events = reflector::reflector(conn_writer, watcher(Api::all(client.clone()), cfg.clone()));
    let pol_events = reflector::reflector(pol_writer, watcher(Api::all(client.clone()), cfg.clone()));
    let ar_events = reflector::reflector(ar_writer, watcher(Api::all(client.clone()), cfg.clone()));
    tokio::spawn(pump(
        conn_events,
        state.clone(),
        Wake::Config,
        "DatabaseConnections",
    ));
    tokio::spawn(pump(pol_events, state.clone(), Wake::Config, "AccessPolicies"));
    tokio::spawn(pump(
        ar_events,
        state.clone(),
        Wake::Approvals,
        "ApprovalRequests",
    ));
    tokio::spawn(watch_secrets(client.clone(), state.clone()));
    tokio::spawn(issuer_loop(client, state.clone()));
    tokio::spawn(mark_ready(state.clone(), connections, policies, approvals));
    state
}

#[derive(Debug, Clone, Copy)]
enum Wake {
    Config,
    Approvals,
}

async fn pump<K, S>(events: S, state: SharedState, wake: Wake, what: &'static str)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let events = events.default_backoff();
    futures_util::pin_mut!(events);
    loop {
        tokio::select! {
            next = events.next() => match next {
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)) => {
                    match wake {
                        Wake::Config => state.config_changed(),
                        Wake::Approvals => state.approvals_changed(),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "watching {what} failed; retrying"),
                None => return,
            },
            () = state.shutdown.cancelled() => return,
        }
    }
}

async fn mark_ready(
    state: SharedState,
    connections: Store<DatabaseConnection>,
    policies: Store<AccessPolicy>,
    approvals: Store<ApprovalRequest>,
) {
    let all = async {
        connections.wait_until_ready().await?;
        policies.wait_until_ready().await?;
        approvals.wait_until_ready().await
    };
    if all.await.is_ok() {
        info!("control API ready: caches loaded");
        state.ready.send_replace(true);
    }
}

/// Wakes the configuration long-polls when a Secret that some connection references changes. Only
/// metadata is watched; the values are read when a configuration is built.
async fn watch_secrets(client: Client, state: SharedState) {
    let api: Api<PartialObjectMeta<Secret>> = Api::all(client);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    futures_util::pin_mut!(events);
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            () = state.shutdown.cancelled() => return,
        };
        let obj = match event {
            Some(Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o))) => o,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                warn!(error = %e, "watching Secrets failed; retrying");
                continue;
            }
            None => return,
        };
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        if referenced_secrets(&state.connections).contains(&key) {
            debug!(namespace = %key.0, secret = %key.1, "a referenced Secret changed");
            state.config_changed();
        }
    }
}

/// `(namespace, name)` of every Secret a DatabaseConnection references.
pub fn referenced_secrets(connections: &Store<DatabaseConnection>) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    for c in connections.state() {
        let ns = c.namespace().unwrap_or_default();
        out.insert((ns.clone(), c.spec.credentials_secret_ref.name.clone()));
        if let Some(ca) = &c.spec.tls.ca_secret_ref {
            out.insert((ns, ca.name.clone()));
        }
    }
    out
}

async fn issuer_loop(client: Client, state: SharedState) {
    loop {
        match refresh_cluster_issuer(&client).await {
            Ok(issuer) => state.set_cluster_issuers(vec![issuer]),
            Err(e) => warn!(
                error = %e,
                "cannot read the cluster's service-account issuer; callers' service-account tokens are not \
                 accepted until it can be read (the pod's own identity still works)"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(ISSUER_REFRESH) => {}
            () = state.shutdown.cancelled() => return,
        }
    }
}

/// The cluster's service-account issuer (`/.well-known/openid-configuration`) and its keys
/// (`/openid/v1/jwks`), read through the API server.
pub async fn refresh_cluster_issuer(client: &Client) -> anyhow::Result<ClusterIssuer> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: String,
    }
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get(path).body(Vec::new())?;
            let text = client.request_text(req).await?;
            anyhow::ensure!(text.len() <= MAX_DISCOVERY_BYTES, "{path} is larger than 1 MiB");
            Ok::<_, anyhow::Error>(text)
        }
    };
    let discovery: Discovery = serde_json::from_str(&get("/.well-known/openid-configuration").await?)?;
    let jwks: serde_json::Value = serde_json::from_str(&get("/openid/v1/jwks").await?)?;
    anyhow::ensure!(
        jwks.get("keys").is_some_and(|k| k.is_array()),
        "/openid/v1/jwks has no keys"
    );
    Ok(ClusterIssuer {
        issuer: discovery.issuer,
        audiences: vec![TOKEN_AUDIENCE.to_owned()],
        jwks,
    })
}
