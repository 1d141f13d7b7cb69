//! The guard: AccessPolicy enforced on a session, as the relay's [`SessionHooks`].
//!
//! Each session gets two halves. The statement half ([`statements`]) judges every statement before it
//! reaches the server: it analyzes the text (cached), resolves relation names through the session's
//! search path against the connection's [catalog](crate::catalog), asks the caller's policy, and
//! refuses what the policy forbids. It tracks what the session prepares, declares and sets, so that
//! `EXECUTE`, `FETCH` and unqualified names are judged by what they really run. When the caller's
//! policy masks anything or limits results, each statement it lets through carries a
//! [`StatementContext`] to the result half ([`results`]), which maps every result column to its source
//! (RowDescription's table and column, the catalog, and the statement's column lineage) and masks the
//! rows on their way back.
//!
//! Policies can change while sessions run ([`PolicyStore::replace`]): the next statement of every
//! session is judged by the new set.

mod approvals;
mod context;
mod decisions;
mod judgment;
pub mod paths;
mod record;
mod results;
mod startup;
mod statements;

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use self::approvals::DEFAULT_REMINDER;
pub use self::startup::{StartupParamError, check_startup_params, timeout_ms, upstream_params};

use crate::{
    approval::ApprovalStore,
    catalog::Catalog,
    identity::CallerIdentity,
    mask::MaskKey,
    policy::PolicySet,
    proxy::hook::{Hooks, SessionHooks, SessionInfo},
    sql::AnalysisCache,
};

/// The policy set in force, replaceable while sessions run.
pub struct PolicyStore {
    version: AtomicU64,
    set: RwLock<Arc<PolicySet>>,
}

impl PolicyStore {
    pub fn new(set: PolicySet) -> Self {
        Self {
            version: AtomicU64::new(1),
            set: RwLock::new(Arc::new(set)),
        }
    }

    /// Puts a new set in force; every session's next statement is judged by it.
    pub fn replace(&self, set: PolicySet) {
        let mut guard = self.set.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(set);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes with every [`PolicyStore::replace`]; cheap to read on every statement.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The set in force and its version.
    pub fn current(&self) -> (u64, Arc<PolicySet>) {
        let guard = self.set.read().unwrap_or_else(|e| e.into_inner());
        (self.version(), guard.clone())
    }
}

/// One DatabaseConnection as the guard sees it.
pub struct GuardConnection {
    pub catalog: Arc<Catalog>,
    /// The upstream user the sidecar logs in as (`$user` in search paths).
    pub user: Arc<str>,
}

/// What every session's guard shares.
pub(crate) struct GuardShared {
    pub policies: Arc<PolicyStore>,
    pub connections: HashMap<String, Arc<GuardConnection>>,
    pub analyses: AnalysisCache,
    pub key: MaskKey,
    /// Where requireApproval statements ask; without one they are refused.
    pub approvals: Option<Arc<dyn ApprovalStore>>,
    /// How often a client whose statement is held hears that it still waits.
    pub reminder: Duration,
    /// Sessions waiting on each approval request.
    pub(super) waiters: Arc<approvals::Waiters>,
}

/// Enforces AccessPolicy on every session of the proxy.
pub struct Guard {
    shared: Arc<GuardShared>,
}

impl Guard {
    /// A guard over these connections (by DatabaseConnection name), masking with `key`.
    pub fn new(
        policies: Arc<PolicyStore>,
        connections: HashMap<String, Arc<GuardConnection>>,
        key: MaskKey,
    ) -> Self {
        Self {
            shared: Arc::new(GuardShared {
                policies,
                connections,
                analyses: AnalysisCache::default(),
                key,
                approvals: None,
                reminder: approvals::DEFAULT_REMINDER,
                waiters: Arc::default(),
            }),
        }
    }

    /// Statements that need approval ask `store` (and the client hears every `reminder` while it
    /// waits); without a store they are refused.
    pub fn with_approvals(mut self, store: Arc<dyn ApprovalStore>, reminder: Duration) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.approvals = Some(store);
            shared.reminder = reminder;
        }
        self
    }
}

impl SessionHooks for Guard {
    fn open(&self, session: &SessionInfo) -> Hooks {
        let conn = self.shared.connections.get(&session.connection).cloned();
        let masks = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Hooks {
            statements: Some(Box::new(statements::GuardStatements::new(
                self.shared.clone(),
                conn,
                session,
                masks.clone(),
            ))),
            results: Some(Box::new(results::GuardResults::new(
                self.shared.key.clone(),
                masks,
                session.journal.clone(),
            ))),
            describe_portals: false,
        }
    }

    fn upstream_params(
        &self,
        connection: &str,
        identity: &CallerIdentity,
        params: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, String> {
        let (_, set) = self.shared.policies.current();
        let limit = set
            .for_caller(connection, identity, std::time::SystemTime::now())
            .limits()
            .statement_timeout;
        upstream_params(params, limit).map_err(|e| format!("dbward: {e}"))
    }
}
