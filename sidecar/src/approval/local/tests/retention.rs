//! Decided requests are deleted after their retention; pending ones and usable grants are kept.

use std::{
    fs,
    path::Path,
    time::{Duration, SystemTime},
};

use dbward_crds::{ApprovalPhase, format_rfc3339};

use super::{TempDir, new_request, set_phase, store};
use crate::approval::{
    ApprovalStore, DirStore,
    local::{DEFAULT_RETENTION, MAX_REMOVALS, MIN_RETENTION},
};

const HOUR: Duration = Duration::from_secs(3600);

fn ago(d: Duration) -> String {
    format_rfc3339(SystemTime::now() - d)
}

/// Edits a request file as text would be edited: every field kept (creationTimestamp included).
fn edit_raw(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut doc: serde_json::Value = serde_saphyr::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    f(&mut doc);
    fs::write(path, serde_json::to_string(&doc).unwrap()).unwrap();
}

/// Sets a request's phase and decidedAt as if decided `before` now.
fn decided(store: &DirStore, name: &str, phase: ApprovalPhase, before: Duration) {
    edit_raw(&store.path_of(name), |doc| {
        doc["status"]["phase"] = phase.as_str().into();
        doc["status"]["decidedAt"] = ago(before).into();
    });
}

/// Moves a request's expiresAt to `before` now.
fn expired_ago(store: &DirStore, name: &str, before: Duration) {
    edit_raw(&store.path_of(name), |doc| {
        doc["spec"]["expiresAt"] = ago(before).into()
    });
}

fn exists(store: &DirStore, name: &str) -> bool {
    store.path_of(name).exists()
}

/// Makes the store scan as the sidecar does (looking for a grant nobody has).
async fn scan(store: &DirStore) {
    assert_eq!(
        store
            .take_grant("nobody", "nothing", Duration::from_secs(1), true)
            .await
            .unwrap(),
        None
    );
}

fn set_mtime(path: &Path, before: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - before)
        .unwrap();
}

#[tokio::test]
async fn decided_requests_go_after_the_retention_pending_ones_stay() {
    let dir = TempDir::new("retention");
    let store = store(&dir);
    assert_eq!(store.retention(), DEFAULT_RETENTION);
    let mut made = Vec::new();
    for i in 0..10 {
        made.push(
            store
                .request(new_request("alice", &format!("fp{i}")))
                .await
                .unwrap()
                .name,
        );
    }
    let [
        open,
        denied_old,
        denied_new,
        approved_old,
        expired_old,
        expired_early,
        stale,
        stale_new,
        by_hand,
        future,
    ] = &made[..]
    else {
        unreachable!()
    };
    decided(&store, denied_old, ApprovalPhase::Denied, 25 * HOUR);
    decided(&store, denied_new, ApprovalPhase::Denied, 23 * HOUR);
    decided(&store, approved_old, ApprovalPhase::Approved, 25 * HOUR);
    decided(&store, expired_old, ApprovalPhase::Expired, 26 * HOUR);
    expired_ago(&store, expired_old, 25 * HOUR);
    // Withdrawn long ago, but its expiresAt is still ahead: kept until the retention after it.
    decided(&store, expired_early, ApprovalPhase::Expired, 25 * HOUR);
    // Still Pending long past expiresAt (its sidecar stopped): expired in all but name.
    expired_ago(&store, stale, 25 * HOUR);
    expired_ago(&store, stale_new, 23 * HOUR);
    // Decided by hand without decidedAt: counts from the file's last write.
    set_phase(&store.path_of(by_hand), ApprovalPhase::Denied, None);
    set_mtime(&store.path_of(by_hand), 25 * HOUR);
    // A decidedAt typed in the future is not believed beyond the file's last write.
    decided(&store, future, ApprovalPhase::Denied, Duration::ZERO);
    edit_raw(&store.path_of(future), |doc| {
        doc["status"]["decidedAt"] = format_rfc3339(SystemTime::now() + 1000 * HOUR).into();
    });
    set_mtime(&store.path_of(future), 25 * HOUR);
    fs::write(dir.0.join("broken.yaml"), "{").unwrap();
    set_mtime(&dir.0.join("broken.yaml"), 1000 * HOUR);

    // Listing, reading and deciding delete nothing.
    assert_eq!(store.list().unwrap().entries.len(), 10);
    store.get(denied_old).unwrap();
    assert!(
        store
            .decide(denied_old, ApprovalPhase::Approved, "local:carol", None)
            .is_err()
    );
    assert!(made.iter().all(|n| exists(&store, n)));

    scan(&store).await;
    for gone in [denied_old, approved_old, expired_old, stale, by_hand, future] {
        assert!(!exists(&store, gone), "{gone} deleted");
    }
    for kept in [open, denied_new, expired_early, stale_new] {
        assert!(exists(&store, kept), "{kept} kept");
    }
    assert!(
        dir.0.join("broken.yaml").exists(),
        "unreadable files are left alone"
    );
    assert_eq!(store.list().unwrap().entries.len(), 4);
    // Asking for approval scans too.
    decided(&store, denied_new, ApprovalPhase::Denied, 25 * HOUR);
    store.request(new_request("bob", "fp")).await.unwrap();
    assert!(!exists(&store, denied_new));
}

#[tokio::test]
async fn an_approval_stays_while_its_grant_can_be_used() {
    let dir = TempDir::new("retention-grant");
    let store = store(&dir);
    let window = 48 * HOUR;
    let a = store.request(new_request("alice", "fp")).await.unwrap();
    decided(&store, &a.name, ApprovalPhase::Approved, 25 * HOUR);
    // Once asked for a 48 h grant, the store keeps approvals 48 h: this one is still a grant.
    assert_eq!(
        store.take_grant("alice", "fp", window, false).await.unwrap(),
        Some(a.name.clone())
    );
    scan(&store).await;
    assert!(store.path_of(&a.name).exists());

    // The request's own timeout is the grant window of a policy without grantWindow: kept that long
    // even by a store that was never asked (a restarted sidecar).
    let mut long = new_request("alice", "fp2");
    long.timeout = 30 * HOUR;
    let b = store.request(long).await.unwrap();
    decided(&store, &b.name, ApprovalPhase::Approved, 25 * HOUR);
    let restarted = DirStore::new(&dir.0).unwrap();
    scan(&restarted).await;
    assert!(restarted.path_of(&b.name).exists(), "within its 30 h timeout");
    assert!(
        !restarted.path_of(&a.name).exists(),
        "nobody asked this store for 48 h grants"
    );

    // Approved after it expired (by hand): never a grant, so only the retention counts.
    let c = store.request(new_request("alice", "fp3")).await.unwrap();
    expired_ago(&store, &c.name, 30 * HOUR);
    decided(&store, &c.name, ApprovalPhase::Approved, 25 * HOUR);
    scan(&store).await;
    assert!(!store.path_of(&c.name).exists());
}

#[tokio::test]
async fn the_retention_is_configurable_with_a_floor() {
    let dir = TempDir::new("retention-config");
    assert_eq!(
        DirStore::new(&dir.0)
            .unwrap()
            .with_retention(Duration::ZERO)
            .retention(),
        MIN_RETENTION
    );
    let store = store(&dir).with_retention(2 * HOUR);
    assert_eq!(store.retention(), 2 * HOUR);
    let a = store.request(new_request("alice", "fp1")).await.unwrap();
    let b = store.request(new_request("alice", "fp2")).await.unwrap();
    decided(&store, &a.name, ApprovalPhase::Denied, 3 * HOUR);
    decided(&store, &b.name, ApprovalPhase::Denied, HOUR);
    scan(&store).await;
    assert!(!store.path_of(&a.name).exists());
    assert!(store.path_of(&b.name).exists());
    // A decision just made survives even the shortest retention: the waiter sees it.
    let short = store.clone().with_retention(Duration::ZERO);
    let c = short.request(new_request("alice", "fp3")).await.unwrap();
    short
        .decide(&c.name, ApprovalPhase::Denied, "local:carol", None)
        .unwrap();
    scan(&short).await;
    assert_eq!(short.decided(&c.name).await.unwrap().phase, ApprovalPhase::Denied);
}

#[tokio::test]
async fn each_scan_deletes_a_bounded_number() {
    let dir = TempDir::new("retention-bounded");
    let store = store(&dir);
    let total = MAX_REMOVALS + 6;
    let mut names = Vec::new();
    for i in 0..total {
        names.push(
            store
                .request(new_request("alice", &format!("fp{i}")))
                .await
                .unwrap()
                .name,
        );
    }
    for name in &names {
        decided(&store, name, ApprovalPhase::Denied, 25 * HOUR);
    }
    assert_eq!(store.list().unwrap().entries.len(), total);
    scan(&store).await;
    assert_eq!(store.list().unwrap().entries.len(), total - MAX_REMOVALS);
    scan(&store).await;
    assert!(store.list().unwrap().entries.is_empty());
}
