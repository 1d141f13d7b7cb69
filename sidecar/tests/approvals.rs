//! requireApproval end to end, locally: a real PostgreSQL, the sidecar with a directory of approval
//! requests, real clients. A held statement waits on its own connection and runs once a person sets
//! the request's phase — exactly as `kubectl patch --subresource=status` does in a cluster.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use common::*;
use dbward_sidecar::{
    approval::{ApprovalStore, local::DirStore},
    config::{self, runtime::RunOptions},
    guard::PolicyStore,
    mask::MaskKey,
};
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

const POLICY: &str = r#"
apiVersion: dbward.dev/v1alpha1
kind: AccessPolicy
metadata: {name: agent}
spec:
  connections: [orders]
  subjects: [{serviceAccount: {name: agent, namespace: demo}}]
  approval: {mode: MODE, timeout: TIMEOUT GRANT}
  rules:
    - {name: read, action: allow, operations: [select, transaction, set]}
    - {name: scratch, action: allow, operations: [insert, update, delete, ddl], tables: ["apr_*"]}
    - {name: bulk, action: requireApproval, operations: [update, delete], when: {missingWhere: true}, message: "deleting every row needs a person"}
"#;

struct Bed {
    proxy: TestProxy,
    /// The approvals directory, inside `_tmp`.
    dir: PathBuf,
    _tmp: TempDir,
}

fn policy(mode: &str, timeout: &str, grant: &str) -> String {
    let grant = if grant.is_empty() {
        String::new()
    } else {
        format!(", grantWindow: {grant}")
    };
    POLICY
        .replace("MODE", mode)
        .replace("TIMEOUT", timeout)
        .replace(" GRANT", &grant)
}

async fn bed(policy: &str, table: &str) -> Bed {
    let pg = dbward_testkit::shared();
    let yaml = format!("{}\n---\n{policy}", connection_yaml(pg, "  tls: {mode: disable}"));
    let cfg = config::parse_str(&yaml).unwrap();
    let store = Arc::new(PolicyStore::new(config::runtime::policies(&cfg).unwrap()));
    let tmp = TempDir::new(table);
    let dir = tmp.0.join("approvals");
    let approvals: Arc<dyn ApprovalStore> = Arc::new(DirStore::new(dir.clone()).unwrap());
    let opts = RunOptions {
        identity: "demo/agent".into(),
        ..RunOptions::default()
    };
    let proxy = start_proxy_edited(&yaml, opts, move |pc| {
        config::runtime::install_guard_with(
            pc,
            store,
            MaskKey::random().unwrap(),
            Some((approvals, Duration::from_millis(300))),
        )
    })
    .await;
    let d = direct().await;
    d.batch_execute(&format!(
        "drop table if exists {table}; create table {table} (id int); insert into {table} select generate_series(1, 5)"
    ))
    .await
    .unwrap();
    Bed {
        proxy,
        dir,
        _tmp: tmp,
    }
}

async fn direct() -> tokio_postgres::Client {
    let pg = dbward_testkit::shared();
    connect(&pg.conn_string(pg.app_user(), pg.app_password(), "shop"))
        .await
        .unwrap()
}

async fn rows(table: &str) -> i64 {
    direct()
        .await
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// A client that keeps the notices the server (and the sidecar) send it.
async fn noticed_client(
    conn: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notice(n) = m {
                let _ = tx.send(format!("{}|{}", n.message(), n.hint().unwrap_or("")));
            }
        }
    });
    (client, rx)
}

/// Sets a request's phase (and reason, when given) the way a person does: by editing its file.
fn decide(dir: &Path, name: &str, phase: &str, reason: &str) {
    let mut fields = vec![("phase", phase)];
    if !reason.is_empty() {
        fields.push(("reason", reason));
    }
    set_status(dir, name, &fields);
}

fn phase(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    doc["status"]["phase"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn a_held_statement_runs_once_approved() {
    let b = bed(&policy("wait", "1m", ""), "apr_wait_ok").await;
    let (c, mut notices) = noticed_client(&b.proxy.app()).await;
    let held = tokio::spawn(async move {
        let r = c.simple_query("delete from apr_wait_ok").await;
        (c, r)
    });
    let name = wait_for_request(&b.dir).await;
    let first = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        first.contains(&name) && first.contains("held for approval"),
        "{first}"
    );
    assert!(
        first.contains("approve"),
        "the notice says how to approve: {first}"
    );
    // Still held: nothing deleted, and a reminder arrives while it waits.
    let again = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(again.contains("still waiting"), "{again}");
    assert_eq!(rows("apr_wait_ok").await, 5);
    assert_eq!(phase(&b.dir, &name), "Pending");
    decide(&b.dir, &name, "Approved", "");
    let (c, r) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap();
    let msgs = r.unwrap();
    assert!(
        matches!(msgs.last(), Some(SimpleQueryMessage::CommandComplete(5))),
        "{msgs:?}"
    );
    assert_eq!(rows("apr_wait_ok").await, 0);
    // The session goes on, and the next such statement asks again.
    assert!(c.simple_query("select 1").await.is_ok());
}

#[tokio::test]
async fn a_denied_statement_fails_with_the_reason_and_never_runs() {
    let b = bed(&policy("wait", "1m", ""), "apr_wait_no").await;
    let c = connect(&b.proxy.app()).await.unwrap();
    // Extended protocol, inside a transaction.
    c.batch_execute("begin").await.unwrap();
    let held = tokio::spawn(async move {
        let r = c.execute("delete from apr_wait_no", &[]).await;
        (c, r)
    });
    let name = wait_for_request(&b.dir).await;
    decide(&b.dir, &name, "Denied", "not during business hours");
    let (c, r) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap();
    let e = r.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains("not during business hours") && msg.contains(&name),
        "{msg}"
    );
    c.batch_execute("rollback").await.unwrap();
    assert_eq!(rows("apr_wait_no").await, 5);
}

#[tokio::test]
async fn nobody_deciding_times_out_and_expires_the_request() {
    let b = bed(&policy("wait", "1s", ""), "apr_wait_late").await;
    let c = connect(&b.proxy.app()).await.unwrap();
    let e = c.simple_query("delete from apr_wait_late").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("57014"), "{e}");
    let name = wait_for_request(&b.dir).await;
    assert_eq!(phase(&b.dir, &name), "Expired");
    assert_eq!(rows("apr_wait_late").await, 5);
    assert!(c.simple_query("select 1").await.is_ok());
}

#[tokio::test]
async fn cancelling_or_leaving_withdraws_the_request() {
    let b = bed(&policy("wait", "1m", ""), "apr_wait_cancel").await;
    let c = connect(&b.proxy.app()).await.unwrap();
    let token = c.cancel_token();
    let held = tokio::spawn(async move {
        let r = c.simple_query("delete from apr_wait_cancel").await;
        (c, r)
    });
    let name = wait_for_request(&b.dir).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (c, r) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap();
    let e = r.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("57014"), "{e}");
    assert_eq!(phase(&b.dir, &name), "Expired");
    // Approving the withdrawn request afterwards runs nothing.
    assert!(c.simple_query("select 1").await.is_ok());
    assert_eq!(rows("apr_wait_cancel").await, 5);

    // A client that goes away while held withdraws its request too.
    std::fs::remove_file(b.dir.join(format!("{name}.yaml"))).unwrap();
    let mut raw = Raw::startup(b.proxy.addr, &[("user", "app"), ("database", "orders")], None).await;
    raw.send(&query("delete from apr_wait_cancel")).await;
    let name = wait_for_request(&b.dir).await;
    drop(raw);
    for _ in 0..200 {
        if phase(&b.dir, &name) == "Expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(phase(&b.dir, &name), "Expired");
    assert_eq!(rows("apr_wait_cancel").await, 5);
}

#[tokio::test]
async fn reject_mode_fails_at_once_then_runs_the_approved_statement_once() {
    let b = bed(&policy("reject", "1m", ""), "apr_reject").await;
    let c = connect(&b.proxy.app()).await.unwrap();
    let e = c.simple_query("delete from apr_reject").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    let name = wait_for_request(&b.dir).await;
    assert!(e.as_db_error().unwrap().message().contains(&name), "{e}");
    // Asking again while it is pending reuses the request.
    let _ = c.simple_query("delete from apr_reject").await.unwrap_err();
    assert_eq!(requests(&b.dir).len(), 1);
    decide(&b.dir, &name, "Approved", "");
    // Another statement is not covered by the approval.
    let e = c
        .simple_query("delete from apr_reject as other")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    let before = requests(&b.dir).len();
    let msgs = c.simple_query("delete from apr_reject").await.unwrap();
    assert!(
        matches!(msgs.last(), Some(SimpleQueryMessage::CommandComplete(5))),
        "{msgs:?}"
    );
    // Once: the same statement asks again.
    let e = c.simple_query("delete from apr_reject").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    assert!(requests(&b.dir).len() > before);
}

#[tokio::test]
async fn a_pipelined_batch_waits_whole_and_keeps_its_order() {
    let b = bed(&policy("wait", "1m", ""), "apr_pipe").await;
    let c = Arc::new(connect(&b.proxy.app()).await.unwrap());
    let (c1, c2) = (c.clone(), c.clone());
    // tokio-postgres pipelines concurrent queries on one connection.
    let first = tokio::spawn(async move { c1.execute("delete from apr_pipe", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = tokio::spawn(async move { c2.query_one("select count(*) from apr_pipe", &[]).await });
    let name = wait_for_request(&b.dir).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "a statement sent after the held one must wait behind it"
    );
    decide(&b.dir, &name, "Approved", "");
    assert_eq!(first.await.unwrap().unwrap(), 5);
    let n: i64 = second.await.unwrap().unwrap().get(0);
    assert_eq!(n, 0, "the later statement ran after the held one");
}

#[tokio::test]
async fn a_grant_window_lets_the_same_bound_statement_run_until_it_closes() {
    const WINDOW: Duration = Duration::from_secs(4);
    let b = bed(&policy("reject", "1m", "4s"), "apr_window").await;
    let c = connect(&b.proxy.app()).await.unwrap();
    // Extended protocol: the approval covers this statement with these parameters.
    let stmt = "update apr_window set id = id + $1";
    let e = c.execute(stmt, &[&1i32]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    let name = wait_for_request(&b.dir).await;
    assert!(e.as_db_error().unwrap().message().contains(&name), "{e}");
    decide(&b.dir, &name, "Approved", "");
    let decided = std::time::Instant::now();
    // Inside the window the grant is not used up: the statement runs again and again.
    assert_eq!(c.execute(stmt, &[&1i32]).await.unwrap(), 5);
    assert_eq!(c.execute(stmt, &[&1i32]).await.unwrap(), 5);
    // Other parameters are another statement.
    let e = c.execute(stmt, &[&2i32]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    let total: i64 = direct()
        .await
        .query_one("select sum(id)::int8 from apr_window", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total,
        15 + 2 * 5,
        "both approved runs happened, the other did not"
    );
    // Once the window has closed the same statement asks anew.
    tokio::time::sleep(
        (decided + WINDOW + Duration::from_millis(300)).saturating_duration_since(std::time::Instant::now()),
    )
    .await;
    let e = c.execute(stmt, &[&1i32]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(
        !message.contains(&name),
        "a new request, not the closed grant: {message}"
    );
    assert_eq!(phase(&b.dir, &name), "Approved", "the used grant stays on record");
}
