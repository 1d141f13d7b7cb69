//! Child processes (the operator, the sidecar): output to a log file, stopped with SIGTERM (then SIGKILL)
//! when dropped, and their last log lines shown when a test fails; their environment, the admin
//! endpoint probe, and the machine-wide lock that makes runs take turns.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{LOG_ENV, wait::Deadline};

/// How long a process may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many log lines a failure shows.
const TAIL_LINES: usize = 80;
/// The machine-wide lock: another run may be using the cluster's fixed-name webhook configurations.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

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

/// A child process's environment: nothing of the test's (no stray `DBWARD_*` or `KUBECONFIG`) but
/// what a process needs to run, the TLS trust and proxy settings, and the log filter.
pub(crate) fn child_env(cmd: &mut std::process::Command) {
    cmd.env_clear();
    for var in [
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    let filter = std::env::var(LOG_ENV).ok().filter(|f| !f.is_empty());
    cmd.env("DBWARD_LOG", filter.as_deref().unwrap_or("info"));
    cmd.env("RUST_BACKTRACE", "1");
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP: the status code and body.
pub(crate) async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut answer = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("no answer from 127.0.0.1:{port}{path} within 5 s"))??;
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim()
        .to_owned();
    Ok((code, body))
}

/// An exclusive lock on `$TMPDIR/dbward-e2e.lock`, so that runs on this machine take turns with the
/// cluster's fixed-name webhook configurations.
pub(crate) async fn machine_lock() -> File {
    let path = std::env::temp_dir().join("dbward-e2e.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let deadline = Deadline::new(
        format!(
            "the other dbward e2e run on this machine to release {}",
            path.display()
        ),
        LOCK_TIMEOUT,
    );
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) => {
                if !said {
                    crate::say!(
                        "e2e: another dbward e2e run holds {}; waiting for it",
                        path.display()
                    );
                    said = true;
                }
                deadline.check("still locked");
                deadline.sleep(Duration::from_secs(1)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => panic!("cannot lock {}: {e}", path.display()),
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

    #[tokio::test]
    async fn http_get_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 18\r\n\r\ncaches are loading",
                    )
                    .await;
            }
        });
        assert_eq!(
            http_get(port, "/readyz").await,
            Ok((503, "caches are loading".to_owned()))
        );
        assert!(http_get(crate::free_port(), "/readyz").await.is_err());
    }
}
