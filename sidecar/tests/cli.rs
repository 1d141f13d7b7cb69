//! The `dbward-sidecar` binary: config errors, serving psql and pgbench, following config changes,
//! and SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{TempDir, code, connect, connection_yaml};
use dbward_testkit::shared;

const BIN: &str = env!("CARGO_BIN_EXE_dbward-sidecar");

/// What `ci/agent` may do: nearly everything, but customers' e-mail addresses are masked and nothing
/// is truncated.
const POLICY: &str = r#"
---
apiVersion: dbward.dev/v1alpha1
kind: AccessPolicy
metadata: {name: ci}
spec:
  connections: [orders]
  subjects: [{serviceAccount: {name: agent, namespace: ci}}]
  rules:
    - {action: allow, operations: [select, insert, update, delete, ddl, copyIn, copyOut, set, transaction, utility]}
    - {action: deny, operations: [truncate], message: "no truncating in CI"}
  masking:
    - {columns: ["public.customers.email"], strategy: email}
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_file(name: &str, text: &str) -> (PathBuf, TempDir) {
    let dir = TempDir::new("cli");
    let path = dir.0.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    (path, dir)
}

/// A running sidecar process; killed when dropped.
struct Sidecar {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
    /// The config file the sidecar runs with and follows.
    config: PathBuf,
    _dir: TempDir,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    fn start(extra_args: &[&str]) -> Sidecar {
        let pg = shared();
        let port = free_port();
        let yaml = connection_yaml(pg, "  tls: {mode: disable}")
            .replace("localPort: 15432", &format!("localPort: {port}"))
            + POLICY;
        let (path, dir) = temp_file("dbward.yaml", &yaml);
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--config",
                path.to_str().unwrap(),
                "--listen",
                "127.0.0.1",
                "--identity",
                "ci/agent",
            ])
            .args(extra_args)
            .env("DBWARD_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let s = Sidecar {
            child,
            port,
            stderr: rx,
            config: path,
            _dir: dir,
        };
        s.wait_for("ready");
        s
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    fn conn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=ci dbname=orders connect_timeout=10",
            self.port
        )
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sidecar did not exit in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[test]
fn bad_config_is_refused_with_the_document_and_field() {
    let pg = shared();
    let yaml = connection_yaml(pg, "  tls: {mode: verify}");
    let (path, _dir) = temp_file("bad.yaml", &yaml);
    for sub in ["check", "run"] {
        let out = Command::new(BIN)
            .args([sub, "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.yaml: document 1 (DatabaseConnection \"orders\"): spec.tls.mode: unknown variant `verify`"),
            "{sub}: {err}"
        );
    }
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/dbward.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/dbward.yaml: cannot read the config file")
    );

    let good = connection_yaml(pg, "  tls: {mode: disable}");
    let (path, _dir) = temp_file("good.yaml", &good);
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn psql_and_pgbench_in_all_three_modes() {
    let pg = shared();
    let s = Sidecar::start(&[]);
    let out = Command::new(pg.psql_path())
        .args([
            "-X",
            "-At",
            &s.conn(),
            "-c",
            "select count(*) from customers",
            "-c",
            "\\copy (select id from products order by id limit 3) to stdout",
            "-c",
            "select email from customers where id = 7",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "300\n1\n2\n3\n****@example.com\n"
    );
    let out = Command::new(pg.psql_path())
        .args(["-X", "-At", &s.conn(), "-c", "truncate orders"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no truncating in CI"));

    let (script, _dir) = temp_file(
        "bench.sql",
        "\\set id random(1, 300)\nselect email from customers where id = :id;\nbegin;\nselect count(*) from orders where customer_id = :id;\ncommit;\n",
    );
    for mode in ["simple", "extended", "prepared"] {
        let out = Command::new(pg.pgbench_path())
            .args([
                "-n",
                "-c",
                "4",
                "-j",
                "2",
                "-t",
                "50",
                "-M",
                mode,
                "-f",
                script.to_str().unwrap(),
            ])
            .args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "-U", "ci", "orders"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("number of transactions actually processed: 200/200"),
            "{mode}: {stdout}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0"),
            "{mode}: {stdout}"
        );
    }
}

#[tokio::test]
async fn sigterm_drains_sessions_then_exits() {
    let mut s = Sidecar::start(&["--shutdown-grace", "30s"]);
    let c = connect(&s.conn()).await.unwrap();
    c.batch_execute("begin; create temp table during (x int)")
        .await
        .unwrap();
    s.signal("-TERM");
    s.wait_for("shutting down");
    // New sessions are refused; the one running finishes its work.
    assert!(connect(&s.conn()).await.is_err());
    c.batch_execute("insert into during values (1); commit")
        .await
        .unwrap();
    assert_eq!(
        c.query_one("select count(*) from during", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    drop(c);
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sessions_outliving_the_grace_period_are_told_why() {
    let mut s = Sidecar::start(&["--shutdown-grace", "500ms"]);
    let addr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let mut idle = common::Raw::startup(addr, &[("user", "ci"), ("database", "orders")], None).await;
    s.signal("-TERM");
    s.wait_for("grace period over");
    // An idle session gets PostgreSQL's shutdown error, whole, then the end of the connection.
    let m = idle.read().await.expect("an error before the close");
    assert_eq!(m.tag, b'E');
    assert_eq!(m.field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(m.code().as_deref(), Some("57P01"));
    assert!(m.field(b'M').unwrap().contains("shutting down"));
    assert!(idle.read().await.is_none());
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

impl Sidecar {
    /// Replaces the config file the way an editor or a ConfigMap update does: whole, by rename.
    fn rewrite_config(&self, edit: impl FnOnce(String) -> String) {
        let text = edit(std::fs::read_to_string(&self.config).unwrap());
        let next = self.config.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &self.config).unwrap();
    }
}

async fn current_user(c: &tokio_postgres::Client) -> String {
    c.query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn changed_connection_settings_serve_new_sessions_and_open_ones_keep_theirs() {
    let pg = shared();
    pg.psql("drop role if exists dbward_rotated; create role dbward_rotated login password 'rotated-pw'")
        .unwrap();
    let s = Sidecar::start(&[]);
    let open = connect(&s.conn()).await.unwrap();
    assert_eq!(current_user(&open).await, pg.app_user());

    // The credential is rotated in the file.
    let (user, password) = (pg.app_user().to_owned(), pg.app_password().to_owned());
    s.rewrite_config(|t| {
        t.replace(&format!("username: {user}"), "username: dbward_rotated")
            .replace(&format!("password: {password}"), "password: rotated-pw")
    });
    let line = s.wait_for("connection settings changed");
    assert!(line.contains("credentials"), "{line}");
    assert!(!line.contains("rotated-pw"), "no secret in the log: {line}");
    let fresh = connect(&s.conn()).await.unwrap();
    assert_eq!(current_user(&fresh).await, "dbward_rotated");
    assert_eq!(
        current_user(&open).await,
        user,
        "an open session keeps its upstream"
    );

    // A change that cannot be applied changes nothing.
    s.rewrite_config(|t| t.replace("username: dbward_rotated", "user_name: dbward_rotated"));
    s.wait_for("was not applied");
    let still = connect(&s.conn()).await.unwrap();
    assert_eq!(current_user(&still).await, "dbward_rotated");

    // A connection gone from the file takes no new sessions; one back is served again.
    s.rewrite_config(|t| {
        t.replace("user_name: dbward_rotated", "username: dbward_rotated")
            .replace("metadata: {name: orders}", "metadata: {name: orders-v2}")
    });
    s.wait_for("connection removed from the configuration");
    let e = connect(&s.conn()).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("08004"), "{e}");
    let message = e.as_db_error().unwrap().message();
    assert!(
        message.contains("no longer in this sidecar's configuration"),
        "{message}"
    );
    assert_eq!(
        current_user(&fresh).await,
        "dbward_rotated",
        "open sessions go on"
    );
    s.rewrite_config(|t| t.replace("metadata: {name: orders-v2}", "metadata: {name: orders}"));
    s.wait_for("connection back in the configuration");
    let back = connect(&s.conn()).await.unwrap();
    assert_eq!(current_user(&back).await, "dbward_rotated");
}

/// A plain HTTP/1.1 GET; the status code and the body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn the_admin_port_serves_health_readiness_and_counters() {
    let admin = free_port();
    let s = Sidecar::start(&["--admin", &format!("127.0.0.1:{admin}")]);
    assert_eq!(http_get(admin, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(admin, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(http_get(admin, "/nothing").0, 404);

    let c = connect(&s.conn()).await.unwrap();
    c.simple_query("select 1").await.unwrap();
    let e = c.simple_query("truncate customers").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    drop(c);
    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    let value = |series: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert_eq!(
        value("dbward_sidecar_sessions_total{connection=\"orders\",outcome=\"started\"}"),
        1
    );
    assert_eq!(value("dbward_sidecar_statements_total{decision=\"deny\"}"), 1);
    assert!(value("dbward_sidecar_statements_total{decision=\"allow\"}") >= 1);
    assert_eq!(value("dbward_sidecar_journal_healthy"), 1);
    assert!(!metrics.contains("truncate"), "no statement text in the metrics");
}
