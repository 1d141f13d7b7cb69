//! Reading the journal back: a list of the sessions it holds, or one session as a transcript
//! (`dbward-sidecar replay`).
//!
//! Segments are read in name order (which is time order). A line that is not a JSON object (a write
//! cut short by a full disk, an empty probe line) is skipped and counted; a line longer than
//! [`MAX_LINE`] is skipped whole.

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use serde_json::{Map, Value};

/// The longest line read (a statement event carries at most 64 KiB of text, escaped).
pub const MAX_LINE: usize = 1 << 20;

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// One session (its id, or a unique prefix of it) as a transcript; `None` lists the sessions.
    pub session: Option<String>,
    /// With `session`: print the session's journal lines as they are, instead of a transcript.
    pub json: bool,
}

/// How the reading went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub files: usize,
    pub events: usize,
    /// Lines that were not JSON objects (or were too long).
    pub skipped: usize,
}

/// Why the journal could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {}: {error}", .path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("no journal segments ({}*{}) in {}", super::SEGMENT_PREFIX, super::SEGMENT_SUFFIX, .0.display())]
    Empty(PathBuf),
    #[error("no session {0:?} in the journal")]
    NoSuchSession(String),
    #[error("{prefix:?} matches {count} sessions; give more of the id")]
    Ambiguous { prefix: String, count: usize },
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

/// The segment files named by `inputs`: files as given, directories' segments in name order.
pub fn segments(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ReplayError> {
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|error| ReplayError::Io {
            path: input.clone(),
            error,
        })?;
        if !meta.is_dir() {
            out.push(input.clone());
            continue;
        }
        let mut found = Vec::new();
        let entries = std::fs::read_dir(input).map_err(|error| ReplayError::Io {
            path: input.clone(),
            error,
        })?;
        for entry in entries {
            let entry = entry.map_err(|error| ReplayError::Io {
                path: input.clone(),
                error,
            })?;
            if entry.file_name().to_str().is_some_and(super::is_segment_name) {
                found.push(entry.path());
            }
        }
        if found.is_empty() {
            return Err(ReplayError::Empty(input.clone()));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Calls `each` with every event (and its line) of the segments, in order.
pub fn read_events(
    files: &[PathBuf],
    mut each: impl FnMut(&Map<String, Value>, &[u8]) -> Result<(), ReplayError>,
) -> Result<ReadStats, ReplayError> {
    let mut stats = ReadStats::default();
    let mut line = Vec::new();
    for path in files {
        stats.files += 1;
        let file = std::fs::File::open(path).map_err(|error| ReplayError::Io {
            path: path.clone(),
            error,
        })?;
        let mut reader = BufReader::new(file);
        loop {
            line.clear();
            let (n, whole) = read_line(&mut reader, &mut line).map_err(|error| ReplayError::Io {
                path: path.clone(),
                error,
            })?;
            if n == 0 {
                break;
            }
            let text = trim_newline(&line);
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(map)) if whole => {
                    stats.events += 1;
                    each(&map, text)?;
                }
                _ => stats.skipped += 1,
            }
        }
    }
    Ok(stats)
}

/// Reads one line into `line`, keeping at most [`MAX_LINE`] bytes of it; returns the bytes consumed
/// and whether the line was kept whole.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut whole = true;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((consumed, whole));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        if whole && line.len() + chunk.len() <= MAX_LINE {
            line.extend_from_slice(chunk);
        } else {
            whole = false;
        }
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok((consumed, whole));
        }
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn s<'a>(e: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    e.get(key).and_then(Value::as_str)
}

fn n(e: &Map<String, Value>, key: &str) -> Option<u64> {
    e.get(key).and_then(Value::as_u64)
}

/// A session as the list shows it.
#[derive(Debug, Default, Clone)]
struct Summary {
    id: String,
    started: String,
    connection: String,
    caller: String,
    statements: u64,
    denied: u64,
    held: u64,
    errors: u64,
    ended: Option<String>,
}

/// Lists the sessions (`options.session` unset) or shows one; returns what was read.
pub fn replay(
    inputs: &[PathBuf],
    options: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<ReadStats, ReplayError> {
    let files = segments(inputs)?;
    match &options.session {
        None => list(&files, out),
        Some(prefix) => {
            let id = resolve(&files, prefix)?;
            let mut t = Transcript::default();
            let stats = read_events(&files, |e, line| {
                if s(e, "session") != Some(id.as_str()) {
                    return Ok(());
                }
                if options.json {
                    out.write_all(line).map_err(ReplayError::Output)?;
                    out.write_all(b"\n").map_err(ReplayError::Output)
                } else {
                    t.event(e, out)
                }
            })?;
            Ok(stats)
        }
    }
}

/// The one session id starting with `prefix`.
fn resolve(files: &[PathBuf], prefix: &str) -> Result<String, ReplayError> {
    let mut ids: Vec<String> = Vec::new();
    read_events(files, |e, _| {
        if s(e, "event") == Some("sessionStart")
            && let Some(id) = s(e, "session").filter(|id| id.starts_with(prefix))
            && !ids.iter().any(|x| x == id)
        {
            ids.push(id.to_owned());
        }
        Ok(())
    })?;
    match ids.len() {
        0 => Err(ReplayError::NoSuchSession(prefix.to_owned())),
        1 => Ok(ids.remove(0)),
        count => Err(ReplayError::Ambiguous {
            prefix: prefix.to_owned(),
            count,
        }),
    }
}

fn list(files: &[PathBuf], out: &mut dyn Write) -> Result<ReadStats, ReplayError> {
    let mut order: Vec<String> = Vec::new();
    let mut sessions: HashMap<String, Summary> = HashMap::new();
    let stats = read_events(files, |e, _| {
        let Some(id) = s(e, "session") else { return Ok(()) };
        let event = s(e, "event").unwrap_or("");
        if event == "sessionRefused" {
            return Ok(());
        }
        let summary = sessions.entry(id.to_owned()).or_insert_with(|| {
            order.push(id.to_owned());
            Summary {
                id: id.to_owned(),
                ..Summary::default()
            }
        });
        match event {
            "sessionStart" => {
                summary.started = s(e, "time").unwrap_or("").to_owned();
                summary.connection = s(e, "connection").unwrap_or("").to_owned();
                summary.caller = e
                    .get("caller")
                    .and_then(|c| c.get("subject"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
            }
            "statement" => {
                summary.statements += 1;
                match s(e, "decision") {
                    Some("deny") => summary.denied += 1,
                    Some("requireApproval") => summary.held += 1,
                    _ => {}
                }
            }
            "result" if s(e, "status") == Some("error") => summary.errors += 1,
            "sessionEnd" => summary.ended = Some(s(e, "reason").unwrap_or("").to_owned()),
            _ => {}
        }
        Ok(())
    })?;
    let w = |out: &mut dyn Write, text: String| out.write_all(text.as_bytes()).map_err(ReplayError::Output);
    w(
        out,
        format!(
            "{:<16}  {:<24}  {:<16}  {:>5} {:>5} {:>5} {:>5}  {:<12}  {}\n",
            "SESSION", "STARTED", "CONNECTION", "STMTS", "DENY", "HELD", "ERR", "END", "CALLER"
        ),
    )?;
    for id in &order {
        let x = &sessions[id];
        w(
            out,
            format!(
                "{:<16}  {:<24}  {:<16}  {:>5} {:>5} {:>5} {:>5}  {:<12}  {}\n",
                x.id,
                x.started,
                x.connection,
                x.statements,
                x.denied,
                x.held,
                x.errors,
                x.ended.as_deref().unwrap_or("(open)"),
                x.caller
            ),
        )?;
    }
    Ok(stats)
}

/// Renders one session's events for a person.
#[derive(Default)]
struct Transcript {
    /// Statements sent to the server whose result has not been seen yet.
    pending: std::collections::BTreeSet<u64>,
}

/// `HH:MM:SS.mmm` of an event's time.
fn clock(e: &Map<String, Value>) -> &str {
    s(e, "time").and_then(|t| t.get(11..23)).unwrap_or("            ")
}

fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

fn error_text(e: &Map<String, Value>) -> Option<String> {
    let err = e.get("error")?;
    let code = err.get("code").and_then(Value::as_str).unwrap_or("");
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    Some(format!("{code} {message}"))
}

impl Transcript {
    fn event(&mut self, e: &Map<String, Value>, out: &mut dyn Write) -> Result<(), ReplayError> {
        let mut t = String::new();
        let at = clock(e);
        let pad = " ".repeat(at.len());
        match s(e, "event").unwrap_or("") {
            "sessionStart" => {
                let caller = e.get("caller").and_then(Value::as_object);
                let c = |k| caller.and_then(|c| s(c, k));
                let _ = writeln!(
                    t,
                    "session {} on {}, from {}",
                    s(e, "session").unwrap_or(""),
                    s(e, "connection").unwrap_or("?"),
                    s(e, "time").unwrap_or("?")
                );
                let mut who = format!("{} {}", c("kind").unwrap_or("?"), c("subject").unwrap_or("?"));
                if let Some(sa) = c("serviceAccount") {
                    let _ = write!(who, ", service account {sa}");
                }
                if let Some(pod) = c("pod") {
                    let _ = write!(who, ", pod {pod}");
                }
                if let Some(uid) = caller.and_then(|c| n(c, "uid")) {
                    let _ = write!(who, ", uid {uid}");
                }
                let _ = writeln!(t, "  caller: {who}");
                let _ = writeln!(
                    t,
                    "  client: {:?} as {:?} from {}",
                    s(e, "applicationName").unwrap_or(""),
                    s(e, "clientUser").unwrap_or(""),
                    s(e, "peer").unwrap_or("?")
                );
            }
            "statement" => {
                let seq = n(e, "seq").unwrap_or(0);
                let decision = match s(e, "decision") {
                    Some("allow") => "allow",
                    Some("deny") => "DENY",
                    Some("requireApproval") => "HELD",
                    _ => "?",
                };
                let text = s(e, "text").unwrap_or("");
                let mut lines = text.lines();
                let _ = writeln!(t, "{at} #{seq:<3} {decision:<5} {}", lines.next().unwrap_or(""));
                for l in lines {
                    let _ = writeln!(t, "{pad}            {l}");
                }
                if let Some(total) = n(e, "textBytes") {
                    let _ = writeln!(t, "{pad}            ... ({total} bytes in all)");
                }
                let mut notes = Vec::new();
                if let Some(p) = n(e, "params") {
                    notes.push(format!("{p} parameters"));
                }
                if let Some(r) = s(e, "rule") {
                    notes.push(format!("rule {r}"));
                }
                if let Some(a) = s(e, "audit") {
                    notes.push(format!("audit: {a}"));
                }
                if let Some(a) = e.get("approval").and_then(Value::as_object) {
                    let mut note = format!(
                        "request {} {}",
                        s(a, "request").unwrap_or("?"),
                        s(a, "outcome").unwrap_or("?")
                    );
                    if let Some(by) = s(a, "decidedBy") {
                        let _ = write!(note, " by {by}");
                    }
                    notes.push(note);
                }
                if let Some(err) = error_text(e) {
                    notes.push(format!("refused: {err}"));
                }
                if !notes.is_empty() {
                    let _ = writeln!(t, "{pad}      {}", notes.join("; "));
                }
                if s(e, "decision") != Some("deny") && e.get("error").is_none() {
                    self.pending.insert(seq);
                }
            }
            "result" => {
                let seq = n(e, "seq").unwrap_or(0);
                self.pending.remove(&seq);
                let mut parts = vec![s(e, "status").unwrap_or("?").to_owned()];
                if let Some(c) = s(e, "command") {
                    parts.push(c.to_owned());
                }
                if let Some(r) = n(e, "rows") {
                    parts.push(format!("{r} row{}", if r == 1 { "" } else { "s" }));
                }
                parts.push(size(n(e, "bytes").unwrap_or(0)));
                let us = n(e, "durationUs").unwrap_or(0);
                parts.push(format!("{:.1} ms", us as f64 / 1000.0));
                if let Some(err) = error_text(e) {
                    parts.push(err);
                }
                let _ = writeln!(t, "{pad}      #{seq} {}", parts.join(", "));
            }
            "approval" => {
                let mut line = format!(
                    "{at}      approval {} {}",
                    s(e, "request").unwrap_or("?"),
                    s(e, "stage").unwrap_or("?")
                );
                if let Some(r) = s(e, "rule") {
                    let _ = write!(line, " (rule {r}, mode {})", s(e, "mode").unwrap_or("?"));
                }
                if e.get("reused").and_then(Value::as_bool) == Some(true) {
                    line.push_str(", reusing a pending request");
                }
                if let Some(x) = s(e, "expiresAt") {
                    let _ = write!(line, ", expires {x}");
                }
                if let Some(by) = s(e, "decidedBy") {
                    let _ = write!(line, " by {by}");
                }
                if let Some(ms) = n(e, "waitedMs") {
                    let _ = write!(line, " after {:.1} s", ms as f64 / 1000.0);
                }
                if let Some(r) = s(e, "reason") {
                    let _ = write!(line, ": {r}");
                }
                let _ = writeln!(t, "{line}");
            }
            "sessionEnd" => {
                let ms = n(e, "durationMs").unwrap_or(0);
                let _ = write!(
                    t,
                    "{at} end after {:.1} s: {}; {} statements",
                    ms as f64 / 1000.0,
                    s(e, "reason").unwrap_or("?"),
                    n(e, "statements").unwrap_or(0)
                );
                if let Some(err) = s(e, "error") {
                    let _ = write!(t, "; {err}");
                }
                t.push('\n');
                if !self.pending.is_empty() {
                    let seqs: Vec<String> = self.pending.iter().map(|q| format!("#{q}")).collect();
                    let _ = writeln!(t, "{pad}      no result recorded for {}", seqs.join(", "));
                    self.pending.clear();
                }
            }
            _ => return Ok(()),
        }
        out.write_all(t.as_bytes()).map_err(ReplayError::Output)
    }
}

/// The default journal directory next to a config file: `journal/` beside it.
pub fn beside(config: &Path) -> PathBuf {
    config
        .parent()
        .map(|p| p.join("journal"))
        .unwrap_or_else(|| PathBuf::from("journal"))
}
