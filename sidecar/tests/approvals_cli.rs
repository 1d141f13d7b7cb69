//! `dbward-sidecar approve|deny NAME` and `dbward-sidecar approvals`, run as a person would, on a
//! directory a [`DirStore`] writes.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use common::TempDir;
use dbward_crds::{ApprovalPhase, Requester};
use dbward_sidecar::approval::{ApprovalStore, DirStore, NewRequest};

const BIN: &str = env!("CARGO_BIN_EXE_dbward-sidecar");

/// Runs the binary with `args` and no approvals or config from the environment.
fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DBWARD_APPROVALS")
        .env_remove("DBWARD_CONFIG")
        .env("USER", "carol")
        .env("DBWARD_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The uids this test runs as (the approver's, as the binary it starts runs as the same user).
fn our_uids() -> Vec<u32> {
    dbward_sidecar::approval::local::process_uids().unwrap()
}

fn request(statement: &str, fingerprint: &str) -> NewRequest {
    let ours = our_uids();
    NewRequest {
        connection: "orders".to_owned(),
        requester: Requester {
            service_account: Some("ci/agent".to_owned()),
            pod: Some("agent-0".to_owned()),
            subject: "system:serviceaccount:ci:agent".to_owned(),
            // Someone else: another local user sent the statement.
            uid: (1000..).find(|uid| !ours.contains(uid)),
        },
        statement: statement.to_owned(),
        fingerprint: fingerprint.to_owned(),
        rule: "ci/hold-deletes".to_owned(),
        timeout: Duration::from_secs(600),
    }
}

#[tokio::test]
async fn a_person_lists_approves_and_denies_held_statements() {
    let tmp = TempDir::new("approvals-cli");
    let dir = tmp.0.join("approvals");
    let dir_s = dir.to_str().unwrap();
    let store = DirStore::new(&dir).unwrap();
    let a = store
        .request(request("DELETE FROM customers WHERE id = 7", "a"))
        .await
        .unwrap();
    let b = store.request(request("DROP TABLE audit", "b")).await.unwrap();

    // The list: both pending, one line each under a header.
    let out = run(&["approvals", "--approvals", dir_s], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert_eq!(listing.lines().count(), 3, "{listing}");
    assert!(listing.starts_with("NAME "), "{listing}");
    for part in [
        &a.name,
        &b.name,
        "DELETE FROM customers WHERE id = 7",
        "system:serviceaccount:ci:agent",
    ] {
        assert!(listing.contains(part), "{part} in {listing}");
    }

    // Approve with the hint the waiting client is shown, word for word.
    let hint = store.approve_hint(&a.name);
    let words: Vec<&str> = hint.split(' ').collect();
    assert_eq!(words[0], "dbward-sidecar");
    let waiter = tokio::spawn(store.decided(&a.name));
    let out = run(&[&words[1..], &["--reason", "looks right"]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!(
            "{} approved by local:carol: DELETE FROM customers",
            a.name
        )),
        "{}",
        text(&out.stdout)
    );
    let d = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.phase, ApprovalPhase::Approved);
    assert_eq!(d.decided_by.as_deref(), Some("local:carol"));
    assert_eq!(d.reason.as_deref(), Some("looks right"));

    // Once decided, it stays decided.
    let out = run(&["deny", &a.name, "--approvals", dir_s], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is already Approved (by local:carol)"),
        "{}",
        text(&out.stderr)
    );

    // An unknown name: refused, listing what is pending.
    let out = run(&["approve", "orders-nosuchname", "--approvals", dir_s], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no approval request \"orders-nosuchname\""), "{err}");
    assert!(err.contains(&format!("pending: {}", b.name)), "{err}");
    let out = run(&["approve", "../../etc/passwd", "--approvals", dir_s], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not an approval request name"),
        "{}",
        text(&out.stderr)
    );

    // Deny, finding the directory next to the config file (from the environment).
    let config = tmp.0.join("dbward.yaml");
    let out = run(
        &["deny", &b.name, "--reason", "not in prod"],
        &[("DBWARD_CONFIG", &config)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry = store.get(&b.name).unwrap();
    assert_eq!(entry.status.phase, ApprovalPhase::Denied);
    assert_eq!(entry.status.reason.as_deref(), Some("not in prod"));

    // Nothing pending now; --all shows both with their phases.
    let out = run(&["approvals"], &[("DBWARD_APPROVALS", &dir)]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("no pending approval requests in "),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["approvals", "--all", "--config", config.to_str().unwrap()], &[]);
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(listing.lines().next().unwrap().contains("PHASE"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&a.name) && l.contains("Approved")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&b.name) && l.contains("Denied")),
        "{listing}"
    );

    // No directory named: a clear error.
    let out = run(&["approvals"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("--approvals DIR") && err.contains("--config FILE"),
        "{err}"
    );
}

#[tokio::test]
async fn the_requester_cannot_approve_its_own_statement() {
    let tmp = TempDir::new("approvals-cli-self");
    let dir = tmp.0.join("approvals");
    let dir_s = dir.to_str().unwrap();
    let store = DirStore::new(&dir).unwrap();
    // The directory belongs to someone else (the sidecar's user): the requester cannot edit the file,
    // so the uid check is what stops it. (Run as root, as CI does; chown needs it.)
    let other = (1000..).find(|uid| !our_uids().contains(uid));
    std::os::unix::fs::chown(&dir, other, None).expect("chown the approvals directory (run as root)");

    // Sent by a process of the user who now runs `approve`: refused, whatever $USER says.
    let mut own = request("DELETE FROM customers", "own");
    own.requester.uid = Some(our_uids()[0]);
    let a = store.request(own).await.unwrap();
    let before = std::fs::read(store.path_of(&a.name)).unwrap();
    let out = run(&["approve", &a.name, "--approvals", dir_s], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&a.name)
            && err.contains("cannot approve its own statement")
            && err.contains("someone else must"),
        "{err}"
    );
    assert!(text(&out.stdout).is_empty());
    assert_eq!(
        std::fs::read(store.path_of(&a.name)).unwrap(),
        before,
        "the file is untouched"
    );
    // Withdrawing it is allowed.
    let out = run(
        &[
            "deny",
            &a.name,
            "--approvals",
            dir_s,
            "--reason",
            "sent by mistake",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(store.get(&a.name).unwrap().status.phase, ApprovalPhase::Denied);

    // Sent under the approver's own name (a token whose subject is the local user): refused too.
    let mut named = request("DROP TABLE audit", "named");
    named.requester.subject = "local:carol".to_owned();
    let b = store.request(named).await.unwrap();
    let out = run(&["approve", &b.name, "--approvals", dir_s], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot approve its own statement"),
        "{}",
        text(&out.stderr)
    );
    // Another user approves it.
    let out = run(
        &["approve", &b.name, "--approvals", dir_s],
        &[("USER", Path::new("dave"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        store.get(&b.name).unwrap().status.decided_by.as_deref(),
        Some("local:dave")
    );
}
