//! The directory store with real files in a temporary directory.

mod retention;
mod sharing;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use dbward_crds::{ApprovalPhase, ApprovalRequestSpec, ApprovalRequestStatus, Document, Requester};

use super::*;
use crate::approval::{ApprovalStore, NewRequest, USED_AT_ANNOTATION, is_valid_name};

/// A unique directory under the system's temporary directory, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "dbward-approvals-{label}-{}-{}",
            std::process::id(),
            random_suffix().unwrap()
        ));
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const SQL: &str = "DELETE FROM customers\nWHERE id = 'o''brien' -- note: #1";

/// A Unix uid this test process does not run as: the requester, never the approver.
pub(crate) fn other_uid() -> u32 {
    let ours = process_uids().unwrap();
    (1000..).find(|uid| !ours.contains(uid)).unwrap()
}

fn new_request(subject: &str, fingerprint: &str) -> NewRequest {
    NewRequest {
        connection: "orders".to_owned(),
        requester: Requester {
            service_account: Some("ci/agent".to_owned()),
            pod: Some("agent-7d9f".to_owned()),
            subject: subject.to_owned(),
            uid: Some(other_uid()),
        },
        statement: SQL.to_owned(),
        fingerprint: fingerprint.to_owned(),
        rule: "ci/hold-deletes".to_owned(),
        timeout: Duration::from_secs(600),
    }
}

fn store(dir: &TempDir) -> DirStore {
    DirStore::new(&dir.0).unwrap()
}

/// Reads a request file as YAML text.
fn text(store: &DirStore, name: &str) -> String {
    fs::read_to_string(store.path_of(name)).unwrap()
}

/// Edits a request file the way a person would: parse, change, write back in place.
fn edit(path: &Path, f: impl FnOnce(&mut Document<ApprovalRequestSpec, ApprovalRequestStatus>)) {
    let mut doc: Document<ApprovalRequestSpec, ApprovalRequestStatus> =
        serde_saphyr::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    f(&mut doc);
    fs::write(path, serde_saphyr::to_string(&doc).unwrap()).unwrap();
}

fn set_phase(path: &Path, phase: ApprovalPhase, reason: Option<&str>) {
    edit(path, |doc| {
        let status = doc.status.get_or_insert_with(Default::default);
        status.phase = phase;
        status.reason = reason.map(str::to_owned);
    });
}

async fn within_a_second<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3), f)
        .await
        .expect("decided() did not resolve in time")
}

#[tokio::test]
async fn creates_a_pending_request_file_that_reads_as_a_document() {
    let dir = TempDir::new("create");
    let store = store(&dir);
    let before = SystemTime::now();
    let ticket = store
        .request(new_request("system:serviceaccount:ci:agent", "fp1"))
        .await
        .unwrap();
    assert!(!ticket.reused);
    assert!(is_valid_name(&ticket.name), "{}", ticket.name);
    assert!(ticket.name.starts_with("orders-"), "{}", ticket.name);
    assert!(ticket.expires_at >= before + Duration::from_secs(600));
    assert!(ticket.expires_at <= before + Duration::from_secs(602));

    let yaml = text(&store, &ticket.name);
    assert!(yaml.starts_with("# "), "a header says how to decide:\n{yaml}");
    assert!(yaml.contains(&store.approve_hint(&ticket.name)), "{yaml}");
    let doc: Document<ApprovalRequestSpec, ApprovalRequestStatus> = serde_saphyr::from_str(&yaml).unwrap();
    doc.validate().unwrap();
    assert_eq!(doc.api_version, "dbward.dev/v1alpha1");
    assert_eq!(doc.kind, "ApprovalRequest");
    assert_eq!(doc.metadata.name, ticket.name);
    assert_eq!(doc.spec.connection, "orders");
    assert_eq!(doc.spec.statement, SQL, "the statement round-trips exactly");
    assert_eq!(doc.spec.fingerprint, "fp1");
    assert_eq!(doc.spec.rule, "ci/hold-deletes");
    assert_eq!(
        doc.spec.requester,
        new_request("system:serviceaccount:ci:agent", "fp1").requester
    );
    assert_eq!(parse_rfc3339(&doc.spec.expires_at).unwrap(), ticket.expires_at);
    assert_eq!(doc.status.unwrap().phase, ApprovalPhase::Pending);
    let raw: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let created = raw["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(parse_rfc3339(created).is_ok(), "{created}");

    let meta = fs::metadata(store.path_of(&ticket.name)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&dir.0).unwrap().permissions().mode() & 0o777, 0o700);
    let leftovers: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn the_directory_is_created_with_parents() {
    let dir = TempDir::new("nested");
    let nested = dir.0.join("a/b/approvals");
    let store = DirStore::new(&nested).unwrap();
    assert!(nested.is_dir());
    assert_eq!(store.dir(), fs::canonicalize(&nested).unwrap());
    assert!(DirStore::open(dir.0.join("missing")).is_err());
}

#[tokio::test]
async fn an_identical_pending_request_is_reused() {
    let dir = TempDir::new("reuse");
    let store = store(&dir);
    let first = store.request(new_request("alice", "fp")).await.unwrap();
    let again = store.request(new_request("alice", "fp")).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.name, first.name);
    assert_eq!(again.expires_at, first.expires_at);
    // Also from another store (another process) on the same directory.
    let other = DirStore::new(&dir.0).unwrap();
    assert_eq!(
        other.request(new_request("alice", "fp")).await.unwrap().name,
        first.name
    );

    // Someone else, another statement, or another connection: a new request.
    let bob = store.request(new_request("bob", "fp")).await.unwrap();
    let other_fp = store.request(new_request("alice", "fp2")).await.unwrap();
    let mut other_conn = new_request("alice", "fp");
    other_conn.connection = "analytics".to_owned();
    let other_conn = store.request(other_conn).await.unwrap();
    for t in [&bob, &other_fp, &other_conn] {
        assert!(!t.reused);
        assert_ne!(t.name, first.name);
    }
    assert_eq!(store.list().unwrap().entries.len(), 4);

    // Not once it is decided.
    store
        .decide(&first.name, ApprovalPhase::Denied, "local:test", None)
        .unwrap();
    let after = store.request(new_request("alice", "fp")).await.unwrap();
    assert!(!after.reused);
    assert_ne!(after.name, first.name);
}

#[tokio::test]
async fn a_pending_request_past_its_expiry_is_not_reused() {
    let dir = TempDir::new("reuse-expired");
    let store = store(&dir);
    let mut short = new_request("alice", "fp");
    short.timeout = Duration::ZERO;
    let first = store.request(short).await.unwrap();
    // expiresAt is rounded up to a whole second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = store.request(new_request("alice", "fp")).await.unwrap();
    assert!(!second.reused);
    assert_ne!(second.name, first.name);
}

#[tokio::test]
async fn decided_resolves_when_a_person_approves_in_the_file() {
    let dir = TempDir::new("approve");
    let store = store(&dir);
    let ticket = store.request(new_request("alice", "fp")).await.unwrap();
    let path = store.path_of(&ticket.name);
    let waiter = tokio::spawn(store.decided(&ticket.name));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "still pending");
    let edited = SystemTime::now();
    set_phase(&path, ApprovalPhase::Approved, None);
    let d = within_a_second(waiter).await.unwrap().unwrap();
    assert_eq!(d.phase, ApprovalPhase::Approved);
    assert_eq!(d.decided_by, None);
    assert_eq!(d.reason, None);
    // No decidedAt written by the person: when the file changed, which the store writes back.
    let at = d.decided_at.unwrap();
    assert!(
        at + Duration::from_secs(1) >= edited && at <= SystemTime::now(),
        "{at:?}"
    );
    let stamped = store.get(&ticket.name).unwrap();
    assert!(stamped.status.decided_at.is_some(), "decidedAt recorded");
}

#[tokio::test]
async fn decided_resolves_on_deny_with_reason_from_another_task() {
    let dir = TempDir::new("deny");
    let store = store(&dir);
    let ticket = store.request(new_request("alice", "fp")).await.unwrap();
    let decider = store.clone();
    let name = ticket.name.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tokio::task::spawn_blocking(move || {
            decider
                .decide(
                    &name,
                    ApprovalPhase::Denied,
                    "local:carol",
                    Some("not on a Friday"),
                )
                .unwrap()
        })
        .await
        .unwrap();
    });
    let d = within_a_second(store.decided(&ticket.name)).await.unwrap();
    assert_eq!(d.phase, ApprovalPhase::Denied);
    assert_eq!(d.decided_by.as_deref(), Some("local:carol"));
    assert_eq!(d.reason.as_deref(), Some("not on a Friday"));
    assert!(d.decided_at.is_some());
}

#[tokio::test]
async fn decided_resolves_as_expired_when_the_file_is_removed() {
    let dir = TempDir::new("removed");
    let store = store(&dir);
    let ticket = store.request(new_request("alice", "fp")).await.unwrap();
    let waiter = tokio::spawn(store.decided(&ticket.name));
    tokio::time::sleep(Duration::from_millis(250)).await;
    fs::remove_file(store.path_of(&ticket.name)).unwrap();
    let d = within_a_second(waiter).await.unwrap().unwrap();
    assert_eq!(d.phase, ApprovalPhase::Expired);
    assert_eq!(d.reason.as_deref(), Some(REMOVED_REASON));
}

#[tokio::test]
async fn a_broken_file_keeps_the_request_waiting() {
    let dir = TempDir::new("broken");
    let store = store(&dir);
    let ticket = store.request(new_request("alice", "fp")).await.unwrap();
    let path = store.path_of(&ticket.name);
    let good = fs::read_to_string(&path).unwrap();
    let waiter = tokio::spawn(store.decided(&ticket.name));
    // Broken YAML, then a misspelled phase: neither decides anything.
    fs::write(&path, "status: {phase: Approved\n  - nope").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished());
    fs::write(&path, good.replace("phase: Pending", "phase: approved")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished());
    // A changed spec (the statement) does not decide either, even when approved.
    fs::write(
        &path,
        good.replace("phase: Pending", "phase: Approved")
            .replace("customers", "suppliers"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished());
    assert!(store.get(&ticket.name).is_ok());
    // Repaired and approved: it goes through.
    fs::write(&path, good.replace("phase: Pending", "phase: Approved")).unwrap();
    let d = within_a_second(waiter).await.unwrap().unwrap();
    assert_eq!(d.phase, ApprovalPhase::Approved);
}

#[tokio::test]
async fn broken_and_foreign_files_are_listed_or_ignored() {
    let dir = TempDir::new("list");
    let store = store(&dir);
    let ticket = store.request(new_request("alice", "fp")).await.unwrap();
    fs::write(dir.0.join("notes.txt"), "not a request").unwrap();
    fs::write(dir.0.join("Not_A_Name.yaml"), "kind: x").unwrap();
    fs::write(dir.0.join("garbage.yaml"), ": : :\n\t- [").unwrap();
    fs::write(dir.0.join("huge.yaml"), vec![b'#'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
    let wrong_name = text(&store, &ticket.name);
    fs::write(dir.0.join("renamed.yaml"), wrong_name).unwrap();
    let listing = store.list().unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].name, ticket.name);
    let mut broken: Vec<&str> = listing.broken.iter().map(|(n, _)| n.as_str()).collect();
    broken.sort_unstable();
    assert_eq!(broken, ["garbage", "huge", "renamed"]);
    let why: HashMap<&str, &str> = listing
        .broken
        .iter()
        .map(|(n, w)| (n.as_str(), w.as_str()))
        .collect();
    assert!(why["huge"].contains("larger than"), "{}", why["huge"]);
    assert!(why["renamed"].contains("metadata.name"), "{}", why["renamed"]);
    // Parse errors do not quote the file.
    fs::write(
        dir.0.join("secret.yaml"),
        "spec: {statement: SELECT secret_value\n  bad: [",
    )
    .unwrap();
    let listing = store.list().unwrap();
    let (_, why) = listing.broken.iter().find(|(n, _)| n == "secret").unwrap();
    assert!(!why.contains("secret_value"), "{why}");
}

#[tokio::test]
async fn expire_marks_pending_requests_and_leaves_final_ones() {
    let dir = TempDir::new("expire");
    let store = store(&dir);
    let pending = store.request(new_request("alice", "fp1")).await.unwrap();
    let approved = store.request(new_request("alice", "fp2")).await.unwrap();
    store
        .decide(&approved.name, ApprovalPhase::Approved, "local:carol", Some("ok"))
        .unwrap();

    store.expire(&pending.name, "the client went away").await.unwrap();
    let e = store.get(&pending.name).unwrap();
    assert_eq!(e.status.phase, ApprovalPhase::Expired);
    assert_eq!(e.status.reason.as_deref(), Some("the client went away"));
    assert!(e.status.decided_at.is_some());
    let d = within_a_second(store.decided(&pending.name)).await.unwrap();
    assert_eq!(d.phase, ApprovalPhase::Expired);
    assert_eq!(d.reason.as_deref(), Some("the client went away"));

    let before = text(&store, &approved.name);
    store.expire(&approved.name, "timed out").await.unwrap();
    assert_eq!(
        text(&store, &approved.name),
        before,
        "a final phase does not change"
    );
    store.expire(&pending.name, "again").await.unwrap();
    assert_eq!(
        store.get(&pending.name).unwrap().status.reason.as_deref(),
        Some("the client went away")
    );

    // Gone or never there: nothing to do. Not a name: refused.
    store.expire("orders-0000000000", "x").await.unwrap();
    assert!(matches!(
        store.expire("../etc/passwd", "x").await,
        Err(ApprovalError::InvalidName { .. })
    ));
}

#[tokio::test]
async fn a_once_only_grant_is_used_once_even_across_stores() {
    let dir = TempDir::new("once");
    let store = store(&dir);
    let window = Duration::from_secs(600);
    assert_eq!(store.take_grant("alice", "fp", window, true).await.unwrap(), None);
    let ticket = store.request(new_request("alice", "fp")).await.unwrap();
    assert_eq!(
        store.take_grant("alice", "fp", window, true).await.unwrap(),
        None,
        "pending is no grant"
    );
    store
        .decide(&ticket.name, ApprovalPhase::Approved, "local:carol", None)
        .unwrap();

    assert_eq!(store.take_grant("bob", "fp", window, true).await.unwrap(), None);
    assert_eq!(
        store.take_grant("alice", "other", window, true).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_grant("alice", "fp", window, true).await.unwrap(),
        Some(ticket.name.clone())
    );
    assert_eq!(
        store.take_grant("alice", "fp", window, true).await.unwrap(),
        None,
        "used"
    );
    let used = store.get(&ticket.name).unwrap();
    assert!(parse_rfc3339(&used.metadata.annotations[USED_AT_ANNOTATION]).is_ok());

    // A restarted sidecar reads the annotation.
    let restarted = DirStore::new(&dir.0).unwrap();
    assert_eq!(
        restarted.take_grant("alice", "fp", window, true).await.unwrap(),
        None
    );

    // A second approval of the same statement is a second grant.
    let again = store.request(new_request("alice", "fp")).await.unwrap();
    assert!(!again.reused);
    store
        .decide(&again.name, ApprovalPhase::Approved, "local:carol", None)
        .unwrap();
    assert_eq!(
        restarted.take_grant("alice", "fp", window, true).await.unwrap(),
        Some(again.name)
    );
    assert_eq!(store.take_grant("alice", "fp", window, true).await.unwrap(), None);
}

#[tokio::test]
async fn a_grant_window_allows_several_uses_inside_and_none_after() {
    let dir = TempDir::new("window");
    let store = store(&dir);
    let ticket = store.request(new_request("alice", "fp")).await.unwrap();
    store
        .decide(&ticket.name, ApprovalPhase::Approved, "local:carol", None)
        .unwrap();
    let window = Duration::from_secs(60);
    for _ in 0..3 {
        assert_eq!(
            store.take_grant("alice", "fp", window, false).await.unwrap(),
            Some(ticket.name.clone())
        );
    }
    assert!(store.get(&ticket.name).unwrap().is_used(), "first use recorded");
    assert_eq!(
        store.take_grant("alice", "other", window, false).await.unwrap(),
        None
    );
    assert_eq!(store.take_grant("bob", "fp", window, false).await.unwrap(), None);

    // Approved two minutes ago: outside a one-minute window, inside a five-minute one.
    let two_minutes_ago = format_rfc3339(SystemTime::now() - Duration::from_secs(120));
    edit(&store.path_of(&ticket.name), |doc| {
        doc.status.as_mut().unwrap().decided_at = Some(two_minutes_ago);
    });
    assert_eq!(
        store.take_grant("alice", "fp", window, false).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .take_grant("alice", "fp", Duration::from_secs(300), false)
            .await
            .unwrap(),
        Some(ticket.name.clone())
    );
    // A window passes in real time too.
    let short = store.request(new_request("alice", "fp3")).await.unwrap();
    store
        .decide(&short.name, ApprovalPhase::Approved, "local:carol", None)
        .unwrap();
    // decidedAt is whole seconds (up to 1 s before the decision): the window has room for that.
    let w = Duration::from_millis(2500);
    assert!(
        store
            .take_grant("alice", "fp3", w, false)
            .await
            .unwrap()
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(store.take_grant("alice", "fp3", w, false).await.unwrap(), None);
}

#[tokio::test]
async fn denied_expired_and_late_approvals_are_no_grants() {
    let dir = TempDir::new("no-grant");
    let store = store(&dir);
    let window = Duration::from_secs(600);
    let denied = store.request(new_request("alice", "fp1")).await.unwrap();
    store
        .decide(&denied.name, ApprovalPhase::Denied, "local:carol", None)
        .unwrap();
    assert_eq!(
        store.take_grant("alice", "fp1", window, false).await.unwrap(),
        None
    );
    let expired = store.request(new_request("alice", "fp2")).await.unwrap();
    store.expire(&expired.name, "timed out").await.unwrap();
    assert_eq!(
        store.take_grant("alice", "fp2", window, false).await.unwrap(),
        None
    );
    // Approved by hand after it expired: too late.
    let mut short = new_request("alice", "fp3");
    short.timeout = Duration::ZERO;
    let late = store.request(short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    set_phase(&store.path_of(&late.name), ApprovalPhase::Approved, None);
    assert_eq!(
        store.take_grant("alice", "fp3", window, false).await.unwrap(),
        None
    );
    // The CLI refuses it outright.
    let mut short = new_request("alice", "fp4");
    short.timeout = Duration::ZERO;
    let late = store.request(short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        store.decide(&late.name, ApprovalPhase::Approved, "local:carol", None),
        Err(DecideError::Store(ApprovalError::PastExpiry { .. }))
    ));
}

#[tokio::test]
async fn decide_refuses_unknown_and_decided_requests() {
    let dir = TempDir::new("decide");
    let store = store(&dir);
    let a = store.request(new_request("alice", "fp1")).await.unwrap();
    let b = store.request(new_request("alice", "fp2")).await.unwrap();
    let e = store
        .decide("orders-zzzzzzzzzz", ApprovalPhase::Approved, "local:carol", None)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DecideError::Store(ApprovalError::NotFound { .. })),
        "{msg}"
    );
    assert!(msg.contains(&a.name) && msg.contains(&b.name), "{msg}");

    let entry = store
        .decide(&a.name, ApprovalPhase::Approved, "local:carol", Some("fine"))
        .unwrap();
    assert_eq!(entry.status.phase, ApprovalPhase::Approved);
    assert_eq!(entry.status.decided_by.as_deref(), Some("local:carol"));
    assert_eq!(entry.status.reason.as_deref(), Some("fine"));
    let e = store
        .decide(&a.name, ApprovalPhase::Denied, "local:dave", None)
        .unwrap_err();
    assert!(e.to_string().contains("already Approved (by local:carol)"), "{e}");
    assert_eq!(store.get(&a.name).unwrap().status.phase, ApprovalPhase::Approved);
    // The spec and metadata are kept as they were.
    assert_eq!(store.get(&a.name).unwrap().spec.statement, SQL);
    assert!(store.get(&a.name).unwrap().created_at.is_some());

    let e = store
        .decide("../../etc", ApprovalPhase::Approved, "x", None)
        .unwrap_err();
    assert!(
        matches!(e, DecideError::Store(ApprovalError::InvalidName { .. })),
        "{e}"
    );
    assert!(store.decide(&b.name, ApprovalPhase::Expired, "x", None).is_err());
}

#[tokio::test]
async fn names_are_valid_and_unique() {
    let mut seen = HashSet::new();
    for connection in ["orders", "Orders.Prod_EU", "-x-", "", &"a".repeat(100), "é.ü"] {
        for _ in 0..50 {
            let name = new_name(connection).unwrap();
            assert!(is_valid_name(&name), "{name:?} from {connection:?}");
            assert!(seen.insert(name.clone()), "{name} twice");
        }
    }
    assert!(new_name("Orders.Prod_EU").unwrap().starts_with("orders-prod-eu-"));
    assert!(new_name("").unwrap().starts_with("approval-"));
    assert_eq!(new_name(&"a".repeat(100)).unwrap().len(), 63);
    for bad in ["", "-a", "a-", "A", "a/b", "..", "a.b", &"a".repeat(64)] {
        assert!(!is_valid_name(bad), "{bad:?}");
    }
    // Requests made at once from many tasks get distinct names.
    let dir = TempDir::new("names");
    let store = store(&dir);
    let tickets = futures_util::future::join_all(
        (0..20).map(|i| store.request(new_request("alice", &format!("fp{i}")))),
    )
    .await;
    let names: HashSet<String> = tickets.into_iter().map(|t| t.unwrap().name).collect();
    assert_eq!(names.len(), 20);
}

#[tokio::test]
async fn requests_are_validated_and_requesters_kept_verbatim() {
    let dir = TempDir::new("validate");
    let store = store(&dir);
    let e = store.request(new_request("", "fp")).await.unwrap_err();
    assert!(matches!(e, ApprovalError::InvalidRequest(_)), "{e}");
    let mut long = new_request("alice", "fp");
    long.timeout = Duration::MAX;
    assert!(store.request(long).await.is_err());
    let mut odd = new_request("system:serviceaccount:ci:agent", "fp");
    odd.requester.service_account = None;
    odd.requester.pod = None;
    odd.requester.uid = None;
    let t = store.request(odd.clone()).await.unwrap();
    assert_eq!(store.get(&t.name).unwrap().spec.requester, odd.requester);
    let files: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.contains(&LOCK_FILE.to_owned()), "{files:?}");
}

#[test]
fn hints_are_one_shell_command() {
    assert_eq!(
        shell_quote("/var/lib/dbward/approvals"),
        "/var/lib/dbward/approvals"
    );
    assert_eq!(shell_quote("/tmp/my dir"), "'/tmp/my dir'");
    assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    assert_eq!(shell_quote(""), "''");
    let dir = TempDir::new("hint");
    let store = DirStore::new(&dir.0).unwrap();
    assert_eq!(
        store.approve_hint("orders-abc"),
        format!(
            "dbward-sidecar approve orders-abc --approvals {}",
            store.dir().display()
        )
    );
    assert!(
        store
            .deny_hint("orders-abc")
            .starts_with("dbward-sidecar deny orders-abc ")
    );
}
