//! [`TestPostgres`]: a throwaway PostgreSQL server in a temporary directory.

use std::{
    fmt::Write as _,
    fs::{self, OpenOptions},
    io::Write as _,
    net::TcpListener,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    DEMO_SCHEMA,
    bins::{Account, pg_bin_dir, server_account, tool_path},
    error::{HarnessError, Result},
    options::{AuthMethod, PgOptions, TlsFiles},
    process::{run, run_as, run_with_input},
    reaper::Reaper,
};

/// The bootstrap superuser's name.
const SUPERUSER: &str = "postgres";
/// The superuser's password for TCP logins.
const SUPERUSER_PASSWORD: &str = "dbward-superuser-secret";
/// The application role that owns [`APP_DATABASE`].
const APP_USER: &str = "app";
/// The application role's password.
const APP_PASSWORD: &str = "dbward-app-secret";
/// The application database, holding the demo schema.
const APP_DATABASE: &str = "shop";
/// The only address the server listens on.
const HOST: &str = "127.0.0.1";

/// How often `pg_ctl start` is retried when another process took the chosen port meanwhile.
const PORT_ATTEMPTS: u32 = 8;
/// How long the server may take to start and then accept a connection.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of the server log an error quotes.
const LOG_TAIL_LINES: usize = 30;

/// A PostgreSQL server started for tests, in its own temporary directory, listening on 127.0.0.1
/// on a free port and on a unix socket in that directory.
///
/// It has a superuser `postgres`, and a role `app` that owns database `shop`, where
/// `examples/demo/schema.sql` is loaded (unless [`PgOptions::load_schema`] is false). Both roles
/// log in over TCP with their passwords, authenticated as [`PgOptions::auth`] says; the unix socket
/// trusts everyone and is what the harness's own [`psql`](Self::psql) uses.
///
/// Dropping it stops the server and deletes the directory. So does the end of the test process,
/// for servers that are never dropped such as [`shared`](crate::shared).
#[derive(Debug)]
pub struct TestPostgres {
    dir: PathBuf,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    psql: PathBuf,
    pgbench: PathBuf,
    port: u16,
    options: PgOptions,
    /// Last, so it runs after everything else is dropped: stops the server, deletes `dir`.
    _reaper: Reaper,
}

impl TestPostgres {
    /// Starts a server set up as `opts` says and waits until it accepts connections.
    ///
    /// Runs `initdb` in a fresh directory under the system's temp dir, as the `postgres` OS user when
    /// the tests run as root (PostgreSQL refuses to run as root) and as the current user otherwise;
    /// picks a free port, starts the server with `fsync = off` and `max_connections = 200`, creates
    /// the role `app` and its database `shop`, and loads the demo schema.
    ///
    /// The directory comes from `$TMPDIR` (default `/tmp`): when the tests run as root, the
    /// `postgres` user must be able to reach it, and its path must stay short enough for a unix
    /// socket (about 80 bytes).
    pub fn start(opts: PgOptions) -> Result<TestPostgres> {
        let bin_dir = pg_bin_dir()?;
        let psql = tool_path("psql")?;
        let pgbench = tool_path("pgbench")?;
        let account = server_account()?;
        sweep_orphans(&bin_dir, account);
        let dir = make_dir(account)?;
        let data_dir = dir.join("data");
        // Before anything can fail: from here on the directory is deleted whatever happens.
        let reaper = Reaper::spawn(&bin_dir.join("pg_ctl"), &data_dir, &dir, account)?;

        initdb(&bin_dir, &dir, &data_dir, opts.auth, account)?;
        write_config(&dir, &data_dir, &opts, account)?;
        let port = start_server(&bin_dir, &dir, &data_dir, account)?;

        let pg = TestPostgres {
            dir,
            data_dir,
            bin_dir,
            psql,
            pgbench,
            port,
            options: opts,
            _reaper: reaper,
        };
        pg.wait_ready()?;
        pg.create_roles()?;
        if pg.options.load_schema {
            let mut cmd = pg.psql_command(&pg.socket_conninfo(APP_USER, APP_DATABASE));
            run_with_input(
                &mut cmd,
                DEMO_SCHEMA,
                "loading examples/demo/schema.sql into shop as app",
            )?;
        }
        Ok(pg)
    }

    /// The TCP port the server listens on (on [`host`](Self::host)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The superuser's name: `postgres`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password, for TCP logins.
    pub fn superuser_password(&self) -> &str {
        SUPERUSER_PASSWORD
    }

    /// The application role: `app`, owner of database `shop`.
    pub fn app_user(&self) -> &str {
        APP_USER
    }

    /// The application role's password.
    pub fn app_password(&self) -> &str {
        APP_PASSWORD
    }

    /// The application database: `shop`, holding the demo schema.
    pub fn database(&self) -> &str {
        APP_DATABASE
    }

    /// The options the server was started with.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// The PostgreSQL server's bin directory (`initdb`, `postgres`, `pg_ctl`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The `psql` this harness uses.
    pub fn psql_path(&self) -> &Path {
        &self.psql
    }

    /// The `pgbench` that goes with this server.
    pub fn pgbench_path(&self) -> &Path {
        &self.pgbench
    }

    /// The directory holding the server's unix socket (`.s.PGSQL.<port>`); use it as libpq's `host`.
    /// It is also the temporary directory that holds everything else and is deleted at the end.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// A key-value connection string for TCP to this server, understood by libpq, psql and
    /// tokio-postgres: `host=127.0.0.1 port=<port> user=<user> password=<password> dbname=<db>`.
    /// Append `sslmode=...` and the like as needed.
    pub fn conn_string(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={HOST} port={} user={} password={} dbname={}",
            self.port,
            conninfo_value(user),
            conninfo_value(password),
            conninfo_value(db)
        )
    }

    /// [`conn_string`](Self::conn_string) for `app` on `shop`.
    pub fn app_conn_string(&self) -> String {
        self.conn_string(APP_USER, APP_PASSWORD, APP_DATABASE)
    }

    /// Runs `sql` with psql as the superuser in database `shop`, over the unix socket, and returns
    /// what it prints: rows unaligned (`|` between columns), no headers, no command tags. Stops at
    /// the first error, which is returned with psql's message.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_db(APP_DATABASE, sql)
    }

    /// [`psql`](Self::psql) in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String> {
        self.psql_conninfo(&self.socket_conninfo(SUPERUSER, db), sql)
    }

    /// Runs `sql` with psql connected as `conninfo` says (for example
    /// [`conn_string`](Self::conn_string)`(..) + " sslmode=require"`, or a proxy's address), with the
    /// same output format and error handling as [`psql`](Self::psql).
    pub fn psql_conninfo(&self, conninfo: &str, sql: &str) -> Result<String> {
        let mut cmd = self.psql_command(conninfo);
        let out = run_with_input(&mut cmd, sql, "psql")?;
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// psql reading SQL from stdin: quiet, unaligned, tuples only, stopping on the first error,
    /// ignoring `~/.psqlrc`.
    fn psql_command(&self, conninfo: &str) -> Command {
        let mut cmd = Command::new(&self.psql);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
            conninfo,
        ]);
        cmd
    }

    fn socket_conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.dir.to_string_lossy()),
            self.port,
            conninfo_value(user),
            conninfo_value(db)
        )
    }

    /// Waits until the server answers a query over its unix socket.
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.psql_db("postgres", "select 1") {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() >= deadline => {
                    return Err(HarnessError::StartFailed {
                        data_dir: self.data_dir.clone(),
                        reason: format!("no connection within {START_TIMEOUT:?}; last attempt: {err}"),
                        log_tail: log_tail(&self.log_path(), 0),
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sets the superuser's password and creates `app` and `shop`. Passwords are hashed as
    /// `password_encryption` (set from the auth method) says.
    fn create_roles(&self) -> Result<()> {
        let sql = format!(
            "ALTER ROLE {SUPERUSER} PASSWORD {};\n\
             CREATE ROLE {APP_USER} LOGIN PASSWORD {};\n\
             CREATE DATABASE {APP_DATABASE} OWNER {APP_USER};\n",
            sql_literal(SUPERUSER_PASSWORD),
            sql_literal(APP_PASSWORD)
        );
        self.psql_db("postgres", &sql).map(drop)
    }
}

/// Stops and deletes servers left behind by test processes that no longer exist (the reaper normally
/// does this; a reaper killed with its process group cannot). Best effort: errors are ignored. A
/// directory is only touched when the process id in its name is gone.
fn sweep_orphans(bin_dir: &Path, account: Option<Account>) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("dbward-pg-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let dir = entry.path();
        let data_dir = dir.join("data");
        if data_dir.join("postmaster.pid").exists() {
            let mut cmd = Command::new(bin_dir.join("pg_ctl"));
            cmd.arg("stop")
                .arg("-D")
                .arg(&data_dir)
                .args(["-m", "immediate", "-w", "-t", "10"]);
            let _ = run_as(&mut cmd, account)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Creates a fresh private directory under the temp dir, owned by `account` when given.
fn make_dir(account: Option<Account>) -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Short, since the unix socket's path inside must stay under ~107 bytes.
    let name = format!(
        "dbward-pg-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(name);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(HarnessError::io(format!(
            "creating the test server directory {}",
            dir.display()
        )))?;
    chown(&dir, account)?;
    Ok(dir)
}

fn chown(path: &Path, account: Option<Account>) -> Result<()> {
    match account {
        Some(account) => std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(
            HarnessError::io(format!("handing {} to the postgres OS user", path.display())),
        ),
        None => Ok(()),
    }
}

fn initdb(
    bin_dir: &Path,
    dir: &Path,
    data_dir: &Path,
    auth: AuthMethod,
    account: Option<Account>,
) -> Result<()> {
    let mut cmd = Command::new(bin_dir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host",
            auth.hba_name(),
        ])
        .args(["-E", "UTF8", "--locale=C", "--no-sync"])
        .current_dir(dir);
    run(
        run_as(&mut cmd, account),
        &format!("initdb -D {}", data_dir.display()),
    )
    .map(drop)
}

/// Replaces `pg_hba.conf`, appends the harness's settings to `postgresql.conf`, and writes the TLS
/// files. The files initdb wrote already belong to `account`; new ones are handed to it.
fn write_config(dir: &Path, data_dir: &Path, opts: &PgOptions, account: Option<Account>) -> Result<()> {
    let method = opts.auth.hba_name();
    let hba = format!(
        "# Written by dbward-testkit.\n\
         local all all trust\n\
         host all all 127.0.0.1/32 {method}\n\
         host all all ::1/128 {method}\n"
    );
    let hba_path = data_dir.join("pg_hba.conf");
    fs::write(&hba_path, hba).map_err(HarnessError::io(format!("writing {}", hba_path.display())))?;

    let mut conf = String::from("\n# Added by dbward-testkit.\n");
    let settings = [
        ("listen_addresses", HOST.to_owned()),
        ("unix_socket_directories", dir.to_string_lossy().into_owned()),
        ("max_connections", "200".to_owned()),
        ("shared_buffers", "32MB".to_owned()),
        ("fsync", "off".to_owned()),
        ("synchronous_commit", "off".to_owned()),
        ("full_page_writes", "off".to_owned()),
        ("password_encryption", opts.auth.password_encryption().to_owned()),
        ("log_min_messages", "warning".to_owned()),
        ("log_connections", "off".to_owned()),
        ("timezone", "UTC".to_owned()),
    ];
    for (name, value) in settings {
        writeln!(conf, "{name} = {}", sql_literal(&value)).expect("writing to a String cannot fail");
    }
    if let Some(TlsFiles { cert_pem, key_pem }) = &opts.tls {
        let cert = dir.join("server.crt");
        let key = dir.join("server.key");
        write_private(&cert, cert_pem, account)?;
        write_private(&key, key_pem, account)?;
        writeln!(conf, "ssl = on").expect("writing to a String cannot fail");
        writeln!(conf, "ssl_cert_file = {}", sql_literal(&cert.to_string_lossy()))
            .expect("writing to a String cannot fail");
        writeln!(conf, "ssl_key_file = {}", sql_literal(&key.to_string_lossy()))
            .expect("writing to a String cannot fail");
    }
    let conf_path = data_dir.join("postgresql.conf");
    OpenOptions::new()
        .append(true)
        .open(&conf_path)
        .and_then(|mut file| file.write_all(conf.as_bytes()))
        .map_err(HarnessError::io(format!(
            "appending the test settings to {}",
            conf_path.display()
        )))
}

/// Writes a file only its owner can read (PostgreSQL insists on that for the TLS key).
fn write_private(path: &Path, contents: &str, account: Option<Account>) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(HarnessError::io(format!("writing {}", path.display())))?;
    chown(path, account)
}

/// Starts the server on a free port, retrying with another port when something else took the
/// chosen one between picking and binding it. Returns the port.
fn start_server(bin_dir: &Path, dir: &Path, data_dir: &Path, account: Option<Account>) -> Result<u16> {
    let log = dir.join("server.log");
    let mut attempt = 1;
    loop {
        let port = free_port()?;
        let log_start = fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
        let mut cmd = Command::new(bin_dir.join("pg_ctl"));
        cmd.arg("start")
            .arg("-D")
            .arg(data_dir)
            .arg("-l")
            .arg(&log)
            .args([
                "-w",
                "-t",
                &START_TIMEOUT.as_secs().to_string(),
                "-o",
                &format!("-p {port}"),
            ])
            .current_dir(dir);
        let Err(err) = run(run_as(&mut cmd, account), "pg_ctl start") else {
            return Ok(port);
        };
        let tail = log_tail(&log, log_start);
        if tail.contains("Address already in use") && attempt < PORT_ATTEMPTS {
            attempt += 1;
            continue;
        }
        return Err(HarnessError::StartFailed {
            data_dir: data_dir.to_owned(),
            reason: err.to_string(),
            log_tail: tail,
        });
    }
}

/// A port nobody listens on right now (the OS's pick for 127.0.0.1:0).
fn free_port() -> Result<u16> {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(HarnessError::io("picking a free port on 127.0.0.1"))
}

/// The last lines of the log written after byte `from`.
fn log_tail(log: &Path, from: u64) -> String {
    let Ok(bytes) = fs::read(log) else {
        return format!("(no log at {})", log.display());
    };
    let from = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[from..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// `value` quoted as an SQL (and postgresql.conf) string literal.
fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `value` as a libpq connection-string value, quoted when it has to be.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '\t', '\n', '=']) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted_when_needed() {
        assert_eq!(conninfo_value("app"), "app");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value(r"it's\"), r"'it\'s\\'");
    }

    #[test]
    fn sql_literals_double_quotes() {
        assert_eq!(sql_literal("o'neil"), "'o''neil'");
    }
}
