//! The session journal (DESIGN section 7): every session's events as JSON lines, for audit and replay.
//!
//! Each session writes `sessionStart`, a `statement` event for every statement it sends (its text,
//! the decision and the rule that made it, the approval it waited for), a `result` event when the
//! statement's result ends (status, duration, rows, bytes, error), `approval` events while a held
//! statement waits, and `sessionEnd`. A session's events are gathered in its own buffer
//! ([`SessionLog`]) and written before the client sees the ReadyForQuery that ends the exchange: a
//! client never holds a result whose record is not yet with the kernel, so a killed sidecar loses
//! nothing it acknowledged. The file is fdatasync'ed in small batches (every `sync_interval`), which
//! covers a crash of the node itself within that interval.
//!
//! Files: segments `journal-<start, unix ms>-<pid>.jsonl` in the journal directory, a new one per
//! process start and whenever one reaches `segment_bytes`; the oldest are deleted once all of them
//! together exceed `max_bytes`. A copy of every line can go to stdout for log collectors; stdout never
//! slows the proxy down: lines it cannot take at once are dropped, and the next line it takes is
//! preceded by a `journalGap` event that counts them.
//!
//! What is never written: credentials, tokens, bound parameter values (only their count), masked values
//! (results are not recorded, only their size), and error messages other than the ones the client was
//! sent (which the guard already scrubbed for callers with masked columns).
//!
//! When a write fails (disk full), the journal is marked unhealthy: the guard refuses statements and new
//! sessions are refused until a probe write succeeds again (fail closed).

pub mod event;
pub mod replay;
mod session;
mod stdout;

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tracing::{error, info, warn};

pub use self::session::SessionLog;

/// Segment files are named `journal-<unix ms>-<pid>.jsonl`.
pub const SEGMENT_PREFIX: &str = "journal-";
pub const SEGMENT_SUFFIX: &str = ".jsonl";

/// Where and how the journal is kept.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The directory of segment files; `None` keeps no files.
    pub dir: Option<PathBuf>,
    /// Also write every line to stdout.
    pub stdout: bool,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// The oldest segments are deleted while all of them together are larger than this.
    pub max_bytes: u64,
    /// How often written lines are fdatasync'ed.
    pub sync_interval: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: None,
            stdout: false,
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            sync_interval: Duration::from_millis(100),
        }
    }
}

/// Why the journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {what} {}: {error}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("the journal is not writable since an earlier error: {0}")]
    Unhealthy(String),
    #[error("max_bytes ({max}) must be at least segment_bytes ({segment})")]
    Sizes { max: u64, segment: u64 },
}

/// The open segment and the ones kept before it.
struct Files {
    dir: PathBuf,
    current: Arc<File>,
    current_path: PathBuf,
    current_size: u64,
    /// Closed segments, oldest first, with their sizes.
    older: VecDeque<(PathBuf, u64)>,
    /// The last write failed part way: the next one starts on a fresh line.
    torn: bool,
    /// The newest segment's start (ms since the epoch, as in its name).
    last_ms: u64,
}

/// The process's journal, shared by every session.
pub struct Journal {
    config: JournalConfig,
    files: Option<Mutex<Files>>,
    stdout: Option<stdout::StdoutSink>,
    /// Lines were written since the last fdatasync.
    dirty: AtomicBool,
    /// The last write failed; cleared by a successful probe.
    failed: Mutex<Option<String>>,
    unhealthy: AtomicBool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.config.dir)
            .field("stdout", &self.config.stdout)
            .finish()
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |error| JournalError::Io {
        what,
        path: path.to_owned(),
        error,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Journal {
    /// Opens the journal: creates the directory (mode 0700), lists the segments already there and
    /// starts a new one. Starts the fdatasync thread, which ends when the journal is dropped.
    pub fn open(config: JournalConfig) -> Result<Arc<Self>, JournalError> {
        if config.max_bytes < config.segment_bytes {
            return Err(JournalError::Sizes {
                max: config.max_bytes,
                segment: config.segment_bytes,
            });
        }
        let files = match &config.dir {
            Some(dir) => Some(Mutex::new(open_files(dir)?)),
            None => None,
        };
        let journal = Arc::new(Self {
            stdout: config.stdout.then(stdout::StdoutSink::start),
            config,
            files,
            dirty: AtomicBool::new(false),
            failed: Mutex::new(None),
            unhealthy: AtomicBool::new(false),
        });
        if journal.files.is_some() {
            let weak = Arc::downgrade(&journal);
            let interval = journal.config.sync_interval;
            std::thread::Builder::new()
                .name("dbward-journal-sync".into())
                .spawn(move || sync_loop(&weak, interval))
                .map_err(|e| JournalError::Io {
                    what: "start the journal's sync thread for",
                    path: journal.config.dir.clone().unwrap_or_default(),
                    error: e,
                })?;
        }
        if let Some(files) = &journal.files {
            let f = lock(files);
            info!(segment = %f.current_path.display(), kept = f.older.len(), "session journal open");
        }
        Ok(journal)
    }

    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    /// Whether the journal can be written (a failed write makes it unhealthy until a probe succeeds).
    pub fn healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Acquire)
    }

    /// Why the journal is unhealthy, if it is.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    /// Writes complete lines (each ending in `\n`) to the segment and to stdout.
    pub fn append(&self, lines: &[u8]) -> Result<(), JournalError> {
        if lines.is_empty() {
            return Ok(());
        }
        if let Some(files) = &self.files {
            let mut f = lock(files);
            if let Err(e) = f.write(lines, &self.config) {
                drop(f);
                self.fail(&e);
                return Err(e);
            }
            self.dirty.store(true, Ordering::Release);
        }
        if let Some(s) = &self.stdout {
            s.send(lines);
        }
        Ok(())
    }

    fn fail(&self, e: &JournalError) {
        let mut failed = lock(&self.failed);
        if failed.is_none() {
            error!(error = %e, "the session journal cannot be written; statements are refused until it can");
        }
        *failed = Some(e.to_string());
        self.unhealthy.store(true, Ordering::Release);
    }

    /// fdatasyncs what was written since the last call; when unhealthy, probes with an empty line.
    fn sync(&self) {
        let Some(files) = &self.files else { return };
        if !self.healthy() {
            let mut f = lock(files);
            if f.write(b"\n", &self.config).is_ok() {
                drop(f);
                *lock(&self.failed) = None;
                self.unhealthy.store(false, Ordering::Release);
                info!("the session journal is writable again");
            }
            return;
        }
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let (file, path) = {
            let f = lock(files);
            (f.current.clone(), f.current_path.clone())
        };
        if let Err(e) = file.sync_data() {
            self.fail(&io("fdatasync", &path)(e));
        }
    }

    /// Writes and fdatasyncs everything now (at shutdown).
    pub fn sync_now(&self) {
        self.dirty.store(true, Ordering::Release);
        self.sync();
        if let Some(s) = &self.stdout {
            s.flush();
        }
    }
}

impl Files {
    fn write(&mut self, lines: &[u8], config: &JournalConfig) -> Result<(), JournalError> {
        if self.torn {
            (&*self.current)
                .write_all(b"\n")
                .map_err(io("write to", &self.current_path))?;
            self.torn = false;
        }
        if let Err(e) = (&*self.current).write_all(lines) {
            self.torn = true;
            return Err(io("write to", &self.current_path)(e));
        }
        self.current_size += lines.len() as u64;
        if self.current_size >= config.segment_bytes {
            self.rotate(config)?;
        }
        Ok(())
    }

    /// Closes the current segment (fdatasync'ed) and starts a new one; deletes the oldest segments
    /// beyond `max_bytes`.
    fn rotate(&mut self, config: &JournalConfig) -> Result<(), JournalError> {
        self.current
            .sync_data()
            .map_err(io("fdatasync", &self.current_path))?;
        let (file, path) = new_segment(&self.dir, &mut self.last_ms)?;
        let old = std::mem::replace(&mut self.current_path, path);
        self.older.push_back((old, self.current_size));
        self.current = Arc::new(file);
        self.current_size = 0;
        let mut total: u64 = self.older.iter().map(|(_, n)| n).sum();
        while total > config.max_bytes.saturating_sub(config.segment_bytes) {
            let Some((path, size)) = self.older.pop_front() else {
                break;
            };
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    info!(segment = %path.display(), "oldest journal segment deleted (max_bytes reached)")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(segment = %path.display(), error = %e, "could not delete an old journal segment")
                }
            }
            total -= size;
        }
        Ok(())
    }
}

fn open_files(dir: &Path) -> Result<Files, JournalError> {
    create_private_dir(dir)?;
    let mut older = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_segment_name(name) {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            older.push((entry.path(), size));
        }
    }
    older.sort();
    let mut last_ms = older
        .iter()
        .filter_map(|(p, _)| segment_millis(p.file_name()?.to_str()?))
        .max()
        .unwrap_or(0);
    let (file, path) = new_segment(dir, &mut last_ms)?;
    Ok(Files {
        dir: dir.to_owned(),
        current: Arc::new(file),
        current_path: path,
        current_size: 0,
        older: older.into(),
        torn: false,
        last_ms,
    })
}

/// Whether a file name is a journal segment's.
pub fn is_segment_name(name: &str) -> bool {
    name.starts_with(SEGMENT_PREFIX) && name.ends_with(SEGMENT_SUFFIX)
}

fn create_private_dir(dir: &Path) -> Result<(), JournalError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(io("create the journal directory", dir))
}

/// The start time (ms since the epoch) in a segment's name.
fn segment_millis(name: &str) -> Option<u64> {
    name.strip_prefix(SEGMENT_PREFIX)?.get(..15)?.parse().ok()
}

/// A new segment, named so that names sort by age: its start in ms since the epoch, zero-padded, and
/// always later than `last_ms` (the newest segment's), even if the clock went back.
fn new_segment(dir: &Path, last_ms: &mut u64) -> Result<(File, PathBuf), JournalError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let pid = std::process::id();
    for _ in 0..1000 {
        let ms = u64::try_from(now).unwrap_or(u64::MAX).max(*last_ms + 1);
        *last_ms = ms;
        let path = dir.join(format!("{SEGMENT_PREFIX}{ms:015}-{pid}{SEGMENT_SUFFIX}"));
        let mut options = OpenOptions::new();
        options.append(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("create the journal segment", &path)(e)),
        }
    }
    Err(JournalError::Io {
        what: "find a free segment name in",
        path: dir.to_owned(),
        error: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}

fn sync_loop(journal: &Weak<Journal>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(j) = journal.upgrade() else { return };
        j.sync();
    }
}

/// A random session id: 16 hex digits.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system RNG failing is not a reason to refuse a session; ids stay unique enough in time.
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        bytes = (t.as_nanos() as u64).to_be_bytes();
    }
    crate::hex::encode(&bytes)
}

#[cfg(test)]
mod tests;
