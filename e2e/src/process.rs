//! Child processes (the operator, the sidecar): output to a log file, stopped with SIGTERM (then SIGKILL)
//! when dropped, and their last log lines shown when a test fails.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// How long a process may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many log lines a failure shows.
const TAIL_LINES: usize = 80;

/// A running child process with its log file.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let out = File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate the handle of {}: {e}", log.display()));
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {name} ({}): {e}", cmd.get_program().display()));
        crate::say!(
            "e2e: started the {name} (pid {}), log in {}",
            child.id(),
            log.display()
        );
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
            exited: None,
        }
    }

    /// `Err` with the exit status and the log's last lines when the process has ended.
    pub fn check_running(&mut self) -> Result<(), String> {
        if self.exited.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.exited = child.try_wait().ok().flatten();
        }
        match self.exited {
            None => Ok(()),
            Some(status) => Err(format!(
                "the {} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(TAIL_LINES)
            )),
        }
    }

    /// Panics when the process has ended.
    pub fn assert_running(&mut self) {
        if let Err(e) = self.check_running() {
            panic!("{e}");
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text =
            std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(cannot read the log: {e})"));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Stops the process: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            self.exited = Some(status);
            return;
        }
        // SIGTERM lets the operator give up its Lease and the sidecar close its sessions. `kill(1)`, as
        // this crate forbids the unsafe code a direct kill(2) would take.
        let termed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let end = Instant::now() + if termed { STOP_GRACE } else { Duration::ZERO };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return;
                }
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
                _ => break,
            }
        }
        crate::say!("e2e: the {} did not stop after SIGTERM; killing it", self.name);
        let _ = child.kill();
        self.exited = child.wait().ok();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            crate::say!(
                "--- the {} ({}), last lines of {} ---\n{}\n--- end of the {}'s log ---",
                self.name,
                self.exited
                    .map_or_else(|| "running".to_owned(), |s| s.to_string()),
                self.log.display(),
                self.log_tail(TAIL_LINES),
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("dbward-e2e-proc-{}", crate::random_suffix()));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn stops_with_sigterm_and_reports_an_exit() {
        let d = dir();
        let mut sleeper = Command::new("sleep");
        sleeper.arg("600");
        let mut p = Proc::spawn("sleeper", sleeper, &d.join("sleep.log"));
        assert!(p.check_running().is_ok());
        p.stop();
        assert!(p.check_running().is_err());

        let mut echo = Command::new("sh");
        echo.args(["-c", "echo one; echo two >&2; exit 3"]);
        let mut p = Proc::spawn("echo", echo, &d.join("echo.log"));
        let end = Instant::now() + Duration::from_secs(10);
        while p.check_running().is_ok() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = p.check_running().err().unwrap_or_default();
        assert!(
            err.contains("exit status: 3") && err.contains("one\ntwo"),
            "{err}"
        );
        drop(p);
        let _ = std::fs::remove_dir_all(d);
    }
}
