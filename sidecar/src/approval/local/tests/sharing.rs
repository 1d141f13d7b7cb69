//! Several stores — several processes — on one directory, racing: the directory lock makes each
//! read-modify-write whole. Each store here has its own process-level state (cache, mutex), so only the
//! file lock keeps them apart, as between processes.

use std::{
    fs,
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, SystemTime},
};

use dbward_crds::ApprovalPhase;

use super::{TempDir, new_request, store};
use crate::approval::{
    ApprovalError, ApprovalStore, DirStore,
    local::{DecideError, Decider, LOCK_FILE, MAX_FILE_BYTES, dirlock, file},
};

const ROUNDS: usize = 8;
const STORES: usize = 6;

/// Runs `f(i, store_i)` on `STORES` threads, each with its own store on `dir`, all at once.
fn race<T: Send + 'static>(
    dir: &std::path::Path,
    f: impl Fn(usize, DirStore) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(STORES));
    let f = Arc::new(f);
    let threads: Vec<_> = (0..STORES)
        .map(|i| {
            let store = DirStore::open(dir).unwrap();
            let (barrier, f) = (barrier.clone(), f.clone());
            thread::spawn(move || {
                barrier.wait();
                f(i, store)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[tokio::test]
async fn a_once_only_grant_is_used_once_by_racing_processes() {
    let dir = TempDir::new("race-grant");
    let store = store(&dir);
    for round in 0..ROUNDS {
        let fp = format!("fp{round}");
        let t = store.request(new_request("alice", &fp)).await.unwrap();
        store
            .decide(&t.name, ApprovalPhase::Approved, "local:carol", None)
            .unwrap();
        let taken = race(&dir.0, move |_, s| {
            s.inner
                .take_grant("alice", &fp, Duration::from_secs(600), true, SystemTime::now())
                .unwrap()
        });
        let winners: Vec<_> = taken.into_iter().flatten().collect();
        assert_eq!(winners, std::slice::from_ref(&t.name), "round {round}");
    }
}

#[tokio::test]
async fn racing_decisions_decide_once() {
    let dir = TempDir::new("race-decide");
    let store = store(&dir);
    for round in 0..ROUNDS {
        let t = store
            .request(new_request("alice", &format!("fp{round}")))
            .await
            .unwrap();
        let name = t.name.clone();
        let outcomes = race(&dir.0, move |i, s| match i % 3 {
            0 => s
                .decide(&name, ApprovalPhase::Approved, &format!("local:a{i}"), None)
                .map(|_| Some(ApprovalPhase::Approved)),
            1 => s
                .decide(&name, ApprovalPhase::Denied, &format!("local:d{i}"), None)
                .map(|_| Some(ApprovalPhase::Denied)),
            _ => s
                .inner
                .expire(&name, "timed out", SystemTime::now())
                .map(|()| None)
                .map_err(DecideError::Store),
        });
        let decided: Vec<ApprovalPhase> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied().flatten())
            .collect();
        for o in &outcomes {
            if let Err(e) = o {
                assert!(
                    matches!(e, DecideError::Store(ApprovalError::AlreadyDecided { .. })),
                    "{e}"
                );
            }
        }
        let phase = store.get(&t.name).unwrap().status.phase;
        match decided[..] {
            [] => assert_eq!(phase, ApprovalPhase::Expired, "round {round}"),
            [won] => assert_eq!(phase, won, "round {round}: the decision reported is the one kept"),
            _ => panic!("round {round}: decided {} times: {decided:?}", decided.len()),
        }
    }
}

#[tokio::test]
async fn racing_identical_requests_make_one() {
    let dir = TempDir::new("race-request");
    let _store = store(&dir);
    for round in 0..ROUNDS {
        let fp = format!("fp{round}");
        let tickets = race(&dir.0, move |_, s| {
            s.inner
                .request(new_request("alice", &fp), SystemTime::now())
                .unwrap()
        });
        let first = &tickets[0].name;
        assert!(
            tickets.iter().all(|t| &t.name == first),
            "round {round}: {tickets:?}"
        );
        assert_eq!(tickets.iter().filter(|t| !t.reused).count(), 1);
    }
}

#[test]
fn the_listing_survives_files_vanishing() {
    let dir = TempDir::new("vanishing");
    let store = DirStore::new(&dir.0).unwrap();
    let churn = DirStore::open(&dir.0).unwrap();
    let made = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (made_w, stop_w) = (made.clone(), stop.clone());
    let worker = thread::spawn(move || {
        while !stop_w.load(Ordering::Relaxed) {
            let i = made_w.load(Ordering::Relaxed);
            let t = churn
                .inner
                .request(new_request("alice", &format!("fp{i}")), SystemTime::now())
                .unwrap();
            fs::remove_file(churn.path_of(&t.name)).unwrap();
            made_w.fetch_add(1, Ordering::Relaxed);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut lists = 0;
    while (lists < 300 || made.load(Ordering::Relaxed) < 100) && std::time::Instant::now() < deadline {
        let listing = store.list().unwrap();
        assert!(listing.broken.is_empty(), "{:?}", listing.broken);
        lists += 1;
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    assert!(made.load(Ordering::Relaxed) >= 100, "the files churned");
}

#[tokio::test]
async fn a_decision_waits_for_another_process_holding_the_lock() {
    let dir = TempDir::new("lock-wait");
    let store = store(&dir);
    let t = store.request(new_request("alice", "fp")).await.unwrap();
    let held = fs::File::open(dir.0.join(LOCK_FILE)).unwrap();
    held.lock().unwrap();
    let decider = DirStore::open(&dir.0).unwrap();
    let name = t.name.clone();
    let decision = thread::spawn(move || decider.decide(&name, ApprovalPhase::Denied, "local:carol", None));
    thread::sleep(Duration::from_millis(300));
    assert!(!decision.is_finished(), "waits for the lock");
    assert_eq!(store.get(&t.name).unwrap().status.phase, ApprovalPhase::Pending);
    held.unlock().unwrap();
    decision.join().unwrap().unwrap();
    assert_eq!(store.get(&t.name).unwrap().status.phase, ApprovalPhase::Denied);

    // Held for too long: an error, not a hang.
    held.lock().unwrap();
    let serial = std::sync::Mutex::new(());
    let e = dirlock::lock_dir(&dir.0, &serial, Duration::from_millis(100))
        .err()
        .unwrap();
    assert!(e.to_string().contains("lock"), "{e}");
}

#[test]
fn an_opened_file_is_checked_before_it_is_read() {
    let dir = TempDir::new("bounded");
    fs::create_dir_all(&dir.0).unwrap();
    // A file that grew (or was swapped for another) after it was looked at: its own size decides, and
    // nothing is allocated for it.
    let huge = dir.0.join("huge.yaml");
    let f = fs::File::create(&huge).unwrap();
    f.set_len(1 << 40).unwrap();
    let mut f = fs::File::open(&huge).unwrap();
    match file::read_opened(&mut f, &huge, "huge").unwrap() {
        file::FileState::Broken(_, e) => {
            assert!(matches!(e, ApprovalError::TooLarge { max, .. } if max == MAX_FILE_BYTES))
        }
        _ => panic!("read"),
    }
    let mut d = fs::File::open(&dir.0).unwrap();
    match file::read_opened(&mut d, &dir.0, "dir").unwrap() {
        file::FileState::Broken(_, e) => assert!(e.to_string().contains("not a regular file"), "{e}"),
        _ => panic!("read"),
    }
}

#[tokio::test]
async fn the_requester_cannot_approve_its_own_statement() {
    let dir = TempDir::new("self");
    let store = store(&dir);
    let uids = crate::approval::local::process_uids().unwrap();
    let ours = uids[0];
    let mut own = new_request("alice", "fp1");
    own.requester.uid = Some(ours);
    let t = store.request(own).await.unwrap();
    // While the requester's uid owns the directory, it could edit the file: the uid is not checked.
    let approved = store
        .decide(&t.name, ApprovalPhase::Approved, "local:somebody-else", None)
        .unwrap_or_else(|e| panic!("the directory's owner may approve: {e}"));
    assert_eq!(approved.status.phase, ApprovalPhase::Approved);
    let mut own = new_request("alice", "fp1b");
    own.requester.uid = Some(ours);
    let t = store.request(own).await.unwrap();
    // The directory is someone else's (the sidecar's user): now the uid check stops the requester.
    // chown needs root, as CI runs.
    std::os::unix::fs::chown(&dir.0, (60000..).find(|u| !uids.contains(u)), None).unwrap();
    let before = fs::read(store.path_of(&t.name)).unwrap();
    // Through the store, whatever name the caller gives: this process's uid is the requester's.
    let e = store
        .decide(&t.name, ApprovalPhase::Approved, "local:somebody-else", None)
        .unwrap_err();
    assert!(matches!(e, DecideError::SelfApproval { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("Unix uid {ours}")) && msg.contains("someone else must"),
        "{msg}"
    );
    assert_eq!(
        fs::read(store.path_of(&t.name)).unwrap(),
        before,
        "the file is untouched"
    );
    // Withdrawing one's own request is allowed.
    let denied = store
        .decide(&t.name, ApprovalPhase::Denied, "local:me", Some("never mind"))
        .unwrap();
    assert_eq!(denied.status.phase, ApprovalPhase::Denied);

    // By name: the requester's subject, or its service account.
    let mut named = new_request("local:carol", "fp2");
    named.requester.uid = None;
    let t = store.request(named).await.unwrap();
    for who in ["local:carol", "carol"] {
        let e = store
            .decide_as(
                &t.name,
                ApprovalPhase::Approved,
                &Decider::with_uids(who, Some(vec![1])),
                None,
            )
            .unwrap_err();
        assert!(matches!(e, DecideError::SelfApproval { .. }), "{who}: {e}");
    }
    let sa = store.request(new_request("x", "fp3")).await.unwrap();
    let e = store
        .decide_as(
            &sa.name,
            ApprovalPhase::Approved,
            &Decider::with_uids("system:serviceaccount:ci:agent", Some(vec![1])),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, DecideError::SelfApproval { .. }), "{e}");
    // Unknown uids cannot rule out the requester when the request names one.
    let e = store
        .decide_as(
            &sa.name,
            ApprovalPhase::Approved,
            &Decider::with_uids("local:dave", None),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, DecideError::UnknownDecider { .. }), "{e}");
    // Someone else approves.
    let ok = store
        .decide_as(
            &t.name,
            ApprovalPhase::Approved,
            &Decider::with_uids("local:dave", None),
            None,
        )
        .unwrap();
    assert_eq!(ok.status.decided_by.as_deref(), Some("local:dave"));
}

#[tokio::test]
async fn a_pending_request_is_reused_only_by_the_same_requester() {
    let dir = TempDir::new("reuse-requester");
    let store = store(&dir);
    let first = store.request(new_request("alice", "fp")).await.unwrap();
    // Same subject, another local process (uid): its own request, so that its user cannot approve a
    // request that then runs its statement.
    let mut other = new_request("alice", "fp");
    other.requester.uid = other.requester.uid.map(|u| u + 1);
    let second = store.request(other.clone()).await.unwrap();
    assert!(!second.reused);
    assert_ne!(second.name, first.name);
    assert_eq!(store.request(other).await.unwrap().name, second.name);
}
