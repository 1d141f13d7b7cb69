//! The local approval store: ApprovalRequests as YAML files in a directory, for running without a
//! cluster (DESIGN sections 6 and 9).
//!
//! # Files
//!
//! One file per request, `<dir>/<name>.yaml`, holding a full ApprovalRequest document — `apiVersion`,
//! `kind`, `metadata` (`name`, `creationTimestamp`), `spec` (connection, requester, statement,
//! fingerprint, rule, expiresAt) and `status` — the same object `kubectl get approvalrequest NAME -o
//! yaml` shows in a cluster, readable as a [`Document`]. The directory is created with mode 0700 and
//! the files with 0600: they hold SQL text, and whoever can write them can approve statements.
//!
//! Approving is setting `status.phase` to `Approved` (or `Denied`, optionally with `status.reason`) —
//! by editing the file, the same gesture as `kubectl patch ... --subresource=status`, or with
//! `dbward-sidecar approve NAME` / `deny NAME`, which also stamp `decidedBy` and `decidedAt`. A phase
//! set by hand without `decidedAt` counts as decided when the file was last modified; the store writes
//! that time back when it acts on the decision.
//!
//! # Latency
//!
//! [`ApprovalStore::decided`] polls the file every [`POLL_INTERVAL`] (200 ms): a `stat` per poll, and
//! a read only when the file's inode, size or modification time changed. A decision is therefore seen
//! within about 200 ms of the file being written. A removed file is believed only on two polls in a
//! row (an editor that saves by renaming may leave the name empty for an instant).
//!
//! # Robustness
//!
//! Files larger than [`MAX_FILE_BYTES`], non-`.yaml` files and names that are not DNS-1123 labels are
//! never read. A file a person broke (unparseable YAML, a misspelled phase, a changed spec) keeps its
//! request waiting; the store logs one warning naming the request, never its SQL (the statement may
//! hold personal data; the parse error, which may quote the file, is logged at debug only).
//!
//! Every write goes to a temporary file in the same directory, is fsynced, and is renamed over the
//! request's file (new requests are linked into place, never overwriting), so several stores —
//! several sidecar processes — on one directory never see or leave a half-written file. Every
//! read-modify-write (a decision, expiring, recording a grant's use or `decidedAt`, looking for a pending
//! twin then creating a request, deleting old requests) holds the directory lock, an `flock` on
//! [`LOCK_FILE`]: two processes never overwrite each other's update, a request is decided once, and a
//! once-only grant is used once. A person editing a file takes no lock: if they save at the very moment
//! the store updates it (marking it Expired after a timeout, recording a grant's use), one of the two
//! writes wins, as with any two editors of one file.
//!
//! A file is read only after checking, on the opened file, that it is a regular file no larger than
//! [`MAX_FILE_BYTES`], so a file swapped for another between a `stat` and the read is still read
//! bounded.
//!
//! # Who decides
//!
//! `dbward-sidecar approve` refuses when the approver is the requester — the Unix uid running it is
//! `spec.requester.uid`, or its name is the requester's subject — as the operator's webhook does in a
//! cluster; denying one's own request is allowed. See [`Decider`]. Editing the file cannot be checked.
//! A pending request is reused only for the same requester — subject, service account, pod and uid —
//! so that one user's statement never waits on (and runs by) a request another user sent.
//!
//! # Retention
//!
//! Decided requests are deleted [`DEFAULT_RETENTION`] (24 h, or [`DirStore::with_retention`]) after
//! their decision — expired ones after the later of the decision and `spec.expiresAt`, approvals not
//! before their grant can no longer be used, pending ones never while they can be decided — by the
//! sidecar's store while it scans the directory, at most [`MAX_REMOVALS`] per scan. Listing and deciding
//! delete nothing.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use dbward_crds::{
    ApprovalPhase, ApprovalRequestSpec, ApprovalRequestStatus, Metadata, format_rfc3339, parse_rfc3339,
};
use futures_util::future::BoxFuture;
use tracing::{debug, info, warn};

use super::{ApprovalError, ApprovalStore, Decision, NewRequest, Ticket, USED_AT_ANNOTATION, is_valid_name};

mod cleanup;
mod decide;
mod dirlock;
mod file;
mod scan;
#[cfg(test)]
mod tests;

pub use cleanup::{DEFAULT_RETENTION, MAX_REMOVALS, MIN_RETENTION};
pub use decide::{DecideError, Decider, process_uids};
use dirlock::Held;
pub use dirlock::LOCK_FILE;
pub use file::Entry;
pub(crate) use file::shell_quote;
use file::{
    FileState, Stamp, create_from, io_error, new_name, random_suffix, read_file, remove_stale_temp_files,
    round_up_to_second, write_temp,
};

/// How often [`ApprovalStore::decided`] looks at a waiting request's file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Files larger than this are not read (a request the store writes is a few KiB plus the statement).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Consecutive polls that must find a waiting request's file gone before it counts as removed.
const MISSING_POLLS: u32 = 2;
/// How far in the future a `decidedAt` may lie (clocks of different machines) and still count.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The reason given when a waiting request's file disappears.
pub const REMOVED_REASON: &str = "the request was removed";

/// The requests of a directory, as [`DirStore::list`] reads them.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Readable requests, oldest first.
    pub entries: Vec<Entry>,
    /// `(name, why)` for each `.yaml` file that cannot be read as a request.
    pub broken: Vec<(String, String)>,
}

/// An [`ApprovalStore`] over a directory of ApprovalRequest files (see the module documentation).
/// Cloning it shares the store.
#[derive(Debug, Clone)]
pub struct DirStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The directory, canonical.
    dir: PathBuf,
    /// Parsed files by name, valid while the file's stamp is unchanged.
    cache: Mutex<HashMap<String, (Stamp, Cached)>>,
    /// Once-only grants this process used (also recorded in the files).
    used: Mutex<HashSet<String>>,
    /// The spec of each request this process made or reused, until it expires: a waiter compares the
    /// file with it, so a spec edited by hand cannot be what gets approved.
    specs: Mutex<HashMap<String, (SystemTime, ApprovalRequestSpec)>>,
    /// Serializes the holders of the directory lock within the process ([`dirlock`]).
    serial: Mutex<()>,
    /// How long decided requests are kept.
    retention: Mutex<cleanup::Retention>,
}

type Cached = Result<Arc<Entry>, String>;

/// One poll of a waiting request.
enum Poll {
    Missing,
    Unchanged,
    Broken(Option<Stamp>, ApprovalError),
    Read(Stamp, Box<Entry>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DirStore {
    /// A store over `dir`, creating it (mode 0700, with missing parents) if it does not exist.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, ApprovalError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error("create the approvals directory", &dir))?;
        Self::open(dir)
    }

    /// A store over an existing directory (the CLI: a mistyped path is an error, not a new directory).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ApprovalError> {
        let dir = dir.into();
        let what = "open the approvals directory";
        let meta = fs::metadata(&dir).map_err(io_error(what, &dir))?;
        if !meta.is_dir() {
            return Err(io_error(what, &dir)(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        let dir = fs::canonicalize(&dir).map_err(io_error(what, &dir))?;
        if meta.permissions().mode() & 0o077 != 0 {
            warn!(
                dir = %dir.display(),
                "the approvals directory is open to other users: whoever can write in it can approve statements (chmod 700 it)"
            );
        }
        remove_stale_temp_files(&dir);
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                cache: Mutex::default(),
                used: Mutex::default(),
                specs: Mutex::default(),
                serial: Mutex::default(),
                retention: Mutex::default(),
            }),
        })
    }

    /// The directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The file of request `name`.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.inner.path(name)
    }

    /// Every request in the directory, oldest first, and the files that cannot be read.
    pub fn list(&self) -> Result<Listing, ApprovalError> {
        let scan = self.inner.scan()?;
        let mut entries: Vec<Entry> = scan.entries.iter().map(|e| (**e).clone()).collect();
        entries.sort_by(|a, b| {
            (a.created_at.unwrap_or(a.modified), &a.name).cmp(&(b.created_at.unwrap_or(b.modified), &b.name))
        });
        Ok(Listing {
            entries,
            broken: scan.broken,
        })
    }

    /// Request `name`; [`ApprovalError::NotFound`] (listing the pending ones) when there is none.
    pub fn get(&self, name: &str) -> Result<Entry, ApprovalError> {
        check_name(name)?;
        match self.inner.read(name)? {
            FileState::Ok(_, entry) => Ok(*entry),
            FileState::Broken(_, e) => Err(e),
            FileState::Missing => Err(self.inner.not_found(name, SystemTime::now())),
        }
    }

    /// The command that denies `name`, the counterpart of [`ApprovalStore::approve_hint`].
    pub fn deny_hint(&self, name: &str) -> String {
        self.inner.hint("deny", name)
    }
}

impl ApprovalStore for DirStore {
    fn request(&self, req: NewRequest) -> BoxFuture<'static, Result<Ticket, ApprovalError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || inner.request(req, SystemTime::now())))
    }

    fn decided(&self, name: &str) -> BoxFuture<'static, Result<Decision, ApprovalError>> {
        let inner = self.inner.clone();
        let name = name.to_owned();
        Box::pin(async move {
            check_name(&name)?;
            inner.wait(name).await
        })
    }

    fn expire(&self, name: &str, reason: &str) -> BoxFuture<'static, Result<(), ApprovalError>> {
        let inner = self.inner.clone();
        let (name, reason) = (name.to_owned(), reason.to_owned());
        Box::pin(async move {
            check_name(&name)?;
            blocking(move || inner.expire(&name, &reason, SystemTime::now())).await
        })
    }

    fn take_grant(
        &self,
        subject: &str,
        fingerprint: &str,
        window: Duration,
        once: bool,
    ) -> BoxFuture<'static, Result<Option<String>, ApprovalError>> {
        let inner = self.inner.clone();
        let (subject, fingerprint) = (subject.to_owned(), fingerprint.to_owned());
        Box::pin(blocking(move || {
            inner.take_grant(&subject, &fingerprint, window, once, SystemTime::now())
        }))
    }

    fn approve_hint(&self, name: &str) -> String {
        self.inner.hint("approve", name)
    }
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApprovalError> + Send + 'static,
) -> Result<T, ApprovalError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApprovalError::Task(e.to_string()))?
}

fn check_name(name: &str) -> Result<(), ApprovalError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApprovalError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// How a file is put in place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    /// A new request: never overwrite (false when the name is taken).
    Create,
    /// An update: replace the file.
    Replace,
}

impl Inner {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.yaml"))
    }

    fn hint(&self, verb: &str, name: &str) -> String {
        format!(
            "dbward-sidecar {verb} {name} --approvals {}",
            shell_quote(&self.dir.to_string_lossy())
        )
    }

    fn read(&self, name: &str) -> Result<FileState, ApprovalError> {
        read_file(&self.path(name), name)
    }

    fn not_found(&self, name: &str, now: SystemTime) -> ApprovalError {
        let mut pending: Vec<String> = match self.scan() {
            Ok(scan) => scan
                .entries
                .iter()
                .filter(|e| e.is_open(now))
                .map(|e| e.name.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        pending.sort();
        ApprovalError::NotFound {
            name: name.to_owned(),
            dir: self.dir.clone(),
            pending,
        }
    }

    /// Writes `entry` as its file, atomically: a temporary file, fsynced, then renamed (or, for
    /// [`Put::Create`], linked) into place. Returns false when creating and the name is taken.
    fn write(&self, entry: &Entry, put: Put) -> Result<bool, ApprovalError> {
        let path = self.path(&entry.name);
        let yaml = serde_saphyr::to_string(&entry.to_file()).map_err(|e| ApprovalError::Invalid {
            path: path.clone(),
            message: format!("cannot be written as YAML: {e}"),
        })?;
        let text = format!(
            "# A statement dbward-sidecar holds until a person decides. Approve or deny it with\n\
             #   {}\n\
             #   {} --reason TEXT\n\
             # or by setting status.phase below to Approved or Denied (and, if you like, status.reason).\n\
             {yaml}",
            self.hint("approve", &entry.name),
            self.hint("deny", &entry.name),
        );
        let tmp = self
            .dir
            .join(format!(".{}.yaml.{}.tmp", entry.name, random_suffix()?));
        let result = write_temp(&tmp, text.as_bytes()).and_then(|()| match put {
            Put::Replace => fs::rename(&tmp, &path)
                .map(|()| true)
                .map_err(io_error("replace the approval request file", &path)),
            Put::Create => create_from(&tmp, &path),
        });
        let _ = fs::remove_file(&tmp);
        if result.is_ok()
            && let Ok(dir) = fs::File::open(&self.dir)
        {
            // Make the rename durable; not every file system can sync a directory.
            let _ = dir.sync_all();
        }
        result
    }

    /// Takes the directory lock ([`dirlock`]).
    fn lock_dir(&self) -> Result<Held<'_>, ApprovalError> {
        dirlock::lock_dir(&self.dir, &self.serial, dirlock::LOCK_WAIT)
    }

    /// Reads request `name`, lets `f` change it, and writes it back when `f` says so, holding the
    /// directory lock. None when the file does not exist; a broken file is an error.
    fn update<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Entry) -> Result<(bool, T), ApprovalError>,
    ) -> Result<Option<T>, ApprovalError> {
        let held = self.lock_dir()?;
        self.update_held(&held, name, f)
    }

    /// [`Self::update`] with the directory lock already held.
    fn update_held<T>(
        &self,
        _held: &Held<'_>,
        name: &str,
        f: impl FnOnce(&mut Entry) -> Result<(bool, T), ApprovalError>,
    ) -> Result<Option<T>, ApprovalError> {
        match self.read(name)? {
            FileState::Missing => Ok(None),
            FileState::Broken(_, e) => Err(e),
            FileState::Ok(_, mut entry) => {
                let (write, out) = f(&mut entry)?;
                if write {
                    self.write(&entry, Put::Replace)?;
                }
                Ok(Some(out))
            }
        }
    }

    fn request(&self, req: NewRequest, now: SystemTime) -> Result<Ticket, ApprovalError> {
        let expires_at = now
            .checked_add(req.timeout)
            .map(round_up_to_second)
            .ok_or_else(|| ApprovalError::InvalidRequest(format!("timeout {:?} is too long", req.timeout)))?;
        let spec = ApprovalRequestSpec {
            connection: req.connection,
            requester: req.requester,
            statement: req.statement,
            fingerprint: req.fingerprint,
            rule: req.rule,
            expires_at: format_rfc3339(expires_at),
        };
        if let Err(errors) = spec.validate() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(ApprovalError::InvalidRequest(list.join("; ")));
        }
        let held = self.lock_dir()?;
        let scan = self.scan()?;
        self.sweep(&held, &scan, now);
        // The whole requester, not only its subject: a request reused by another process (another uid)
        // would let that process's user approve what it sent.
        let twin = scan
            .entries
            .iter()
            .filter(|e| {
                e.is_open(now)
                    && e.spec.requester == spec.requester
                    && e.spec.fingerprint == spec.fingerprint
                    && e.spec.connection == spec.connection
            })
            .max_by_key(|e| e.expires_at);
        if let Some(twin) = twin {
            debug!(request = %twin.name, "an identical request is pending: reusing it");
            self.remember(&twin.name, twin.expires_at, &twin.spec, now);
            return Ok(Ticket {
                name: twin.name.clone(),
                reused: true,
                expires_at: twin.expires_at,
            });
        }
        let created = format_rfc3339(now);
        for _ in 0..8 {
            let name = new_name(&spec.connection)?;
            let entry = Entry {
                name: name.clone(),
                metadata: Metadata {
                    name: name.clone(),
                    ..Metadata::default()
                },
                spec: spec.clone(),
                status: ApprovalRequestStatus::default(),
                created_at: parse_rfc3339(&created).ok(),
                expires_at,
                decided_at: None,
                modified: now,
                creation_timestamp: Some(created.clone()),
            };
            if self.write(&entry, Put::Create)? {
                self.remember(&name, expires_at, &spec, now);
                info!(request = %name, connection = %spec.connection, rule = %spec.rule, "approval request created");
                return Ok(Ticket {
                    name,
                    reused: false,
                    expires_at,
                });
            }
        }
        Err(ApprovalError::Task(
            "no free request name after 8 tries".to_owned(),
        ))
    }

    /// Remembers the spec of a request this process asked for (and forgets those expired).
    fn remember(&self, name: &str, expires_at: SystemTime, spec: &ApprovalRequestSpec, now: SystemTime) {
        let mut specs = lock(&self.specs);
        specs.retain(|_, (expires, _)| *expires > now);
        specs.insert(name.to_owned(), (expires_at, spec.clone()));
    }

    fn expire(&self, name: &str, reason: &str, now: SystemTime) -> Result<(), ApprovalError> {
        let expired = self.update(name, |entry| {
            if entry.status.phase.is_final() {
                return Ok((false, false));
            }
            entry.status = ApprovalRequestStatus {
                phase: ApprovalPhase::Expired,
                decided_by: None,
                decided_at: Some(format_rfc3339(now)),
                reason: Some(reason.to_owned()),
            };
            Ok((true, true))
        })?;
        match expired {
            Some(true) => info!(request = %name, %reason, "approval request expired"),
            Some(false) => debug!(request = %name, "approval request already decided: not expired"),
            None => debug!(request = %name, "approval request file gone: nothing to expire"),
        }
        Ok(())
    }

    fn take_grant(
        &self,
        subject: &str,
        fingerprint: &str,
        window: Duration,
        once: bool,
        now: SystemTime,
    ) -> Result<Option<String>, ApprovalError> {
        self.note_window(window);
        let held = self.lock_dir()?;
        let usable = |e: &Entry, used: &HashSet<String>| {
            e.status.phase == ApprovalPhase::Approved
                && e.spec.requester.subject == subject
                && e.spec.fingerprint == fingerprint
                && e.decided_at
                    .is_some_and(|at| within(at, e.expires_at, window, now))
                && (!once || (!e.is_used() && !used.contains(&e.name)))
        };
        let scan = self.scan()?;
        self.sweep(&held, &scan, now);
        let mut candidates: Vec<&Arc<Entry>> = {
            let mut used = lock(&self.used);
            // Forget the used grants whose files are gone (deleted after their retention).
            let present: HashSet<&str> = scan.entries.iter().map(|e| e.name.as_str()).collect();
            used.retain(|name| present.contains(name.as_str()));
            scan.entries.iter().filter(|e| usable(e, &used)).collect()
        };
        candidates.sort_by_key(|e| e.decided_at);
        for candidate in candidates {
            let name = &candidate.name;
            let marked = self.update_held(&held, name, |entry| {
                // The file may have changed since the scan.
                if !usable(entry, &lock(&self.used)) {
                    return Ok((false, false));
                }
                let mut write = false;
                if entry.status.decided_at.is_none() {
                    entry.status.decided_at = entry.decided_at.map(format_rfc3339);
                    write = true;
                }
                if !entry.is_used() {
                    entry
                        .metadata
                        .annotations
                        .insert(USED_AT_ANNOTATION.to_owned(), format_rfc3339(now));
                    write = true;
                }
                Ok((write, true))
            });
            match marked {
                Ok(Some(true)) => {
                    if once {
                        lock(&self.used).insert(name.clone());
                    }
                    info!(request = %name, once, "approval grant used");
                    return Ok(Some(name.clone()));
                }
                Ok(Some(false) | None) => {}
                Err(
                    e @ (ApprovalError::Parse { .. }
                    | ApprovalError::Invalid { .. }
                    | ApprovalError::TooLarge { .. }),
                ) => warn_broken(name, &e),
                // A once-only grant whose use cannot be recorded is not used: fail closed.
                Err(e) if once => return Err(e),
                Err(e) => {
                    warn!(request = %name, error = %e, "could not record the use of an approval grant");
                    return Ok(Some(name.clone()));
                }
            }
        }
        Ok(None)
    }

    /// One look at a waiting request's file: re-read only when its stamp changed.
    fn poll(&self, name: &str, last: Option<Stamp>) -> Poll {
        let path = self.path(name);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Poll::Missing,
            Err(e) => return Poll::Broken(None, io_error("look at the approval request file", &path)(e)),
            Ok(m) if Some(Stamp::of(&m)) == last => return Poll::Unchanged,
            Ok(_) => {}
        }
        match read_file(&path, name) {
            Ok(FileState::Missing) => Poll::Missing,
            Ok(FileState::Broken(stamp, e)) => Poll::Broken(Some(stamp), e),
            Ok(FileState::Ok(stamp, entry)) => Poll::Read(stamp, entry),
            Err(e) => Poll::Broken(None, e),
        }
    }

    /// Polls request `name` until it is decided or its file is gone.
    async fn wait(self: Arc<Self>, name: String) -> Result<Decision, ApprovalError> {
        let mut last: Option<Stamp> = None;
        let mut missing = 0;
        let mut warned = false;
        // The spec as asked; for a request another process made, as first read.
        let mut spec: Option<ApprovalRequestSpec> = lock(&self.specs).get(&name).map(|(_, s)| s.clone());
        loop {
            let poll = {
                let (inner, name) = (self.clone(), name.clone());
                blocking(move || Ok(inner.poll(&name, last))).await?
            };
            if !matches!(poll, Poll::Missing) {
                missing = 0;
            }
            match poll {
                Poll::Missing => {
                    missing += 1;
                    if missing >= MISSING_POLLS {
                        info!(request = %name, "approval request file removed: the request counts as expired");
                        return Ok(Decision {
                            phase: ApprovalPhase::Expired,
                            decided_by: None,
                            decided_at: None,
                            reason: Some(REMOVED_REASON.to_owned()),
                        });
                    }
                }
                Poll::Unchanged => {}
                Poll::Broken(stamp, e) => {
                    last = stamp;
                    if !warned {
                        warn_broken(&name, &e);
                        warned = true;
                    }
                }
                Poll::Read(stamp, entry) => {
                    last = Some(stamp);
                    let first = spec.get_or_insert_with(|| entry.spec.clone());
                    if *first != entry.spec {
                        if !warned {
                            warn!(
                                request = %name,
                                "the approval request's spec was changed (it is immutable): the request keeps waiting until the spec is restored"
                            );
                            warned = true;
                        }
                    } else if entry.status.phase.is_final() {
                        if entry.status.decided_at.is_none() {
                            self.stamp_decided_at(&name).await;
                        }
                        return Ok(Decision {
                            phase: entry.status.phase,
                            decided_by: entry.status.decided_by,
                            decided_at: entry.decided_at,
                            reason: entry.status.reason,
                        });
                    } else {
                        warned = false;
                    }
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Writes `decidedAt` (the file's modification time) into a request decided by hand without it.
    async fn stamp_decided_at(self: &Arc<Self>, name: &str) {
        let (inner, name) = (self.clone(), name.to_owned());
        let result = blocking(move || {
            inner.update(&name, |entry| {
                if !entry.status.phase.is_final() || entry.status.decided_at.is_some() {
                    return Ok((false, ()));
                }
                entry.status.decided_at = entry.decided_at.map(format_rfc3339);
                Ok((true, ()))
            })
        })
        .await;
        if let Err(e) = result {
            debug!(error = %e, "could not record decidedAt");
        }
    }
}

/// Whether a grant decided at `decided_at` may be used at `now`: less than `window` ago, not after the
/// request expired, and not (beyond clock skew) in the future.
fn within(decided_at: SystemTime, expires_at: SystemTime, window: Duration, now: SystemTime) -> bool {
    if decided_at > expires_at {
        return false;
    }
    match now.duration_since(decided_at) {
        Ok(age) => age < window,
        Err(ahead) => ahead.duration() <= CLOCK_SKEW,
    }
}

fn warn_broken(name: &str, e: &ApprovalError) {
    warn!(
        request = %name,
        "the approval request file cannot be read (run `dbward-sidecar approvals --all` to see why); the request keeps waiting"
    );
    debug!(request = %name, error = %e, "why the approval request file cannot be read");
}
