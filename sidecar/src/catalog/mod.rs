//! The catalog cache: per DatabaseConnection, a snapshot of the upstream database's relations,
//! columns and view dependencies, read over a session of its own (same credential as the clients'
//! sessions). It maps result columns (RowDescription's table OID and attnum) to
//! `schema.table.column` and resolves unqualified relation names through a `search_path`.
//!
//! - [`snapshot`]: [`CatalogSnapshot`], immutable, with the lookups.
//! - `load`: the catalog queries, in one read-only repeatable-read transaction.
//! - `wire`: the side session speaking the simple query protocol, every message bounded.
//!
//! [`Catalog`] holds the current snapshot and loads a newer one on request, one load at a time.

mod load;
pub mod snapshot;
mod wire;

#[cfg(test)]
mod tests;

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::time::timeout;
use tracing::{debug, warn};

use self::wire::SideConnection;
pub use self::{
    load::{MAX_BYTES, MAX_ROWS},
    snapshot::{CatalogSnapshot, ColumnInfo, RelationInfo, RelationKind},
};
use crate::proxy::{messages::error::sqlstate, upstream::UpstreamTarget};

/// How long a load may take unless configured otherwise.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Reading the catalog failed. The text says why, for a client to see after
/// [`client_message`](Self::client_message)'s prefix; it never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Opening the side session failed (the upstream error's text).
    #[error("cannot open a session to the database: {0}")]
    Connect(String),
    /// A catalog query failed on the server.
    #[error("the database reported an error: {message} (SQLSTATE {code})")]
    Server { code: String, message: String },
    /// The server sent something the protocol does not allow here.
    #[error("the database broke the protocol: {0}")]
    Protocol(String),
    /// Reading from or writing to the side session failed.
    #[error("lost the connection to the database: {0}")]
    Io(String),
    /// The load took longer than the configured timeout.
    #[error("reading the catalog took longer than {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The catalog is larger than dbward reads; nothing of it is used.
    #[error("catalog too large: more than {limit} {what}")]
    TooLarge { what: &'static str, limit: usize },
}

impl CatalogError {
    /// The whole sentence a client sees, naming the DatabaseConnection.
    pub fn client_message(&self, connection: &str) -> String {
        format!("dbward could not read the catalog of connection \"{connection}\": {self}")
    }

    /// The SQLSTATE a client gets for this failure.
    pub fn sqlstate(&self) -> &str {
        match self {
            CatalogError::Server { code, .. } if !code.is_empty() => code,
            CatalogError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
            CatalogError::Protocol(_) => sqlstate::PROTOCOL_VIOLATION,
            _ => sqlstate::CONNECTION_FAILURE,
        }
    }
}

/// The catalog cache of one DatabaseConnection, shared by all its sessions.
pub struct Catalog {
    target: Arc<UpstreamTarget>,
    load_timeout: Duration,
    state: Mutex<State>,
    /// Held for the whole of a load: concurrent refreshes wait for it and share its result.
    loader: tokio::sync::Mutex<Loader>,
}

/// What readers see, never held across an await.
#[derive(Default)]
struct State {
    current: Option<Arc<CatalogSnapshot>>,
    /// Loads finished, successful or not.
    attempts: u64,
    /// The error of the last load, if it failed.
    last_error: Option<CatalogError>,
}

#[derive(Default)]
struct Loader {
    /// The side session, kept open between loads while it is idle and in sync.
    conn: Option<SideConnection>,
    /// The version of the last successful load.
    version: u64,
}

impl Catalog {
    /// A cache for `target`, empty until the first [`refresh`](Self::refresh). Every load, including
    /// connecting and logging in, must finish within `load_timeout`.
    pub fn new(target: Arc<UpstreamTarget>, load_timeout: Duration) -> Arc<Catalog> {
        Arc::new(Catalog {
            target,
            load_timeout,
            state: Mutex::new(State::default()),
            loader: tokio::sync::Mutex::new(Loader::default()),
        })
    }

    /// The DatabaseConnection's name.
    pub fn connection(&self) -> &str {
        &self.target.connection
    }

    /// The latest snapshot, if one was loaded.
    pub fn current(&self) -> Option<Arc<CatalogSnapshot>> {
        self.state().current.clone()
    }

    /// A snapshot newer than version `newer_than` (0 for any), loading one unless the current one
    /// is. Concurrent callers share one load, and its failure: a caller that waited for a load
    /// which failed gets that error instead of starting another.
    pub async fn refresh(&self, newer_than: u64) -> Result<Arc<CatalogSnapshot>, CatalogError> {
        let seen = {
            let state = self.state();
            if let Some(s) = state.newer_than(newer_than) {
                return Ok(s);
            }
            state.attempts
        };
        let mut loader = self.loader.lock().await;
        {
            let state = self.state();
            if let Some(s) = state.newer_than(newer_than) {
                return Ok(s);
            }
            if let (true, Some(e)) = (state.attempts != seen, &state.last_error) {
                return Err(e.clone());
            }
        }

        let started = Instant::now();
        let version = loader.version + 1;
        let result = match timeout(self.load_timeout, loader.load(&self.target, version)).await {
            Ok(result) => result,
            Err(_) => Err(CatalogError::Timeout(self.load_timeout)),
        };
        let mut state = self.state();
        state.attempts += 1;
        match result {
            Ok(snapshot) => {
                debug!(
                    connection = %self.target.connection,
                    version,
                    relations = snapshot.relations().len(),
                    elapsed_ms = started.elapsed().as_millis(),
                    "catalog loaded"
                );
                loader.version = version;
                let snapshot = Arc::new(snapshot);
                state.current = Some(snapshot.clone());
                state.last_error = None;
                Ok(snapshot)
            }
            Err(e) => {
                warn!(connection = %self.target.connection, error = %e, "catalog load failed");
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("connection", &self.target.connection)
            .field("version", &self.current().map(|s| s.version()))
            .finish_non_exhaustive()
    }
}

impl State {
    fn newer_than(&self, version: u64) -> Option<Arc<CatalogSnapshot>> {
        self.current.as_ref().filter(|s| s.version() > version).cloned()
    }
}

impl Loader {
    /// One load over the kept session, or a new one. A kept session the server has meanwhile closed
    /// is replaced once. The session is kept only when it ends idle and in sync; a load cancelled
    /// by the timeout drops it with the future.
    async fn load(&mut self, target: &UpstreamTarget, version: u64) -> Result<CatalogSnapshot, CatalogError> {
        if let Some(mut conn) = self.conn.take() {
            match load::load(&mut conn, version).await {
                Err(CatalogError::Io(e)) => {
                    debug!(connection = %target.connection, error = %e, "catalog session lost, reconnecting");
                }
                result => {
                    if conn.is_idle() {
                        self.conn = Some(conn);
                    }
                    return result;
                }
            }
        }
        let mut conn = SideConnection::connect(target).await?;
        let result = load::load(&mut conn, version).await;
        if conn.is_idle() {
            self.conn = Some(conn);
        }
        result
    }
}
