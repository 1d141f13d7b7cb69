//! `dbward-sidecar approve NAME`, `deny NAME` and `approvals`: a person deciding the statements a
//! local sidecar holds. The requests are files in the approvals directory ([`crate::approval::local`]);
//! these commands are the same gesture as `kubectl patch approvalrequest ... --subresource=status`.
//!
//! `approve` refuses a request the person running it sent — the request's Unix uid is one this command
//! runs as, or its subject is this user's name — as the operator's webhook refuses self-approval in a
//! cluster ([`crate::approval::local::Decider`]); `deny` does not (withdrawing one's own statement is
//! fine). These commands only read and decide: deleting old requests is the running sidecar's work.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Result, bail};
use clap::Args;
use dbward_crds::ApprovalPhase;

use crate::approval::{DirStore, local::Entry};

/// Where the approval requests are: `--approvals DIR`, else `approvals` next to `--config FILE`.
#[derive(Debug, Clone, Args)]
pub struct ApprovalsDirArgs {
    /// Directory of approval requests, one YAML file each [default: `approvals` next to --config].
    #[arg(long, env = "DBWARD_APPROVALS", value_name = "DIR")]
    pub approvals: Option<PathBuf>,
    /// The sidecar's config file, whose directory holds the default approvals directory.
    #[arg(long, env = "DBWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ApprovalsDirArgs {
    /// The approvals directory these options name.
    pub fn dir(&self) -> Result<PathBuf> {
        approvals_dir(self.approvals.as_deref(), self.config.as_deref())
    }
}

/// The approvals directory: `approvals` when given, else `<directory of config>/approvals`, else an
/// error saying what to pass.
pub fn approvals_dir(approvals: Option<&Path>, config: Option<&Path>) -> Result<PathBuf> {
    match (approvals, config) {
        (Some(dir), _) => Ok(dir.to_owned()),
        (None, Some(config)) => Ok(config.parent().unwrap_or_else(|| Path::new("")).join("approvals")),
        (None, None) => bail!(
            "which approvals directory? Pass --approvals DIR (or set DBWARD_APPROVALS), or --config FILE \
             to use the `approvals` directory next to the config file"
        ),
    }
}

/// `approve NAME` / `deny NAME`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The request's name, as the waiting client was told or `dbward-sidecar approvals` lists it.
    pub name: String,
    /// Why: recorded as status.reason (a denied client sees it).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub dir: ApprovalsDirArgs,
}

/// `approvals [--all]`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list decided and expired requests.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub dir: ApprovalsDirArgs,
}

/// `dbward-sidecar approve NAME`: the held statement runs. Refused (non-zero exit) when the person
/// running it sent the statement.
pub fn approve(args: &DecideArgs) -> Result<()> {
    decide_command(args, ApprovalPhase::Approved)
}

/// `dbward-sidecar deny NAME`: the held statement fails with the reason.
pub fn deny(args: &DecideArgs) -> Result<()> {
    decide_command(args, ApprovalPhase::Denied)
}

fn decide_command(args: &DecideArgs, phase: ApprovalPhase) -> Result<()> {
    let dir = args.dir.dir()?;
    let line = decide(&dir, &args.name, phase, args.reason.as_deref(), &local_user())?;
    println!("{line}");
    Ok(())
}

/// Sets request `name` in `dir` to `phase` (Approved or Denied) as `by`, and returns the line to print.
/// Refuses an unknown request (listing the pending ones), one already decided (naming its phase), one
/// past its expiry, and approving one that `by` or this process's Unix user sent.
pub fn decide(
    dir: &Path,
    name: &str,
    phase: ApprovalPhase,
    reason: Option<&str>,
    by: &str,
) -> Result<String> {
    let store = DirStore::open(dir)?;
    let entry = store.decide(name, phase, by, reason)?;
    Ok(format!(
        "{name} {} by {by}: {} (from {} on {})",
        phase.as_str().to_lowercase(),
        one_line(&entry.spec.statement, STATEMENT_WIDTH),
        one_line(&entry.spec.requester.subject, 200),
        one_line(&entry.spec.connection, 200),
    ))
}

/// `dbward-sidecar approvals [--all]`: a table of the requests; files that cannot be read are
/// reported on stderr.
pub fn list(args: &ListArgs) -> Result<()> {
    let dir = args.dir.dir()?;
    let (table, warnings) = render(&dir, args.all, SystemTime::now())?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    print!("{table}");
    Ok(())
}

/// Statements are shown on one line, cut to this many characters.
const STATEMENT_WIDTH: usize = 80;

/// The table `approvals` prints at `now` — the requests a person can still decide, or with `all`
/// every one — and a warning for each file that cannot be read.
pub fn render(dir: &Path, all: bool, now: SystemTime) -> Result<(String, Vec<String>)> {
    let store = DirStore::open(dir)?;
    let listing = store.list()?;
    let warnings = listing
        .broken
        .into_iter()
        .map(|(_, why)| one_line(&why, 500))
        .collect();
    let rows: Vec<&Entry> = listing.entries.iter().filter(|e| all || e.is_open(now)).collect();
    if rows.is_empty() {
        let what = if all {
            "approval requests"
        } else {
            "pending approval requests"
        };
        return Ok((format!("no {what} in {}\n", store.dir().display()), warnings));
    }
    let mut header = vec!["NAME"];
    if all {
        header.push("PHASE");
    }
    header.extend(["AGE", "CONNECTION", "REQUESTER", "RULE", "EXPIRES", "STATEMENT"]);
    let mut table = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for e in rows {
        let mut row = vec![e.name.clone()];
        if all {
            row.push(e.phase().to_string());
        }
        row.push(age(e.created_at.unwrap_or(e.modified), now));
        row.push(one_line(&e.spec.connection, 63));
        row.push(one_line(&e.spec.requester.subject, 60));
        row.push(one_line(&e.spec.rule, 60));
        row.push(expires(e, now));
        row.push(one_line(&e.spec.statement, STATEMENT_WIDTH));
        table.push(row);
    }
    Ok((format_table(&table), warnings))
}

/// Columns padded to their widest cell, two spaces apart; the last one unpadded.
fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How long ago `t` was, kubectl style: `45s`, `12m`, `3h`, `2d`.
fn age(t: SystemTime, now: SystemTime) -> String {
    short(now.duration_since(t).unwrap_or_default())
}

fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// When an open request expires (`in 9m`), that a pending one already did (`expired 2m ago`), or `-`
/// for a decided one.
fn expires(e: &Entry, now: SystemTime) -> String {
    if e.phase().is_final() {
        return "-".to_owned();
    }
    match e.expires_at.duration_since(now) {
        Ok(left) => format!("in {}", short(left)),
        Err(past) => format!("expired {} ago", short(past.duration())),
    }
}

/// `s` on one line for a terminal: whitespace runs become one space, control and bidirectional
/// formatting characters become `?` (a statement or a token's subject must not drive the terminal),
/// and at most `max` characters, the cut marked with `…`.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        if count >= max {
            out.push('…');
            return out;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        out.push(if c.is_control() || bidi { '?' } else { c });
        count += 1;
    }
    out
}

/// Who decides, for `decidedBy`: `local:<$USER>`, else `local:<uid>`. `$USER` is a label the person
/// chooses; the self-approval check also compares the uids the process runs as, which they do not.
pub fn local_user() -> String {
    let user = std::env::var("USER")
        .ok()
        .map(|u| one_line(&u, 64))
        .filter(|u| !u.is_empty());
    let who = user.unwrap_or_else(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").map_or_else(|_| "unknown".to_owned(), |m| m.uid().to_string())
    });
    format!("local:{who}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dbward_crds::Requester;

    use super::*;
    use crate::approval::{ApprovalStore, NewRequest};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> Self {
            let mut b = [0u8; 8];
            aws_lc_rs::rand::fill(&mut b).unwrap();
            let hex = crate::hex::encode(&b);
            Self(std::env::temp_dir().join(format!("dbward-cli-approvals-{label}-{hex}")))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn request(statement: &str, fingerprint: &str) -> NewRequest {
        NewRequest {
            connection: "orders".to_owned(),
            requester: Requester {
                subject: "system:serviceaccount:ci:agent".to_owned(),
                ..Requester::default()
            },
            statement: statement.to_owned(),
            fingerprint: fingerprint.to_owned(),
            rule: "ci/hold-deletes".to_owned(),
            timeout: Duration::from_secs(600),
        }
    }

    #[test]
    fn the_directory_comes_from_approvals_or_next_to_the_config() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            approvals_dir(Some(&p("/a")), Some(&p("/etc/x.yaml"))).unwrap(),
            p("/a")
        );
        assert_eq!(
            approvals_dir(None, Some(&p("/etc/dbward/x.yaml"))).unwrap(),
            p("/etc/dbward/approvals")
        );
        assert_eq!(approvals_dir(None, Some(&p("x.yaml"))).unwrap(), p("approvals"));
        let e = approvals_dir(None, None).unwrap_err().to_string();
        assert!(
            e.contains("--approvals DIR") && e.contains("--config FILE"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn approve_and_deny_set_the_phase_once() {
        let dir = TempDir::new("decide");
        let store = DirStore::new(&dir.0).unwrap();
        let a = store
            .request(request("DELETE FROM t WHERE id = 1", "a"))
            .await
            .unwrap();
        let b = store
            .request(request("DELETE FROM t WHERE id = 2", "b"))
            .await
            .unwrap();

        let line = decide(&dir.0, &a.name, ApprovalPhase::Approved, None, "local:carol").unwrap();
        assert_eq!(
            line,
            format!(
                "{} approved by local:carol: DELETE FROM t WHERE id = 1 (from system:serviceaccount:ci:agent on orders)",
                a.name
            )
        );
        let entry = store.get(&a.name).unwrap();
        assert_eq!(entry.status.phase, ApprovalPhase::Approved);
        assert_eq!(entry.status.decided_by.as_deref(), Some("local:carol"));
        assert!(entry.status.decided_at.is_some());

        let e = decide(&dir.0, &a.name, ApprovalPhase::Denied, None, "local:dave").unwrap_err();
        assert!(e.to_string().contains("already Approved"), "{e}");

        decide(
            &dir.0,
            &b.name,
            ApprovalPhase::Denied,
            Some("not today"),
            "local:carol",
        )
        .unwrap();
        let d = store.decided(&b.name).await.unwrap();
        assert_eq!(d.phase, ApprovalPhase::Denied);
        assert_eq!(d.reason.as_deref(), Some("not today"));

        let c = store
            .request(request("DELETE FROM t WHERE id = 3", "c"))
            .await
            .unwrap();
        let e = decide(&dir.0, "orders-nosuchname", ApprovalPhase::Approved, None, "x").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("no approval request \"orders-nosuchname\""), "{msg}");
        assert!(msg.contains(&format!("pending: {}", c.name)), "{msg}");

        let e = decide(&dir.0.join("nope"), &c.name, ApprovalPhase::Approved, None, "x").unwrap_err();
        assert!(
            e.to_string().contains("cannot open the approvals directory"),
            "{e}"
        );
        assert!(!dir.0.join("nope").exists(), "the CLI creates no directory");
    }

    #[tokio::test]
    async fn the_list_shows_pending_requests_and_with_all_the_decided_ones() {
        let dir = TempDir::new("list");
        let store = DirStore::new(&dir.0).unwrap();
        let (empty, warnings) = render(&dir.0, false, SystemTime::now()).unwrap();
        assert!(empty.starts_with("no pending approval requests in "), "{empty}");
        assert!(warnings.is_empty());

        let long = format!(
            "UPDATE accounts\n   SET balance = 0\t-- {}\x1b[31m",
            "x".repeat(100)
        );
        let a = store.request(request(&long, "a")).await.unwrap();
        let b = store.request(request("DELETE FROM t", "b")).await.unwrap();
        store
            .decide(&b.name, ApprovalPhase::Denied, "local:carol", None)
            .unwrap();
        std::fs::write(dir.0.join("broken.yaml"), "{").unwrap();

        let (table, warnings) = render(&dir.0, false, SystemTime::now()).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(
            lines[0].starts_with("NAME") && lines[0].ends_with("STATEMENT"),
            "{table}"
        );
        assert!(!lines[0].contains("PHASE"));
        let row = lines[1];
        assert!(row.starts_with(&a.name), "{row}");
        assert!(row.contains("in 10m") || row.contains("in 9m"), "{row}");
        assert!(
            [" 0s ", " 1s ", " 2s ", " 3s "]
                .iter()
                .any(|age| row.contains(age)),
            "{row}"
        );
        for part in ["orders", "system:serviceaccount:ci:agent", "ci/hold-deletes"] {
            assert!(row.contains(part), "{part} in {row}");
        }
        assert!(row.contains("UPDATE accounts SET balance = 0 -- xxx"), "{row}");
        assert!(row.ends_with('…') && !row.contains('\x1b'), "{row}");
        let statement = &row[row.find("UPDATE").unwrap()..];
        assert_eq!(statement.chars().count(), STATEMENT_WIDTH + 1, "{statement}");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("broken.yaml"), "{warnings:?}");

        let (table, _) = render(&dir.0, true, SystemTime::now() + Duration::from_secs(3600)).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].contains("PHASE"));
        let row_a = lines.iter().find(|l| l.starts_with(&a.name)).unwrap();
        let row_b = lines.iter().find(|l| l.starts_with(&b.name)).unwrap();
        assert!(
            row_a.contains("Pending")
                && (row_a.contains("expired 50m ago") || row_a.contains("expired 49m ago")),
            "{row_a}"
        );
        assert!(row_a.contains(" 60m "), "{row_a}");
        assert!(row_b.contains("Denied") && row_b.contains(" - "), "{row_b}");
    }

    #[tokio::test]
    async fn the_requester_cannot_approve_its_own_statement() {
        let dir = TempDir::new("self");
        let store = DirStore::new(&dir.0).unwrap();
        // The directory is someone else's (the requester could edit its files otherwise, and then the
        // uid is not checked). chown needs root, as CI runs.
        let ours = crate::approval::local::process_uids().unwrap();
        std::os::unix::fs::chown(&dir.0, (1000..).find(|u| !ours.contains(u)), None).unwrap();
        let mut own = request("DELETE FROM t", "own");
        own.requester.uid = crate::approval::local::process_uids().unwrap().first().copied();
        let a = store.request(own).await.unwrap();
        let e = decide(&dir.0, &a.name, ApprovalPhase::Approved, None, "local:carol").unwrap_err();
        assert!(e.to_string().contains("cannot approve its own statement"), "{e}");
        assert_eq!(store.get(&a.name).unwrap().phase(), ApprovalPhase::Pending);
        let line = decide(&dir.0, &a.name, ApprovalPhase::Denied, None, "local:carol").unwrap();
        assert!(line.contains("denied by local:carol"), "{line}");

        let mut named = request("DELETE FROM u", "named");
        named.requester.subject = "local:carol".to_owned();
        let b = store.request(named).await.unwrap();
        let e = decide(&dir.0, &b.name, ApprovalPhase::Approved, None, "local:carol").unwrap_err();
        assert!(e.to_string().contains("cannot approve its own statement"), "{e}");
        decide(&dir.0, &b.name, ApprovalPhase::Approved, None, "local:dave").unwrap();
    }

    #[test]
    fn one_line_is_safe_for_a_terminal() {
        assert_eq!(one_line("  a\n\n b\tc  ", 80), "a b c");
        assert_eq!(one_line("a\x1b[2Jb\u{202e}c", 80), "a?[2Jb?c");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("ab", 2), "ab");
        assert_eq!(one_line("ééé", 2), "éé…");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(short(Duration::from_secs(5)), "5s");
        assert_eq!(short(Duration::from_secs(119)), "119s");
        assert_eq!(short(Duration::from_secs(600)), "10m");
        assert_eq!(short(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(short(Duration::from_secs(3 * 86_400)), "3d");
    }

    #[test]
    fn the_local_user_is_named() {
        let who = local_user();
        assert!(who.starts_with("local:") && who.len() > "local:".len(), "{who}");
    }
}
