//! The control API (HTTPS, `:8443`, served by every replica): sidecars get their configuration here,
//! long-poll for changes, make and follow approval requests, and report their database's version. The wire format is
//! [`dbward_crds::wire`]; every call is authenticated with the pod's projected token
//! ([`auth::Authenticator`]).
//!
//! The handlers read DatabaseConnections, AccessPolicies and ApprovalRequests from reflector stores
//! that [`start`] fills; each change to them (and to a Secret a connection references, and to the
//! cluster's issuer keys) wakes the long-polls waiting on it.

pub mod approvals;
pub mod auth;
pub mod config;
mod handlers;
pub mod server_version;
mod watch;

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use dbward_crds::{AccessPolicy, ApprovalRequest, DatabaseConnection, wire::ClusterIssuer};
use kube::{Client, runtime::reflector::Store};
use tokio::sync::watch as tokio_watch;
use tokio_util::sync::CancellationToken;

pub use handlers::router;
pub use watch::{refresh_cluster_issuer, start};

/// Everything the handlers share.
pub struct ControlState {
    pub client: Client,
    pub auth: auth::Authenticator,
    pub connections: Store<DatabaseConnection>,
    pub policies: Store<AccessPolicy>,
    pub approvals: Store<ApprovalRequest>,
    /// Bumped on every change that can change a configuration.
    pub config_changes: tokio_watch::Sender<u64>,
    /// Bumped on every ApprovalRequest change.
    pub approval_changes: tokio_watch::Sender<u64>,
    /// The cluster's service-account issuer, when its discovery endpoints answered.
    pub cluster_issuers: RwLock<Vec<ClusterIssuer>>,
    /// Cancelled when the operator stops: long-polls end at once so sidecars move to another replica.
    pub shutdown: CancellationToken,
    /// Set once every store has its first full list.
    pub ready: tokio_watch::Sender<bool>,
}

impl ControlState {
    /// State over stores filled elsewhere ([`start`] in the operator, directly in tests).
    pub fn new(
        client: Client,
        connections: Store<DatabaseConnection>,
        policies: Store<AccessPolicy>,
        approvals: Store<ApprovalRequest>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            auth: auth::Authenticator::new(client.clone()),
            client,
            connections,
            policies,
            approvals,
            config_changes: tokio_watch::Sender::new(0),
            approval_changes: tokio_watch::Sender::new(0),
            cluster_issuers: RwLock::new(Vec::new()),
            shutdown,
            ready: tokio_watch::Sender::new(false),
        }
    }

    /// Wakes the configuration long-polls.
    pub fn config_changed(&self) {
        self.config_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes the approval long-polls.
    pub fn approvals_changed(&self) {
        self.approval_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Replaces the cluster issuers; wakes the long-polls when they changed.
    pub fn set_cluster_issuers(&self, issuers: Vec<ClusterIssuer>) {
        let changed = {
            let mut cur = self
                .cluster_issuers
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = *cur != issuers;
            *cur = issuers;
            changed
        };
        if changed {
            self.config_changed();
        }
    }

    fn issuers(&self) -> Vec<ClusterIssuer> {
        self.cluster_issuers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How long a long-poll waits when `waitSeconds` is absent.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Shared state, as the router holds it.
pub type SharedState = Arc<ControlState>;
