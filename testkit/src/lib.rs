//! Test harness shared by dbward's test suites: throwaway PostgreSQL servers with the demo schema.
//!
//! ```no_run
//! let pg = dbward_testkit::shared();
//! let count = pg.psql("select count(*) from customers").expect("query the demo schema");
//! assert_eq!(count, "300");
//! // tokio-postgres / libpq: pg.app_conn_string(), or pg.conn_string(user, password, db)
//! ```
//!
//! The server binaries come from Debian's packages (`/usr/lib/postgresql/<version>/bin`, or
//! `$DBWARD_PG_BINDIR`); `scripts/ensure-postgres.sh` installs them. Every server runs in its own
//! temporary directory on a free port and is stopped and deleted when dropped or, at the latest,
//! when the test process exits.

mod bins;
mod error;
mod options;
mod process;
mod reaper;
mod server;

use std::sync::OnceLock;

pub use bins::{BINDIR_ENV, pg_bin_dir, tool_path};
pub use error::{HarnessError, Result};
pub use options::{AuthMethod, PgOptions, TlsFiles};
pub use server::TestPostgres;

/// The demo schema (`examples/demo/schema.sql`) that [`TestPostgres::start`] loads into `shop`.
pub const DEMO_SCHEMA: &str = include_str!("../../examples/demo/schema.sql");

/// The server shared by all tests of one test binary: started on first use with
/// [`PgOptions::default`] (SCRAM, no TLS, demo schema loaded), stopped when the process exits.
///
/// Tests that change what others see (roles, settings, the demo rows) should start their own
/// [`TestPostgres`] or work in objects of their own.
///
/// # Panics
///
/// When the server cannot be started; the message says why (and every later call repeats it).
pub fn shared() -> &'static TestPostgres {
    static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
    match SHARED.get_or_init(|| TestPostgres::start(PgOptions::default()).map_err(|err| err.to_string())) {
        Ok(pg) => pg,
        Err(err) => panic!("starting the shared test PostgreSQL failed: {err}"),
    }
}
