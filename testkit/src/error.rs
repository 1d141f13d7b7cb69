//! The harness's error type.

use std::{io, path::PathBuf};

/// `Result` with [`HarnessError`] as the default error.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// What went wrong while finding, starting or talking to a test PostgreSQL server.
///
/// Every message says what failed and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No PostgreSQL server binaries (initdb, postgres, pg_ctl) were found.
    #[error("PostgreSQL server not found ({looked_in}): run scripts/ensure-postgres.sh")]
    ServerNotFound {
        /// Where the harness looked.
        looked_in: String,
    },

    /// A client tool (psql, pgbench, pgbouncer, ...) was not found.
    #[error("{tool} not found (looked in {looked_in}): run scripts/ensure-postgres.sh")]
    ToolNotFound {
        /// The tool's file name.
        tool: String,
        /// Where the harness looked.
        looked_in: String,
    },

    /// The tests run as root, PostgreSQL refuses to, and there is no `postgres` OS user to run it as.
    #[error(
        "the tests run as root and PostgreSQL refuses to, but there is no 'postgres' OS user to run it as: \
         run scripts/ensure-postgres.sh"
    )]
    NoPostgresUser,

    /// A file system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing, naming the file or program.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A program ran but exited unsuccessfully.
    #[error("{what} failed ({status}): {stderr}")]
    CommandFailed {
        /// What the harness was doing, naming the program.
        what: String,
        /// The exit status as printed by the OS.
        status: String,
        /// The program's standard error (or output when that was empty), trimmed.
        stderr: String,
    },

    /// The server did not start or did not accept connections in time.
    #[error("PostgreSQL in {data_dir} did not start: {reason}\n--- server log (last lines) ---\n{log_tail}")]
    StartFailed {
        /// The data directory of the server that failed.
        data_dir: PathBuf,
        /// Why the harness gave up.
        reason: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
}

impl HarnessError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
        let what = what.into();
        move |source| HarnessError::Io { what, source }
    }
}
