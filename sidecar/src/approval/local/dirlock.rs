//! The directory lock: one process at a time reads, changes and writes back a request file.
//!
//! Every read-modify-write of the store — a decision, expiring, marking a grant used, recording
//! `decidedAt`, looking for a pending twin then creating a request, deleting requests past their
//! retention — holds an exclusive `flock` on [`LOCK_FILE`] in the approvals directory, and within one
//! process a mutex too. Two sidecar processes (or a sidecar and `dbward-sidecar approve`) sharing a
//! directory therefore never overwrite each other's update, and a once-only grant is used once. The
//! kernel releases a `flock` when its process dies, so a crash leaves no stale lock.
//!
//! The lock is advisory: a person editing a file by hand does not take it. Where the file system has no
//! `flock` (some network file systems) or the lock file cannot be opened for lack of permission, the
//! store works unlocked (with one warning), as safe as a single process is.

use std::{
    fs::{self, TryLockError},
    io,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::{debug, warn};

use super::{file::io_error, lock as lock_mutex};
use crate::approval::ApprovalError;

/// The lock file in the approvals directory (not a request: requests end in `.yaml`).
pub const LOCK_FILE: &str = ".dbward-approvals.lock";
/// How long to wait for another process to release the lock before giving up.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Whether the warning that locking does not work was logged (once per process).
static WARNED: AtomicBool = AtomicBool::new(false);
/// How often to try again while another process holds the lock.
const RETRY: Duration = Duration::from_millis(5);

/// Proof that the directory lock is held; released on drop.
pub(super) struct Held<'a> {
    _file: Option<fs::File>,
    _serial: MutexGuard<'a, ()>,
}

/// Takes the lock of `dir`: first `serial` (this process), then the file lock (other processes),
/// waiting at most `wait` for the latter.
pub(super) fn lock_dir<'a>(
    dir: &Path,
    serial: &'a Mutex<()>,
    wait: Duration,
) -> Result<Held<'a>, ApprovalError> {
    let serial = lock_mutex(serial);
    let path = dir.join(LOCK_FILE);
    let opened = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        // Someone else's lock file: reading is enough to lock it.
        .or_else(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                fs::File::open(&path)
            } else {
                Err(e)
            }
        });
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            debug!(path = %path.display(), "cannot open the approvals lock file: working unlocked");
            return Ok(Held {
                _file: None,
                _serial: serial,
            });
        }
        Err(e) => return Err(io_error("open the approvals lock file", &path)(e)),
    };
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => {
                return Ok(Held {
                    _file: Some(file),
                    _serial: serial,
                });
            }
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(RETRY),
            Err(TryLockError::WouldBlock) => {
                return Err(io_error("lock the approvals directory with", &path)(
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("another process held the lock for more than {wait:?}"),
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                // No file locks here (ENOLCK, EOPNOTSUPP): as safe as a single process, no worse.
                if !WARNED.swap(true, Ordering::Relaxed) {
                    warn!(
                        path = %path.display(),
                        error = %e,
                        "cannot lock the approvals directory: two processes sharing it may overwrite each other's updates"
                    );
                }
                return Ok(Held {
                    _file: None,
                    _serial: serial,
                });
            }
        }
    }
}
