//! A table-driven corpus of statements and the decision AccessPolicy gives each one, run end to end:
//! a real PostgreSQL with a schema of the corpus's own, the sidecar with the policy engine in front of it,
//! and every statement sent as a simple query (raw protocol) and, when it is a single statement, again
//! through the extended protocol (tokio-postgres: Parse, Bind, Execute).
//!
//! The expectations are written from the policy below and the documented semantics (DESIGN §3,
//! docs/sidecar.md "Policy"), not from what the sidecar answers. What the sidecar refuses is told apart
//! from what PostgreSQL refuses: the sidecar's refusals are SQLSTATE 42501 ErrorResponses of its own
//! making (message starting with "dbward", no routine field), while every error PostgreSQL raises names
//! the server routine that raised it — even its own 42501 "permission denied" errors.
//!
//! Each statement runs on a fresh session, by default inside a transaction that is rolled back; the
//! few that cannot (VACUUM, transaction control) or whose effect is checked afterwards run bare, after
//! which the corpus's data is restored. On failure the test lists every statement whose decision
//! differs, not just the first.
#![allow(clippy::unwrap_used)]

#[path = "decisions/cases.rs"]
mod cases;
mod common;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use common::*;
use dbward_sidecar::{
    config::{self, runtime::RunOptions},
    guard::PolicyStore,
    mask::MaskKey,
};
use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::SimpleQueryMessage;

/// The corpus's objects, created once (as `app`, the owner of database `shop`) before the sidecar starts.
const FIXTURE: &str = r#"
drop schema if exists crm cascade;
drop schema if exists vault cascade;
drop schema if exists scratch cascade;
create schema crm;
create schema vault;
create schema scratch;
create table crm.customers (
    id int primary key, name text not null, email text not null, ssn text, tier text not null default 'bronze');
create table crm.orders (
    id serial primary key, customer_id int not null references crm.customers (id),
    amount numeric(10, 2) not null, status text not null default 'new', note text);
create index orders_status_idx on crm.orders (status);
create table crm.imports (id int, payload text);
create table crm."Mixed Case" ("Value" int);
create view crm.customer_directory as select id, name, email from crm.customers;
create view crm.order_totals as select customer_id, sum(amount) as total from crm.orders group by customer_id;
create materialized view crm.order_stats as select status, count(*) as n from crm.orders group by status;
create sequence crm.invoice_no start 1000;
create function crm.order_count(cid int) returns bigint language sql stable
    as $$ select count(*) from crm.orders where customer_id = cid $$;
create procedure crm.bump(oid int) language sql
    as $$ update crm.orders set amount = amount + 1 where id = oid $$;
create table vault.api_keys (id int primary key, service text not null, key text not null);
create table scratch.notes (id int, body text);
"#;

/// The corpus's rows; restored after every statement that runs outside a rolled-back transaction.
const RESET: &str = r#"
set lock_timeout = '20s';
truncate crm.customers, crm.orders, crm.imports, crm."Mixed Case", vault.api_keys, scratch.notes
    restart identity cascade;
insert into crm.customers values
    (1, 'Ada', 'ada@example.com', '111-11-1111', 'gold'),
    (2, 'Brook', 'brook@example.com', '222-22-2222', 'silver'),
    (3, 'Cyd', 'cyd@example.com', '333-33-3333', 'bronze');
insert into crm.orders (customer_id, amount, status) values
    (1, 10, 'new'), (1, 20, 'paid'), (2, 30, 'new'), (3, 40, 'cancelled');
insert into crm."Mixed Case" values (7);
insert into vault.api_keys values (1, 'stripe', 'sk_live_dbward_secret'), (2, 'github', 'ghp_dbward_secret');
insert into scratch.notes values (1, 'first');
select setval('crm.invoice_no', 1000, false);
reset lock_timeout;
"#;

/// The one caller's policy: read anything except the vault; write some crm tables and anything in
/// scratch; bulk changes and truncation need approval; no schema, privilege or anonymous-code changes;
/// session settings, transactions and utility statements are fine; emails and SSNs are masked.
const POLICY: &str = r#"
apiVersion: dbward.dev/v1alpha1
kind: AccessPolicy
metadata: {name: corpus}
spec:
  connections: [orders]
  subjects: [{serviceAccount: {name: agent, namespace: demo}}]
  rules:
    - {name: read, action: allow, operations: [select, copyOut]}
    - name: vault
      action: deny
      operations: [select, copyOut, insert, update, delete, merge, copyIn, truncate, ddl]
      tables: ["vault.*"]
      message: "dbward policy: the vault schema is off limits"
    - {name: crm-writes, action: allow, operations: [insert, update], tables: [crm.orders, crm.customers, crm.invoice_no]}
    - {name: imports, action: allow, operations: [insert, copyIn], tables: [crm.imports]}
    - {name: merge-orders, action: allow, operations: [merge], tables: [crm.orders]}
    - {name: prune-orders, action: allow, operations: [delete], tables: [crm.orders]}
    - {name: bulk, action: requireApproval, operations: [update, delete], when: {missingWhere: true}}
    - {name: truncate, action: requireApproval, operations: [truncate], message: "dbward policy: truncation needs a second pair of eyes"}
    - {name: scratch, action: allow, operations: [insert, update, delete, ddl], tables: ["scratch.*"]}
    - {name: no-schema-changes, action: deny, operations: [ddl], tables: ["crm.*", "public.*", "vault.*"], message: "dbward policy: agents may not change the schema"}
    - {name: no-privileges, action: deny, operations: [grant, role], message: "dbward policy: agents may not change privileges"}
    - {name: no-code, action: deny, operations: [do], message: "dbward policy: anonymous code blocks are not allowed"}
    - {name: session, action: allow, operations: [set, transaction, utility]}
  masking:
    - {columns: ["*.customers.email"], strategy: email}
    - {columns: ["*.customers.ssn"], strategy: redact}
"#;

/// Values that must never come back in clear from anything the sidecar lets through (rows, COPY data,
/// error and notice texts): the masked columns' values and the vault's keys.
const SECRETS: &[&str] = &[
    "ada@example.com",
    "brook@example.com",
    "cyd@example.com",
    "111-11-1111",
    "222-22-2222",
    "333-33-3333",
    "customer1@example.com",
    "123-45-6789",
    "sk_live_dbward_secret",
    "ghp_dbward_secret",
];

/// The session's search_path, set at startup (a harmless startup parameter the sidecar passes).
const OPTIONS: &str = "-c search_path=crm,public";
/// How long one statement may take before the run counts as broken.
const TIMEOUT: Duration = Duration::from_secs(20);
/// What the sidecar's refusal of a statement that copies masked data says.
const MASKED_MARK: &str = "copy masked data";

/// The decision a statement must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// dbward lets it through and it runs without error.
    Allow,
    /// dbward lets it through; PostgreSQL itself then fails it with this SQLSTATE.
    ServerError(&'static str),
    /// dbward refuses it (42501); the message contains this text.
    Deny(&'static str),
    /// dbward holds it for approval (for now: refused with 42501, saying approval is required).
    Approval,
    /// dbward refuses it because it would copy masked data into a table or setting.
    Masked,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allow => f.write_str("allow, runs"),
            Expect::ServerError(c) => write!(f, "allow, then PostgreSQL fails it with {c}"),
            Expect::Deny(m) => write!(f, "deny, message containing {m:?}"),
            Expect::Approval => f.write_str("requireApproval"),
            Expect::Masked => f.write_str("deny: copies masked data"),
        }
    }
}

/// How a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inside BEGIN ... ROLLBACK.
    Tx,
    /// On its own; the corpus's rows are restored afterwards.
    Bare,
}

/// One statement (or query string) and its expected decision.
#[derive(Debug, Clone)]
pub struct Case {
    pub sql: &'static str,
    pub expect: Expect,
    pub mode: Mode,
    /// Statements sent first on the same session (each must succeed).
    pub setup: &'static [&'static str],
    /// Rows for COPY ... FROM STDIN.
    pub data: Option<&'static str>,
    /// After a bare case: a query on a direct connection and its expected first value.
    pub check: Option<(&'static str, &'static str)>,
    /// Texts the simple-protocol result must contain (rows, COPY data).
    pub shows: &'static [&'static str],
    /// Whether to also run it through the extended protocol (single statements only).
    pub extended: bool,
}

pub fn case(sql: &'static str, expect: Expect) -> Case {
    Case {
        sql,
        expect,
        mode: Mode::Tx,
        setup: &[],
        data: None,
        check: None,
        shows: &[],
        extended: true,
    }
}

impl Case {
    pub fn bare(mut self) -> Self {
        self.mode = Mode::Bare;
        self
    }

    pub fn setup(mut self, setup: &'static [&'static str]) -> Self {
        self.setup = setup;
        self
    }

    pub fn data(mut self, data: &'static str) -> Self {
        self.data = Some(data);
        self
    }

    /// Runs bare and checks the effect (or its absence) on a direct connection.
    pub fn check(mut self, query: &'static str, value: &'static str) -> Self {
        self.mode = Mode::Bare;
        self.check = Some((query, value));
        self
    }

    pub fn shows(mut self, texts: &'static [&'static str]) -> Self {
        self.shows = texts;
        self
    }

    pub fn simple_only(mut self) -> Self {
        self.extended = false;
        self
    }
}

/// What came back for a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Observed {
    /// No error.
    Ran,
    /// An error raised by PostgreSQL (it names its routine).
    ServerError { code: String, message: String },
    /// An error of the sidecar's own making.
    Refused { code: String, message: String },
    /// The session or client failed (timeout, closed connection, protocol trouble).
    Broken(String),
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Ran => f.write_str("ran"),
            Observed::ServerError { code, message } => write!(f, "PostgreSQL error {code}: {message}"),
            Observed::Refused { code, message } => write!(f, "refused by the sidecar, {code}: {message}"),
            Observed::Broken(why) => write!(f, "broken: {why}"),
        }
    }
}

impl Observed {
    fn error(code: &str, message: &str, routine: Option<&str>) -> Self {
        let (code, message) = (code.to_owned(), message.to_owned());
        match routine {
            Some(_) => Observed::ServerError { code, message },
            None => Observed::Refused { code, message },
        }
    }

    fn allowed(&self) -> bool {
        matches!(self, Observed::Ran | Observed::ServerError { .. })
    }
}

/// Whether `observed` is the decision `expect` asks for.
fn agrees(expect: Expect, observed: &Observed) -> bool {
    let refusal = |code: &str, message: &str| code == "42501" && message.starts_with("dbward");
    match (expect, observed) {
        (Expect::Allow, Observed::Ran) => true,
        (Expect::ServerError(want), Observed::ServerError { code, .. }) => code == want,
        (Expect::Deny(text), Observed::Refused { code, message }) => {
            refusal(code, message)
                && message.contains(text)
                && !message.contains("approval")
                && !message.contains(MASKED_MARK)
        }
        (Expect::Approval, Observed::Refused { code, message }) => {
            refusal(code, message) && message.contains("approval")
        }
        (Expect::Masked, Observed::Refused { code, message }) => {
            refusal(code, message) && message.contains(MASKED_MARK)
        }
        _ => false,
    }
}

/// One run of a case.
struct Run {
    observed: Observed,
    /// Everything that came back as text: rows, COPY data, error and notice messages.
    output: String,
}

// ---- The simple protocol, on a raw connection ----

async fn run_simple(addr: SocketAddr, case: &Case) -> Run {
    let params = [("user", "app"), ("database", "shop"), ("options", OPTIONS)];
    let mut raw = Raw::startup(addr, &params, None).await;
    let mut ignored = String::new();
    let mut before: Vec<&str> = Vec::new();
    if case.mode == Mode::Tx {
        before.push("begin");
    }
    before.extend(case.setup);
    for sql in before {
        let o = exchange(&mut raw, sql, None, &mut ignored).await;
        if o != Observed::Ran {
            return Run {
                observed: Observed::Broken(format!("setup {sql:?}: {o}")),
                output: ignored,
            };
        }
    }
    let mut output = String::new();
    let observed = exchange(&mut raw, case.sql, case.data, &mut output).await;
    if !matches!(observed, Observed::Broken(_)) {
        exchange(&mut raw, "rollback", None, &mut ignored).await;
    }
    Run { observed, output }
}

/// Sends one Query and reads up to ReadyForQuery, answering COPY FROM STDIN with `data`. The first
/// error decides.
async fn exchange(raw: &mut Raw, sql: &str, data: Option<&str>, out: &mut String) -> Observed {
    raw.send(&query(sql)).await;
    let mut first_error = None;
    loop {
        let m = match tokio::time::timeout(TIMEOUT, raw.read()).await {
            Err(_) => return Observed::Broken("no ReadyForQuery in time".into()),
            Ok(None) => return Observed::Broken("the connection closed".into()),
            Ok(Some(m)) => m,
        };
        match m.tag {
            b'E' => {
                let (code, message) = (m.code().unwrap_or_default(), m.field(b'M').unwrap_or_default());
                for f in [b'M', b'D', b'H'] {
                    out.push_str(&m.field(f).unwrap_or_default());
                    out.push('\n');
                }
                first_error.get_or_insert(Observed::error(&code, &message, m.field(b'R').as_deref()));
            }
            b'N' => {
                out.push_str(&m.field(b'M').unwrap_or_default());
                out.push('\n');
            }
            b'D' => push_data_row(&m.body, out),
            b'd' => out.push_str(&String::from_utf8_lossy(&m.body)),
            b'G' => {
                let mut reply = Vec::new();
                if let Some(d) = data {
                    reply.extend(frame(b'd', d.as_bytes()));
                }
                reply.extend(frame(b'c', b""));
                raw.send(&reply).await;
            }
            b'Z' => break,
            _ => {}
        }
    }
    first_error.unwrap_or(Observed::Ran)
}

/// A DataRow's text values, tab-separated, as one line.
fn push_data_row(body: &[u8], out: &mut String) {
    let Some(n) = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return;
    };
    let mut at = 2;
    for _ in 0..n {
        let Some(len) = body
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return;
        };
        at += 4;
        if let Ok(len) = usize::try_from(len) {
            let Some(value) = body.get(at..at + len) else {
                return;
            };
            out.push_str(&String::from_utf8_lossy(value));
            at += len;
        }
        out.push('\t');
    }
    out.push('\n');
}

// ---- The extended protocol, with tokio-postgres ----

fn client_conn(addr: SocketAddr) -> String {
    format!(
        "host=127.0.0.1 port={} user=app dbname=shop options='{OPTIONS}' connect_timeout=10",
        addr.port()
    )
}

async fn run_extended(addr: SocketAddr, case: &Case) -> Run {
    let client = match connect(&client_conn(addr)).await {
        Ok(c) => c,
        Err(e) => {
            return Run {
                observed: Observed::Broken(format!("connect: {e}")),
                output: String::new(),
            };
        }
    };
    let mut before: Vec<&str> = Vec::new();
    if case.mode == Mode::Tx {
        before.push("begin");
    }
    before.extend(case.setup);
    for sql in before {
        if let Err(e) = client.batch_execute(sql).await {
            return Run {
                observed: Observed::Broken(format!("setup {sql:?}: {e}")),
                output: String::new(),
            };
        }
    }
    let mut output = String::new();
    let observed = match tokio::time::timeout(TIMEOUT, extended(&client, case, &mut output)).await {
        Err(_) => Observed::Broken("timed out".into()),
        Ok(Ok(())) => Observed::Ran,
        Ok(Err(e)) => match e.as_db_error() {
            Some(db) => {
                output.push_str(db.message());
                output.push('\n');
                output.push_str(db.detail().unwrap_or_default());
                Observed::error(db.code().code(), db.message(), db.routine())
            }
            None => Observed::Broken(format!("client: {e}")),
        },
    };
    let _ = tokio::time::timeout(TIMEOUT, client.batch_execute("rollback")).await;
    Run { observed, output }
}

/// Runs the case's statement: Parse, Bind, Execute (COPY through tokio-postgres' copy API).
async fn extended(
    client: &tokio_postgres::Client,
    case: &Case,
    out: &mut String,
) -> Result<(), tokio_postgres::Error> {
    let lower = case.sql.to_ascii_lowercase();
    if lower.starts_with("copy") && lower.contains("from stdin") {
        let sink = client.copy_in::<_, Bytes>(case.sql).await?;
        futures_util::pin_mut!(sink);
        if let Some(d) = case.data {
            sink.send(Bytes::from_static(d.as_bytes())).await?;
        }
        sink.finish().await?;
    } else if lower.starts_with("copy") && lower.contains("to stdout") {
        let chunks: Vec<Bytes> = client.copy_out(case.sql).await?.try_collect().await?;
        out.push_str(&String::from_utf8_lossy(&chunks.concat()));
    } else {
        for row in client.query(case.sql, &[]).await? {
            for i in 0..row.len() {
                // Text columns only (tokio-postgres asks for binary results); enough for the secrets.
                if let Ok(Some(s)) = row.try_get::<_, Option<String>>(i) {
                    out.push_str(&s);
                    out.push('\t');
                }
            }
            out.push('\n');
        }
    }
    Ok(())
}

// ---- The harness ----

async fn direct() -> tokio_postgres::Client {
    let pg = dbward_testkit::shared();
    connect(&pg.conn_string(pg.app_user(), pg.app_password(), "shop"))
        .await
        .unwrap()
}

async fn first_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "(no row)".into())
}

async fn start_sidecar() -> TestProxy {
    let pg = dbward_testkit::shared();
    let yaml = format!("{}\n---\n{POLICY}", connection_yaml(pg, "  tls: {mode: disable}"));
    let cfg = config::parse_str(&yaml).unwrap();
    let store = Arc::new(PolicyStore::new(config::runtime::policies(&cfg).unwrap()));
    let opts = RunOptions {
        identity: "demo/agent".into(),
        ..RunOptions::default()
    };
    start_proxy_edited(&yaml, opts, move |pc| {
        config::runtime::install_guard(pc, store, MaskKey::random().unwrap())
    })
    .await
}

/// Compares one run with the case's expectations; every disagreement is added to `failures`.
async fn judge(
    n: usize,
    case: &Case,
    protocol: &str,
    run: &Run,
    direct: &tokio_postgres::Client,
    failures: &mut Vec<String>,
) {
    let mut problems = Vec::new();
    if !agrees(case.expect, &run.observed) {
        problems.push(format!(
            "expected: {}\n    observed: {}",
            case.expect, run.observed
        ));
    }
    if run.observed.allowed() {
        let asked = |s: &str| case.sql.contains(s) || case.setup.iter().any(|t| t.contains(s));
        for secret in SECRETS.iter().filter(|s| !asked(s)) {
            if run.output.contains(secret) {
                problems.push(format!("returned {secret:?} in clear"));
            }
        }
    }
    if protocol == "simple" && run.observed == Observed::Ran {
        for text in case.shows.iter().filter(|t| !run.output.contains(**t)) {
            problems.push(format!("result lacks {text:?}: {:?}", run.output));
        }
    }
    if let Some((query, want)) = case.check {
        let got = first_value(direct, query).await;
        if got != want {
            problems.push(format!("afterwards {query:?} gave {got:?}, expected {want:?}"));
        }
    }
    if case.mode == Mode::Bare {
        direct.batch_execute(RESET).await.unwrap();
    }
    if !problems.is_empty() {
        failures.push(format!(
            "#{n} [{protocol}] {}\n    {}",
            case.sql,
            problems.join("\n    ")
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_gets_the_decision_its_policy_gives() {
    let direct = direct().await;
    direct.batch_execute(FIXTURE).await.unwrap();
    direct.batch_execute(RESET).await.unwrap();
    let sidecar = start_sidecar().await;
    let cases = cases::cases();
    assert!(
        cases.len() >= 160,
        "the corpus has only {} statements",
        cases.len()
    );
    let mut failures = Vec::new();
    let (mut simple, mut extended) = (0, 0);
    for (n, case) in cases.iter().enumerate() {
        let run = run_simple(sidecar.addr, case).await;
        judge(n, case, "simple", &run, &direct, &mut failures).await;
        simple += 1;
        if case.extended {
            let run = run_extended(sidecar.addr, case).await;
            judge(n, case, "extended", &run, &direct, &mut failures).await;
            extended += 1;
        }
    }
    eprintln!(
        "{simple} statements through the simple protocol, {extended} through the extended protocol, {} disagreements",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} runs disagree with the expected decisions:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The classification the corpus relies on: PostgreSQL's own 42501 names its routine, the sidecar's
/// refusal does not, so "allowed by dbward, refused by the server" is never mistaken for a refusal.
#[tokio::test]
async fn server_and_sidecar_refusals_are_told_apart() {
    let direct = direct().await;
    let e = direct.simple_query("select pg_reload_conf()").await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(db.routine().is_some(), "{db:?}");
    assert!(!db.message().starts_with("dbward"));
}
