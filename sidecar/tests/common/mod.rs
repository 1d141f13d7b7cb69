//! Shared by the sidecar's integration tests: a proxy running in this process in front of a real
//! PostgreSQL from the testkit, and a few raw-protocol helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{BufMut, BytesMut};
use dbward_sidecar::{
    auth::ScramClient,
    config::{self, runtime::RunOptions},
    proxy::{Proxy, hook::SessionHooks},
};
use dbward_testkit::TestPostgres;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

/// A proxy serving one connection in this process. Stops when dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestProxy {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// libpq / tokio-postgres connection string to the proxy.
    pub fn conn_string(&self, user: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={dbname} connect_timeout=10",
            self.port()
        )
    }

    /// The usual client: user "app", database "shop", no password (ambient identity).
    pub fn app(&self) -> String {
        self.conn_string("app", "shop")
    }
}

/// Config YAML for one connection named `orders` to `pg`, with extra `spec` lines appended.
pub fn connection_yaml(pg: &TestPostgres, spec_extra: &str) -> String {
    connection_yaml_to(
        "127.0.0.1",
        pg.port(),
        pg.app_user(),
        pg.app_password(),
        spec_extra,
    )
}

/// Starts a proxy for config `yaml` on a free port.
pub async fn start_proxy_with(
    yaml: &str,
    opts: RunOptions,
    hooks: Option<Arc<dyn SessionHooks>>,
) -> TestProxy {
    start_proxy_edited(yaml, opts, |pc| pc.shared.hooks = hooks).await
}

/// A proxy with plain TLS-less upstream to the shared PostgreSQL.
pub async fn start_proxy() -> TestProxy {
    let pg = dbward_testkit::shared();
    start_proxy_with(
        &connection_yaml(pg, "  tls: {mode: disable}"),
        RunOptions::default(),
        None,
    )
    .await
}

pub async fn start_hooked_proxy(hooks: Arc<dyn SessionHooks>) -> TestProxy {
    let pg = dbward_testkit::shared();
    start_proxy_with(
        &connection_yaml(pg, "  tls: {mode: disable}"),
        RunOptions::default(),
        Some(hooks),
    )
    .await
}

/// tokio-postgres client, with its connection driven in the background.
pub async fn connect(conn: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The SQLSTATE of a tokio-postgres error, if it came from the server (or the sidecar).
pub fn code(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// A raw protocol client: writes frames, reads everything up to a ReadyForQuery.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(u32::try_from(body.len() + 4).unwrap().to_be_bytes());
    v.extend(body);
    v
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn query(sql: &str) -> Vec<u8> {
    frame(b'Q', &cstr(sql))
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend(0i16.to_be_bytes());
    frame(b'P', &b)
}

/// Bind with text parameters (None = NULL) and text results.
pub fn bind(portal: &str, stmt: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend(0i16.to_be_bytes());
    b.extend(i16::try_from(params.len()).unwrap().to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend(i32::try_from(v.len()).unwrap().to_be_bytes());
                b.extend(v.as_bytes());
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
    }
    b.extend(0i16.to_be_bytes());
    frame(b'B', &b)
}

pub fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(0i32.to_be_bytes());
    frame(b'E', &b)
}

pub fn describe_portal(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend(cstr(portal));
    frame(b'D', &b)
}

pub fn sync() -> Vec<u8> {
    frame(b'S', b"")
}

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// For ErrorResponse/NoticeResponse: a field's value.
    pub fn field(&self, f: u8) -> Option<String> {
        let mut i = 0;
        while i < self.body.len() && self.body[i] != 0 {
            let t = self.body[i];
            let end = self.body[i + 1..].iter().position(|&b| b == 0)? + i + 1;
            if t == f {
                return Some(String::from_utf8_lossy(&self.body[i + 1..end]).into_owned());
            }
            i = end + 1;
        }
        None
    }

    pub fn code(&self) -> Option<String> {
        self.field(b'C')
    }
}

impl Raw {
    /// Connects and completes startup with the given parameters (no password).
    pub async fn startup(addr: SocketAddr, params: &[(&str, &str)], password: Option<&str>) -> Raw {
        let mut r = Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        };
        let mut body = BytesMut::new();
        body.put_i32(196_608);
        for (k, v) in params {
            body.extend(cstr(k));
            body.extend(cstr(v));
        }
        body.put_u8(0);
        let mut pkt = (u32::try_from(body.len() + 4).unwrap()).to_be_bytes().to_vec();
        pkt.extend(&body);
        r.stream.write_all(&pkt).await.unwrap();
        let mut scram: Option<ScramClient> = None;
        loop {
            let m = r.read().await.expect("startup answer");
            match m.tag {
                b'R' if m.body[..4] == [0, 0, 0, 3] => {
                    let pw = password.expect("server asked for a password");
                    r.send(&frame(b'p', &cstr(pw))).await;
                }
                b'R' if m.body[..4] == [0, 0, 0, 10] => {
                    let pw = password.expect("server asked for a password");
                    let client = scram.insert(ScramClient::new(pw));
                    let first = client.client_first();
                    let mut b = cstr("SCRAM-SHA-256");
                    b.extend(i32::try_from(first.len()).unwrap().to_be_bytes());
                    b.extend(first);
                    r.send(&frame(b'p', &b)).await;
                }
                b'R' if m.body[..4] == [0, 0, 0, 11] => {
                    let last = scram.as_mut().unwrap().server_first(&m.body[4..]).unwrap();
                    r.send(&frame(b'p', &last)).await;
                }
                b'R' => {}
                b'Z' => break,
                b'E' => panic!("startup failed: {:?}", m.field(b'M')),
                _ => {}
            }
        }
        r
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one message; None on EOF.
    pub async fn read(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
                if self.buf.len() > len {
                    let m = self.buf.split_to(len + 1);
                    return Some(Msg {
                        tag: m[0],
                        body: m[5..].to_vec(),
                    });
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf))
                .await
                .expect("read timed out")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads messages up to and including the `n`-th ReadyForQuery.
    pub async fn until_ready(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::new();
        let mut seen = 0;
        while seen < n {
            let m = self.read().await.expect("connection closed before ReadyForQuery");
            if m.tag == b'Z' {
                seen += 1;
            }
            out.push(m);
        }
        out
    }
}

/// Tags of a message list as a string, e.g. "1 2 T D C Z".
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| char::from(m.tag).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- Startup, TLS and identity helpers (startup.rs, tls.rs, identity.rs) ----

/// A startup packet for protocol `version` (`196_608` is 3.0) with `params`.
pub fn startup_packet(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    let mut pkt = u32::try_from(body.len() + 4).unwrap().to_be_bytes().to_vec();
    pkt.extend(body);
    pkt
}

/// SSLRequest and GSSENCRequest packets.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];
pub const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 48];

impl Raw {
    /// A bare TCP connection; nothing sent yet.
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    /// The one-byte answer to an SSLRequest or GSSENCRequest.
    pub async fn answer_byte(&mut self) -> u8 {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before the answer: {:?}",
            self.buf
        );
        tokio::time::timeout(Duration::from_secs(30), self.stream.read_u8())
            .await
            .expect("answer timed out")
            .unwrap()
    }

    /// Sends a 3.0 StartupMessage and logs in (SCRAM or cleartext with `password`). `Ok` with every
    /// message up to the first ReadyForQuery, `Err` with every message up to the end of the
    /// connection when the login fails (or the server asks for a password and there is none).
    pub async fn login(
        &mut self,
        params: &[(&str, &str)],
        password: Option<&str>,
    ) -> Result<Vec<Msg>, Vec<Msg>> {
        self.send(&startup_packet(196_608, params)).await;
        self.finish_login(password).await
    }

    /// The login exchange after a StartupMessage was sent.
    pub async fn finish_login(&mut self, password: Option<&str>) -> Result<Vec<Msg>, Vec<Msg>> {
        let mut seen = Vec::new();
        let mut scram: Option<ScramClient> = None;
        loop {
            let Some(m) = self.read().await else {
                return Err(seen);
            };
            let code = (m.tag == b'R' && m.body.len() >= 4)
                .then(|| i32::from_be_bytes(m.body[..4].try_into().unwrap()));
            let tag = m.tag;
            let body = m.body.clone();
            seen.push(m);
            match (tag, code, password) {
                (b'R', Some(3), Some(pw)) => self.send(&frame(b'p', &cstr(pw))).await,
                (b'R', Some(10), Some(pw)) => {
                    let client = scram.insert(ScramClient::new(pw));
                    let first = client.client_first();
                    let mut b = cstr("SCRAM-SHA-256");
                    b.extend(i32::try_from(first.len()).unwrap().to_be_bytes());
                    b.extend(first);
                    self.send(&frame(b'p', &b)).await;
                }
                (b'R', Some(11), Some(_)) => {
                    let last = scram.as_mut().unwrap().server_first(&body[4..]).unwrap();
                    self.send(&frame(b'p', &last)).await;
                }
                (b'R', Some(0 | 12), _) => {}
                (b'R', _, None) => return Err(seen),
                (b'Z', _, _) => return Ok(seen),
                (b'E', _, _) => {
                    seen.extend(self.read_to_end().await);
                    return Err(seen);
                }
                _ => {}
            }
        }
    }

    /// Every message until the other side closes the connection (a reset counts as closed).
    pub async fn read_to_end(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.read().await {
            out.push(m);
        }
        out
    }
}

/// The first ErrorResponse among `msgs`.
pub fn first_error(msgs: &[Msg]) -> &Msg {
    msgs.iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("no ErrorResponse in {}", tags(msgs)))
}

/// Whether `needle` occurs in any message body (message text, detail, hint, parameter values...).
pub fn any_message_contains(msgs: &[Msg], needle: &str) -> bool {
    msgs.iter()
        .any(|m| m.body.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

/// Config YAML for connection `orders` to `host:port` with the given credential, extra `spec` lines
/// appended. For upstreams that are not a [`TestPostgres`] (down, or with a wrong password).
pub fn connection_yaml_to(host: &str, port: u16, user: &str, password: &str, spec_extra: &str) -> String {
    format!(
        r#"apiVersion: dbward.dev/v1alpha1
kind: DatabaseConnection
metadata: {{name: orders}}
spec:
  host: {host}
  port: {port}
  database: shop
  localPort: 15432
  credentialsSecretRef: {{name: orders-db}}
{spec_extra}
---
apiVersion: v1
kind: Secret
metadata: {{name: orders-db}}
stringData:
  username: {user}
  password: {password}
"#
    )
}

/// Like [`start_proxy_with`], with a chance to change the built configuration before it runs (for
/// settings the config file refuses).
pub async fn start_proxy_edited(
    yaml: &str,
    opts: RunOptions,
    edit: impl FnOnce(&mut dbward_sidecar::proxy::ProxyConfig),
) -> TestProxy {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cfg = config::parse_str(yaml).unwrap();
    let env = |_: &str| None;
    let mut pc = config::runtime::build(&cfg, &opts, None, &env).unwrap();
    for c in &mut pc.connections {
        c.1 = 0;
    }
    pc.listen = vec!["127.0.0.1".parse().unwrap()];
    edit(&mut pc);
    let proxy = Proxy::bind(pc).await.unwrap();
    let addr = proxy.local_addrs()[0].1;
    let stop = CancellationToken::new();
    let task = tokio::spawn(proxy.run(stop.clone()));
    TestProxy {
        addr,
        stop,
        task: Some(task),
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private temporary directory, deleted when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "dbward-{label}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `contents` to `name` in the directory and returns the file's absolute path.
    pub fn write(&self, name: &str, contents: &[u8]) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a psql run printed.
#[derive(Debug)]
pub struct PsqlRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs psql (never prompting for a password) with `conninfo` and each of `commands` as a `-c`, in a clean
/// environment: English messages, `home` as `$HOME` (so no `~/.pgpass` or `~/.postgresql`), the
/// given extra variables (e.g. `PGPASSWORD`), and as Unix user `uid` when given.
pub async fn psql(
    conninfo: &str,
    commands: &[&str],
    home: &std::path::Path,
    env: &[(&str, &str)],
    uid: Option<u32>,
) -> PsqlRun {
    let path = dbward_testkit::tool_path("psql").unwrap();
    let mut cmd = tokio::process::Command::new(path);
    cmd.args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .env("HOME", home)
        .env("PGCONNECT_TIMEOUT", "10")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(uid) = uid {
        cmd.uid(uid);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("psql timed out")
        .unwrap();
    PsqlRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Raw {
    /// Messages up to and including the first ReadyForQuery, or up to the end of the connection.
    pub async fn until_closed_or_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.read().await {
            let ready = m.tag == b'Z';
            out.push(m);
            if ready {
                break;
            }
        }
        out
    }
}

/// The approval request files in a directory (names without `.yaml`), sorted.
pub fn requests(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The first approval request to appear in `dir` (waits up to 5 s).
pub async fn wait_for_request(dir: &std::path::Path) -> String {
    for _ in 0..200 {
        if let Some(n) = requests(dir).into_iter().next() {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no approval request appeared in {}", dir.display());
}

/// Sets fields of a request's `status` the way a person may: by editing its file (atomically).
pub fn set_status(dir: &std::path::Path, name: &str, fields: &[(&str, &str)]) {
    let path = dir.join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    for (field, value) in fields {
        doc["status"][*field] = (*value).into();
    }
    let tmp = dir.join(format!(".{name}.edit"));
    std::fs::write(&tmp, serde_json::to_string(&doc).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}
