//! The journal with real files in a temporary directory.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{
    event::{self, Caller, Time},
    replay::{MAX_LINE, ReplayError, ReplayOptions, read_events, replay, segments},
    *,
};
use crate::identity::CallerIdentity;

/// A unique directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "dbward-journal-{label}-{}-{}",
            std::process::id(),
            new_session_id()
        ));
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files_in(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().unwrap().len())
        })
        .collect();
    v.sort();
    v
}

fn config(dir: &Path, segment: u64, max: u64) -> JournalConfig {
    JournalConfig {
        dir: Some(dir.to_owned()),
        stdout: false,
        segment_bytes: segment,
        max_bytes: max,
        sync_interval: Duration::from_millis(10),
    }
}

#[test]
fn segments_rotate_and_the_oldest_go_beyond_max_bytes() {
    let tmp = Scratch::new("rotate");
    let j = Journal::open(config(&tmp.0, 1000, 4000)).unwrap();
    for i in 0..200 {
        let line = format!("{{\"n\":{i:03},\"pad\":\"{}\"}}\n", "x".repeat(80));
        j.append(line.as_bytes()).unwrap();
    }
    let files = files_in(&tmp.0);
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    assert!(total <= 4000, "{total} bytes kept: {files:?}");
    assert!(files.len() >= 3, "rotated: {files:?}");
    for (p, _) in &files {
        assert!(is_segment_name(p.file_name().unwrap().to_str().unwrap()), "{p:?}");
    }
    // Names sort by age, every kept line is whole, and the newest are the ones kept.
    let mut seen = Vec::new();
    let stats = read_events(&segments(std::slice::from_ref(&tmp.0)).unwrap(), |e, _| {
        seen.push(e["n"].as_u64().unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(stats.skipped, 0);
    assert!(stats.events >= 20, "{stats:?}");
    assert_eq!(seen.last(), Some(&199));
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps: {seen:?}"
    );
}

#[test]
fn a_restart_keeps_old_segments_and_counts_them_against_max_bytes() {
    let tmp = Scratch::new("restart");
    let line = format!("{{\"n\":\"{}\"}}\n", "y".repeat(190));
    {
        let j = Journal::open(config(&tmp.0, 1000, 3000)).unwrap();
        for _ in 0..10 {
            j.append(line.as_bytes()).unwrap();
        }
    }
    let before = files_in(&tmp.0).len();
    let j = Journal::open(config(&tmp.0, 1000, 3000)).unwrap();
    assert_eq!(files_in(&tmp.0).len(), before + 1, "a new segment per start");
    for _ in 0..20 {
        j.append(line.as_bytes()).unwrap();
    }
    let total: u64 = files_in(&tmp.0).iter().map(|(_, n)| n).sum();
    assert!(total <= 3000, "{total}");
}

#[test]
fn the_directory_and_segments_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = Scratch::new("private");
    let dir = tmp.0.join("nested");
    let j = Journal::open(config(&dir, 1 << 20, 1 << 20)).unwrap();
    j.append(b"{}\n").unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let (seg, _) = &files_in(&dir)[0];
    assert_eq!(
        std::fs::metadata(seg).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn bad_sizes_are_refused() {
    let tmp = Scratch::new("sizes");
    let err = Journal::open(config(&tmp.0, 2000, 1000)).unwrap_err();
    assert!(err.to_string().contains("segment_bytes"), "{err}");
}

fn identity() -> CallerIdentity {
    CallerIdentity::ambient("shop/agent", Some("agent-7f")).unwrap()
}

/// A session as the guard and the relay write it: start, a statement and its result, a refusal, an
/// approval, the end.
fn write_session(j: &Arc<Journal>) -> String {
    let log = SessionLog::new(j.clone(), new_session_id());
    let id = identity();
    log.record_now(|b| {
        event::session_start(
            b,
            &event::SessionStart {
                time: Time(SystemTime::now()),
                event: "sessionStart",
                session: log.id(),
                connection: "orders",
                caller: Caller::of(&id),
                peer: "127.0.0.1:5000".into(),
                client_user: "app",
                application_name: "psql",
            },
        );
    })
    .unwrap();
    let seq = log.next_seq();
    log.record(|b| {
        event::statement(
            b,
            &event::Statement {
                time: Time(SystemTime::now()),
                event: "statement",
                session: log.id(),
                seq,
                protocol: "extended",
                text: "select email\nfrom customers where id = $1",
                text_bytes: None,
                params: Some(1),
                decision: "allow",
                rule: Some("shop/agents/read"),
                audit: None,
                error: None,
                approval: None,
            },
        );
        event::result(
            b,
            &event::ResultEvent {
                time: Time(SystemTime::now()),
                event: "result",
                session: log.id(),
                seq,
                status: "ok",
                duration_us: 1500,
                rows: Some(3),
                command: Some("SELECT"),
                bytes: 2048,
                error: None,
            },
        );
    })
    .unwrap();
    let seq = log.next_seq();
    log.record(|b| {
        event::statement(
            b,
            &event::Statement {
                time: Time(SystemTime::now()),
                event: "statement",
                session: log.id(),
                seq,
                protocol: "simple",
                text: "drop table orders",
                text_bytes: None,
                params: None,
                decision: "deny",
                rule: Some("shop/agents/no-ddl"),
                audit: None,
                error: Some(event::ErrorNote {
                    code: "42501",
                    message: "dbward: no DDL",
                }),
                approval: None,
            },
        );
    })
    .unwrap();
    log.record_now(|b| {
        event::approval(
            b,
            &event::Approval {
                session: log.id(),
                request: "orders-delete-1",
                stage: "approved",
                mode: "wait",
                decided_by: Some("alice"),
                waited_ms: Some(1200),
                ..event::Approval::default()
            },
        );
    })
    .unwrap();
    log.record_now(|b| event::session_end(b, log.id(), 900, log.statements(), "clientTerminated", None))
        .unwrap();
    log.id().to_owned()
}

fn run(dir: &Path, options: &ReplayOptions) -> Result<String, ReplayError> {
    let mut out = Vec::new();
    replay(&[dir.to_owned()], options, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn replay_lists_sessions_and_shows_one_as_a_transcript() {
    let tmp = Scratch::new("replay");
    let j = Journal::open(config(&tmp.0, 1 << 20, 1 << 20)).unwrap();
    let a = write_session(&j);
    let b = write_session(&j);
    let list = run(&tmp.0, &ReplayOptions::default()).unwrap();
    assert!(list.contains(&a) && list.contains(&b), "{list}");
    let row = list.lines().find(|l| l.starts_with(&a)).unwrap();
    assert!(row.contains("orders"), "{row}");
    assert!(row.contains("clientTerminated"), "{row}");
    assert!(row.contains("system:serviceaccount:shop:agent"), "{row}");

    let t = run(
        &tmp.0,
        &ReplayOptions {
            session: Some(a[..10].to_owned()),
            json: false,
        },
    )
    .unwrap();
    assert!(t.contains(&format!("session {a} on orders")), "{t}");
    assert!(t.contains("#1   allow select email"), "{t}");
    assert!(t.contains("from customers where id = $1"), "{t}");
    assert!(t.contains("1 parameters; rule shop/agents/read"), "{t}");
    assert!(t.contains("#1 ok, SELECT, 3 rows, 2.0 KiB, 1.5 ms"), "{t}");
    assert!(t.contains("#2   DENY  drop table orders"), "{t}");
    assert!(t.contains("refused: 42501 dbward: no DDL"), "{t}");
    assert!(
        t.contains("approval orders-delete-1 approved by alice after 1.2 s"),
        "{t}"
    );
    assert!(
        t.contains("end after 0.9 s: clientTerminated; 2 statements"),
        "{t}"
    );
    assert!(!t.contains(&b), "only the one session: {t}");

    let json = run(
        &tmp.0,
        &ReplayOptions {
            session: Some(b.clone()),
            json: true,
        },
    )
    .unwrap();
    assert_eq!(json.lines().count(), 6, "{json}");
    for l in json.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["session"], b.as_str());
    }
}

#[test]
fn replay_names_missing_and_ambiguous_sessions() {
    let tmp = Scratch::new("ambiguous");
    let j = Journal::open(config(&tmp.0, 1 << 20, 1 << 20)).unwrap();
    write_session(&j);
    write_session(&j);
    let one = |s: &str| ReplayOptions {
        session: Some(s.to_owned()),
        json: false,
    };
    assert!(matches!(
        run(&tmp.0, &one("zz")),
        Err(ReplayError::NoSuchSession(_))
    ));
    assert!(matches!(
        run(&tmp.0, &one("")),
        Err(ReplayError::Ambiguous { count: 2, .. })
    ));
    let empty = Scratch::new("empty");
    std::fs::create_dir_all(&empty.0).unwrap();
    assert!(matches!(
        run(&empty.0, &ReplayOptions::default()),
        Err(ReplayError::Empty(_))
    ));
}

#[test]
fn replay_skips_torn_and_overlong_lines() {
    let tmp = Scratch::new("torn");
    let j = Journal::open(config(&tmp.0, 1 << 22, 1 << 22)).unwrap();
    let id = write_session(&j);
    j.append(b"{\"event\":\"statement\",\"sess\n").unwrap();
    let long = format!("{{\"x\":\"{}\"}}\n", "z".repeat(MAX_LINE + 10));
    j.append(long.as_bytes()).unwrap();
    j.append(b"\n").unwrap();
    let files = segments(std::slice::from_ref(&tmp.0)).unwrap();
    let stats = read_events(&files, |_, _| Ok(())).unwrap();
    assert_eq!(stats.skipped, 2, "{stats:?}");
    assert_eq!(stats.events, 6);
    let t = run(
        &tmp.0,
        &ReplayOptions {
            session: Some(id),
            json: false,
        },
    )
    .unwrap();
    assert!(t.contains("end after"), "{t}");
}

#[test]
fn statement_text_is_cut_on_a_character_boundary() {
    let text = format!("select '{}'", "é".repeat(event::MAX_TEXT));
    let (cut, full) = event::cut_text(&text);
    assert!(cut.len() <= event::MAX_TEXT && cut.len() > event::MAX_TEXT - 2);
    assert_eq!(full, Some(text.len()));
    assert!(text.starts_with(cut));
    assert_eq!(event::cut_text("select 1"), ("select 1", None));
}

#[test]
fn sync_runs_in_the_background_and_stops_with_the_journal() {
    let tmp = Scratch::new("sync");
    let j = Journal::open(config(&tmp.0, 1 << 20, 1 << 20)).unwrap();
    j.append(b"{}\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !j.dirty.load(Ordering::Acquire),
        "fdatasync'ed by the sync thread"
    );
    assert!(j.healthy());
    let weak = Arc::downgrade(&j);
    drop(j);
    assert!(
        weak.upgrade().is_none(),
        "the sync thread holds no strong reference"
    );
}
