//! Stopping a test server and deleting its directory, even when the test process never drops it.
//!
//! The shared server lives in a `static`, which Rust never drops, and a test process may also die
//! from a panic, `process::exit` or a signal. So each server gets a reaper: a small `sh` process,
//! started before `initdb`, that blocks reading a pipe whose write end only the test process holds
//! (the pipe is close-on-exec, so no other program inherits it). When the test process exits, for
//! whatever reason, the kernel closes the pipe; the reaper then stops the server
//! (`pg_ctl stop -m immediate`) and deletes the directory. Dropping a [`Reaper`] closes the pipe
//! early and waits for that cleanup to finish.

use std::{
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
};

use crate::{
    bins::Account,
    error::{HarnessError, Result},
    process::run_as,
};

/// `$1` = pg_ctl, `$2` = data directory, `$3` = directory to delete. Ignores the terminal's
/// signals so a Ctrl-C that kills the tests does not kill the reaper before it has cleaned up.
const SCRIPT: &str = r#"trap '' INT HUP QUIT
read -r _ || :
if [ -f "$2/postmaster.pid" ]; then
    "$1" stop -D "$2" -m immediate -w -t 60 >/dev/null 2>&1 || :
fi
rm -rf -- "$3"
"#;

/// Owns the reaper process of one server; see the module docs.
#[derive(Debug)]
pub(crate) struct Reaper {
    child: Child,
    /// The write end of the pipe the reaper waits on; closing it starts the cleanup.
    trigger: Option<ChildStdin>,
}

impl Reaper {
    /// Starts a reaper that, once triggered, stops the server in `data_dir` with `pg_ctl` and then
    /// deletes `dir`. It runs as `account` (the server's owner) so `pg_ctl` accepts it.
    pub(crate) fn spawn(
        pg_ctl: &Path,
        data_dir: &Path,
        dir: &Path,
        account: Option<Account>,
    ) -> Result<Reaper> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("dbward-testkit-reaper")
            .arg(pg_ctl)
            .arg(data_dir)
            .arg(dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = run_as(&mut cmd, account).spawn().map_err(HarnessError::io(
            "starting the cleanup process (sh) for a test PostgreSQL",
        ))?;
        let trigger = child.stdin.take();
        Ok(Reaper { child, trigger })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        drop(self.trigger.take());
        // Nothing useful to do on failure here: the reaper was already told to clean up.
        let _ = self.child.wait();
    }
}
