#![doc = include_str!("../README.md")]
//!
//! # The support library
//!
//! [`Env`] sets up (and tears down) everything a real-cluster test shares: the CRDs, the operator's
//! namespace, ServiceAccount and RBAC, the webhook configurations, and the operator process itself.
//! [`manifests`] holds what it hands the cluster and the processes, [`objects`] builds the Kubernetes
//! objects the tests create, [`wait`] bounds every wait, [`process`] runs and stops child processes,
//! and [`tools`] finds kubectl and helm.

mod cleanup;
pub mod cluster;
pub mod manifests;
pub mod objects;
pub mod process;
pub mod tools;
pub mod wait;

use std::path::{Path, PathBuf};

pub use cluster::Env;

/// Names the admin kubeconfig of the cluster to test against. Unset: the real-cluster tests skip.
pub const KUBECONFIG_ENV: &str = "DBWARD_E2E_KUBECONFIG";
/// The host the API server reaches the out-of-cluster operator's webhooks at (default `127.0.0.1`).
pub const WEBHOOK_HOST_ENV: &str = "DBWARD_E2E_WEBHOOK_HOST";
/// Overrides the operator binary built with the tests.
pub const OPERATOR_BIN_ENV: &str = "DBWARD_E2E_OPERATOR_BIN";
/// Overrides the sidecar binary built with the tests.
pub const SIDECAR_BIN_ENV: &str = "DBWARD_E2E_SIDECAR_BIN";
/// The `DBWARD_LOG` filter for the operator and the sidecar (default `info`).
pub const LOG_ENV: &str = "DBWARD_E2E_LOG";

/// Writes a line to stderr at once, past the test harness's output capture (which takes only what the
/// print macros write): the skip notices, the progress of a real-cluster run and its measurements show
/// up in `cargo test` without `--nocapture`.
pub fn say_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `eprintln!`, uncaptured: see [`say_line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(&format!($($arg)*))
    };
}

/// The admin kubeconfig named by [`KUBECONFIG_ENV`], or `None` after saying on stderr that `test` is
/// skipped and why. A variable that names no file is a mistake, not a reason to skip: it panics.
pub fn kubeconfig_or_skip(test: &str) -> Option<PathBuf> {
    let Some(value) = std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty()) else {
        crate::say!(
            "skipped: {KUBECONFIG_ENV} is not set, so the real-cluster test `{test}` does not run \
             (set it to a cluster admin's kubeconfig to run it; see e2e/README.md)"
        );
        return None;
    };
    let mut path = PathBuf::from(&value);
    // `DBWARD_E2E_KUBECONFIG="~/.kube/config"` (quoted, so the shell left the tilde alone).
    if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), std::env::var_os("HOME")) {
        path = Path::new(&home).join(rest);
    }
    assert!(
        path.is_file(),
        "{KUBECONFIG_ENV}={} is not a file: it must name the kubeconfig of a cluster admin (unset it to skip \
         the real-cluster tests)",
        path.display()
    );
    crate::say!("e2e: `{test}` runs against the cluster of {}", path.display());
    Some(path)
}

/// The operator and sidecar executables the tests run.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub operator: PathBuf,
    pub sidecar: PathBuf,
}

impl Binaries {
    /// The binaries cargo built with the tests (`built_*`, from `CARGO_BIN_EXE_*`), unless
    /// [`OPERATOR_BIN_ENV`] / [`SIDECAR_BIN_ENV`] name others. Use the [`binaries!`] macro, which
    /// passes the built paths.
    pub fn new(built_operator: &str, built_sidecar: &str) -> Self {
        let pick = |var: &str, built: &str| {
            let path = std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(built), PathBuf::from);
            assert!(
                path.is_file(),
                "{} does not exist (from {var} when set, else built by cargo with the tests)",
                path.display()
            );
            path
        };
        Self {
            operator: pick(OPERATOR_BIN_ENV, built_operator),
            sidecar: pick(SIDECAR_BIN_ENV, built_sidecar),
        }
    }
}

/// The [`Binaries`] for this test crate: `CARGO_BIN_EXE_*` is only known to the crate's own tests, so
/// this macro reads it where it is expanded.
#[macro_export]
macro_rules! binaries {
    () => {
        $crate::Binaries::new(
            env!("CARGO_BIN_EXE_e2e-dbward-operator"),
            env!("CARGO_BIN_EXE_e2e-dbward-sidecar"),
        )
    };
}

/// A random lower-case hex suffix for this run's names.
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() & 0xffff_ffff)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read a bound port: {e}"))
        .port()
}

/// The workspace's root directory (where `crds/`, `charts/` and `scripts/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_names() {
        let a = random_suffix();
        assert_eq!(a.len(), 8);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(a, random_suffix());
    }

    #[test]
    fn the_workspace_root_holds_the_crds() {
        assert!(workspace_root().join("crds").is_dir());
        assert!(
            workspace_root()
                .join("charts/dbward/templates/rbac.yaml")
                .is_file()
        );
    }
}
