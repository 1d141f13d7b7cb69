//! The session journal end to end: a real PostgreSQL, the sidecar with policies, approvals and a
//! journal directory, real clients. Every statement, decision, approval and result is on record, each
//! before the client sees the ReadyForQuery that ends it; parameters and masked values never are.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use common::*;
use dbward_sidecar::{
    approval::{ApprovalStore, local::DirStore},
    config::{self, runtime::RunOptions},
    guard::PolicyStore,
    journal::{Journal, JournalConfig, replay},
    mask::MaskKey,
};
use serde_json::Value;

const POLICY: &str = r#"
apiVersion: dbward.dev/v1alpha1
kind: AccessPolicy
metadata: {name: agent, namespace: demo}
spec:
  connections: [orders]
  subjects: [{serviceAccount: {name: agent, namespace: demo}}]
  approval: {mode: wait, timeout: 1m}
  rules:
    - {name: read, action: allow, operations: [select, transaction, set]}
    - {name: scratch, action: allow, operations: [insert, update, delete], tables: ["jr_*"]}
    - {name: bulk, action: requireApproval, operations: [delete], when: {missingWhere: true}}
    - {name: no-ddl, action: deny, operations: [ddl]}
  masking:
    - {columns: ["public.jr_people.email"], strategy: redact}
"#;

struct Bed {
    proxy: TestProxy,
    journal_dir: std::path::PathBuf,
    approvals: std::path::PathBuf,
    journal: Arc<Journal>,
    _tmp: TempDir,
}

async fn bed(label: &str, journal_dir: Option<std::path::PathBuf>) -> Bed {
    let pg = dbward_testkit::shared();
    let yaml = format!("{}\n---\n{POLICY}", connection_yaml(pg, "  tls: {mode: disable}"));
    let cfg = config::parse_str(&yaml).unwrap();
    let store = Arc::new(PolicyStore::new(config::runtime::policies(&cfg).unwrap()));
    let tmp = TempDir::new(label);
    let approvals = tmp.0.join("approvals");
    let journal_dir = journal_dir.unwrap_or_else(|| tmp.0.join("journal"));
    let journal = Journal::open(JournalConfig {
        dir: Some(journal_dir.clone()),
        sync_interval: Duration::from_millis(20),
        ..JournalConfig::default()
    })
    .unwrap();
    let store_dir: Arc<dyn ApprovalStore> = Arc::new(DirStore::new(approvals.clone()).unwrap());
    let opts = RunOptions {
        identity: "demo/agent".into(),
        ..RunOptions::default()
    };
    let j = journal.clone();
    let proxy = start_proxy_edited(&yaml, opts, move |pc| {
        pc.shared.journal = Some(j);
        config::runtime::install_guard_with(
            pc,
            store,
            MaskKey::random().unwrap(),
            Some((store_dir, Duration::from_secs(30))),
        )
    })
    .await;
    Bed {
        proxy,
        journal_dir,
        approvals,
        journal,
        _tmp: tmp,
    }
}

async fn direct() -> tokio_postgres::Client {
    let pg = dbward_testkit::shared();
    connect(&pg.conn_string(pg.app_user(), pg.app_password(), "shop"))
        .await
        .unwrap()
}

/// Every event in the journal directory, as written so far (no waiting, no sync).
fn events(dir: &Path) -> Vec<Value> {
    let files = replay::segments(&[dir.to_owned()]).unwrap();
    let mut out = Vec::new();
    let stats = replay::read_events(&files, |e, _| {
        out.push(Value::Object(e.clone()));
        Ok(())
    })
    .unwrap();
    assert_eq!(stats.skipped, 0, "every line is a whole event");
    out
}

fn raw_journal(dir: &Path) -> String {
    let mut all = String::new();
    for f in replay::segments(&[dir.to_owned()]).unwrap() {
        all.push_str(&std::fs::read_to_string(f).unwrap());
    }
    all
}

fn of<'a>(events: &'a [Value], session: &str, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["session"] == session && e["event"] == kind)
        .collect()
}

fn result_of<'a>(events: &'a [Value], session: &str, seq: u64) -> Option<&'a Value> {
    of(events, session, "result")
        .into_iter()
        .find(|e| e["seq"] == seq)
}

fn statement_with<'a>(events: &'a [Value], session: &str, text: &str) -> &'a Value {
    of(events, session, "statement")
        .into_iter()
        .find(|e| e["text"].as_str().unwrap().contains(text))
        .unwrap_or_else(|| panic!("no statement {text:?} in {events:#?}"))
}

#[tokio::test]
async fn every_statement_and_its_result_are_recorded_before_the_client_sees_them_end() {
    let d = direct().await;
    d.batch_execute(
        "drop table if exists jr_people; create table jr_people (id int, email text);
         insert into jr_people values (1, 'ann@example.com'), (2, 'bob@example.com'), (3, 'cy@example.com')",
    )
    .await
    .unwrap();
    let b = bed("journal-basic", None).await;
    let c = connect(&b.proxy.app()).await.unwrap();

    // A simple query: on record, with its result, as soon as the client has it.
    let rows = c
        .simple_query("select id, email from jr_people order by id")
        .await
        .unwrap();
    let n = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(n, 3);
    let ev = events(&b.journal_dir);
    let start = ev.iter().find(|e| e["event"] == "sessionStart").unwrap();
    let session = start["session"].as_str().unwrap().to_owned();
    assert_eq!(start["connection"], "orders");
    assert_eq!(start["caller"]["subject"], "system:serviceaccount:demo:agent");
    assert_eq!(start["caller"]["serviceAccount"], "demo/agent");
    let s = statement_with(&ev, &session, "select id, email from jr_people");
    assert_eq!(s["decision"], "allow");
    assert_eq!(s["protocol"], "simple");
    assert_eq!(s["rule"], "demo/agent/read");
    let r = result_of(&ev, &session, s["seq"].as_u64().unwrap()).expect("the result is on record already");
    assert_eq!(r["status"], "ok");
    assert_eq!(r["rows"], 3);
    assert_eq!(r["command"], "SELECT");
    assert!(r["bytes"].as_u64().unwrap() > 30, "{r}");

    // The extended protocol with a parameter: its count is recorded, never its value.
    let secret = "very-secret-parameter-4711";
    let n = c
        .query("select count(*) from jr_people where email <> $1", &[&secret])
        .await
        .unwrap();
    assert_eq!(n.len(), 1);
    let ev = events(&b.journal_dir);
    let s = statement_with(&ev, &session, "where email <> $1");
    assert_eq!(s["protocol"], "extended");
    assert_eq!(s["params"], 1);
    let r = result_of(&ev, &session, s["seq"].as_u64().unwrap()).unwrap();
    assert_eq!((r["status"].as_str(), r["rows"].as_u64()), (Some("ok"), Some(1)));

    // A refusal: the rule and the error the client got.
    let e = c.simple_query("create table jr_nope (x int)").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    let ev = events(&b.journal_dir);
    let s = statement_with(&ev, &session, "create table jr_nope");
    assert_eq!(s["decision"], "deny");
    assert_eq!(s["rule"], "demo/agent/no-ddl");
    assert_eq!(s["error"]["code"], "42501");
    assert!(result_of(&ev, &session, s["seq"].as_u64().unwrap()).is_none());

    // A server error: recorded as the result's error.
    let e = c.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("22012"));
    let ev = events(&b.journal_dir);
    let s = statement_with(&ev, &session, "select 1/0");
    let r = result_of(&ev, &session, s["seq"].as_u64().unwrap()).unwrap();
    assert_eq!(r["status"], "error");
    assert_eq!(r["error"]["code"], "22012");

    // A held statement: the request, who decided, how long it waited.
    let c2 = connect(&b.proxy.app()).await.unwrap();
    c2.batch_execute("insert into jr_people values (4, 'dee@example.com')")
        .await
        .unwrap();
    let held = tokio::spawn(async move {
        let r = c2.simple_query("delete from jr_people").await;
        (c2, r)
    });
    let name = wait_for_request(&b.approvals).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    set_status(
        &b.approvals,
        &name,
        &[("phase", "Approved"), ("decidedBy", "alice")],
    );
    let (c2, r) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap();
    r.unwrap();
    drop(c2);
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ev = events(&b.journal_dir);
    let s = ev
        .iter()
        .find(|e| e["event"] == "statement" && e["text"] == "delete from jr_people")
        .unwrap();
    let held_session = s["session"].as_str().unwrap();
    assert_ne!(held_session, session);
    assert_eq!(s["decision"], "requireApproval");
    assert_eq!(s["rule"], "demo/agent/bulk");
    assert_eq!(s["approval"]["request"], name.as_str());
    assert_eq!(s["approval"]["outcome"], "approved");
    let stages: Vec<&str> = of(&ev, held_session, "approval")
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["requested", "approved"]);
    let approved = of(&ev, held_session, "approval")[1];
    assert!(approved["waitedMs"].as_u64().unwrap() >= 200, "{approved}");
    assert_eq!(approved["decidedBy"], "alice", "{approved}");
    let r = result_of(&ev, held_session, s["seq"].as_u64().unwrap()).unwrap();
    assert_eq!(
        (r["command"].as_str(), r["rows"].as_u64()),
        (Some("DELETE"), Some(4))
    );

    // Both sessions ended on record; statements are numbered 1, 2, ...
    for sid in [session.as_str(), held_session] {
        let end = of(&ev, sid, "sessionEnd");
        assert_eq!(end.len(), 1, "{sid}");
        let seqs: Vec<u64> = of(&ev, sid, "statement")
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert_eq!(end[0]["statements"], seqs.len() as u64);
    }

    // Never in the journal: the parameter, the rows' values (masked or not).
    let raw = raw_journal(&b.journal_dir);
    assert!(!raw.contains(secret));
    for value in ["ann@example.com", "bob@example.com", "cy@example.com"] {
        assert!(!raw.contains(value), "{value} is in the journal");
    }

    // replay shows the session.
    let mut out = Vec::new();
    replay::replay(
        std::slice::from_ref(&b.journal_dir),
        &replay::ReplayOptions {
            session: Some(held_session.to_owned()),
            json: false,
        },
        &mut out,
    )
    .unwrap();
    let t = String::from_utf8(out).unwrap();
    assert!(t.contains(&format!("approval {name} approved")), "{t}");
    assert!(t.contains("HELD  delete from jr_people"), "{t}");
    assert!(t.contains("DELETE, 4 rows"), "{t}");
    drop(b.journal);
}

#[tokio::test]
async fn a_failed_batch_records_the_failed_statement_and_the_skipped_ones() {
    let b = bed("journal-batch", None).await;
    let mut raw = Raw::startup(b.proxy.addr, &[("user", "app"), ("database", "shop")], None).await;
    let mut batch = Vec::new();
    for sql in ["select 1", "select 1/0", "select 2"] {
        batch.extend(parse("", sql));
        batch.extend(bind("", "", &[]));
        batch.extend(execute(""));
    }
    batch.extend(sync());
    raw.send(&batch).await;
    let msgs = raw.until_ready(1).await;
    assert!(any_message_contains(&msgs, "division by zero"));
    let ev = events(&b.journal_dir);
    let session = ev.iter().find(|e| e["event"] == "sessionStart").unwrap()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let statuses: Vec<(String, String)> = of(&ev, &session, "result")
        .iter()
        .map(|r| {
            let seq = r["seq"].as_u64().unwrap();
            let text = of(&ev, &session, "statement")
                .into_iter()
                .find(|s| s["seq"] == seq)
                .unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned();
            (text, r["status"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("select 1".to_owned(), "ok".to_owned()),
            ("select 1/0".to_owned(), "error".to_owned()),
            ("select 2".to_owned(), "skipped".to_owned()),
        ]
    );
}

/// A full disk: the session whose records cannot be written ends, new sessions are refused, and
/// both work again once there is room. Needs root (a tiny tmpfs).
#[tokio::test]
async fn a_journal_that_cannot_be_written_refuses_sessions_until_it_can() {
    if !nix_is_root() {
        eprintln!("SKIPPED: needs root to mount a small tmpfs for the journal");
        return;
    }
    let tmp = TempDir::new("journal-full");
    let mount = tmp.0.join("small");
    std::fs::create_dir(&mount).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let b = bed("journal-full-bed", Some(mount.join("journal"))).await;
    let c = connect(&b.proxy.app()).await.unwrap();
    c.simple_query("select 1").await.unwrap();
    // Fill the disk.
    let filler = mount.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 512 * 1024]);
    let long = format!("select '{}'", "x".repeat(8 * 1024));
    let mut ended = None;
    for _ in 0..64 {
        match c.simple_query(&long).await {
            Ok(_) => continue,
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
    }
    let e = ended.expect("the session ends once its records cannot be written");
    let text = format!("{e:?}");
    assert!(code(&e).as_deref() == Some("58030") || c.is_closed(), "{text}");
    assert!(!b.journal.healthy());
    // A new session is refused while the journal cannot be written.
    let refused = connect(&b.proxy.app()).await;
    let Err(e) = refused else {
        panic!("a session started while the journal could not be written")
    };
    assert_eq!(code(&e).as_deref(), Some("58030"), "{e:?}");
    // Room again: the probe finds it and sessions work.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..100 {
        if b.journal.healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.journal.healthy(), "healthy again once there is room");
    let c = connect(&b.proxy.app()).await.unwrap();
    c.simple_query("select 1").await.unwrap();
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
