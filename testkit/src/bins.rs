//! Finding PostgreSQL's programs, and the OS account the server runs as.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::error::{HarnessError, Result};

/// Environment variable naming the PostgreSQL server's bin directory (the one holding `initdb`,
/// `postgres` and `pg_ctl`), overriding the search of `/usr/lib/postgresql/*/bin`.
pub const BINDIR_ENV: &str = "DBWARD_PG_BINDIR";

/// Where Debian's packages install one directory per major version.
const DEBIAN_PG_LIB: &str = "/usr/lib/postgresql";

/// Directories searched for client tools after the server's bin directory and `$PATH`:
/// pgbouncer lives in `/usr/sbin`, which is not on an unprivileged user's `$PATH`.
const EXTRA_TOOL_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];

/// The PostgreSQL server's bin directory: `$DBWARD_PG_BINDIR` when set, otherwise the highest
/// version's `/usr/lib/postgresql/<version>/bin` that holds `initdb`, `postgres` and `pg_ctl`.
///
/// Fails with "PostgreSQL server not found: run scripts/ensure-postgres.sh" when there is none.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = env::var_os(BINDIR_ENV).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        if is_server_dir(&dir) {
            return Ok(dir);
        }
        return Err(HarnessError::ServerNotFound {
            looked_in: format!(
                "{BINDIR_ENV}={} has no initdb, postgres and pg_ctl",
                dir.display()
            ),
        });
    }
    let not_found = || HarnessError::ServerNotFound {
        looked_in: format!(
            "no {DEBIAN_PG_LIB}/*/bin with initdb, postgres and pg_ctl, and {BINDIR_ENV} is unset"
        ),
    };
    let entries = std::fs::read_dir(DEBIAN_PG_LIB).map_err(|_| not_found())?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = parse_version(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            is_server_dir(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
        .ok_or_else(not_found)
}

/// The path of a PostgreSQL tool such as `psql`, `pgbench` or `pgbouncer`: looked up in the
/// server's bin directory (when there is one), then on `$PATH`, then in the usual system directories.
pub fn tool_path(tool: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(bin) = pg_bin_dir() {
        dirs.push(bin);
    }
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    dirs.extend(EXTRA_TOOL_DIRS.iter().map(PathBuf::from));
    dirs.iter()
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| HarnessError::ToolNotFound {
            tool: tool.to_owned(),
            looked_in: "the PostgreSQL bin directory, $PATH, /usr/sbin and /usr/local/sbin".to_owned(),
        })
}

/// "15" -> [15], "9.6" -> [9, 6]; `None` for names that are not versions.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn is_server_dir(dir: &Path) -> bool {
    ["initdb", "postgres", "pg_ctl"]
        .iter()
        .all(|bin| is_executable(&dir.join(bin)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The OS account the server's processes run as, when it is not the current user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// `None` to run the server as the current user; the `postgres` account when the current user is
/// root (the server refuses to run as root).
pub(crate) fn server_account() -> Result<Option<Account>> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    let (Ok(uid), Ok(gid)) = (id(&["-u", "postgres"]), id(&["-g", "postgres"])) else {
        return Err(HarnessError::NoPostgresUser);
    };
    Ok(Some(Account { uid, gid }))
}

/// Runs `id ARGS` and parses the number it prints.
fn id(args: &[&str]) -> Result<u32> {
    let output = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(HarnessError::io(format!("running `id {}`", args.join(" "))))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse() {
        Ok(number) if output.status.success() => Ok(number),
        _ => Err(HarnessError::CommandFailed {
            what: format!("`id {}`", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("15") > parse_version("9.6"));
        assert!(parse_version("16") > parse_version("15"));
        assert_eq!(parse_version("main"), None);
    }
}
