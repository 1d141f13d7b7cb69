//! Retention: decided requests are deleted some time after their decision, as the operator deletes
//! ApprovalRequest objects in a cluster (`--approval-retention`, 24 h by default).
//!
//! A request file may be deleted once its retention has passed:
//! - Approved or Denied: [`DirStore::with_retention`] (default [`DEFAULT_RETENTION`]) after `decidedAt`
//!   (for a phase set by hand without it, after the file was last written; a `decidedAt` later than
//!   that, beyond clock skew, is not believed). An approval that can be a grant in mode `reject` is kept
//!   at least as long as its grant can be used: the longest `grantWindow` this store was asked about,
//!   and the request's own timeout (the grant window of a policy without `grantWindow`).
//! - Expired: the retention after the later of `decidedAt` and `spec.expiresAt`.
//! - Pending: never while it can be decided; one still Pending past its `spec.expiresAt` (its sidecar
//!   stopped before marking it Expired) is expired in all but name, and goes the retention after
//!   `spec.expiresAt`.
//!
//! Files that cannot be read as requests are never deleted. The sidecar's store deletes while it scans
//! the directory to ask for approval or to look for a grant, at most [`MAX_REMOVALS`] files per scan,
//! each read again under the directory lock just before it goes; listing and deciding
//! (`dbward-sidecar approvals|approve|deny`) delete nothing.

use std::{
    fs, io,
    time::{Duration, SystemTime},
};

use dbward_crds::ApprovalPhase;
use tracing::{info, warn};

use super::{
    CLOCK_SKEW, DirStore, Entry, Inner, dirlock::Held, file::FileState, file::read_file, lock, scan::Scan,
};

/// How long decided requests are kept by default: the operator's `--approval-retention` default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The shortest retention: a waiting sidecar must see the decision before the file goes.
pub const MIN_RETENTION: Duration = Duration::from_secs(60);
/// Most files deleted in one scan.
pub const MAX_REMOVALS: usize = 64;

/// What decides how long requests are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Retention {
    /// How long decided requests are kept.
    pub(super) keep: Duration,
    /// The longest grant window [`crate::approval::ApprovalStore::take_grant`] was asked about.
    pub(super) longest_window: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep: DEFAULT_RETENTION,
            longest_window: Duration::ZERO,
        }
    }
}

impl DirStore {
    /// Keeps decided requests `retention` (at least [`MIN_RETENTION`]) instead of
    /// [`DEFAULT_RETENTION`] before deleting them (see *Retention* in the module documentation). Set it
    /// at least as long as the longest `grantWindow` of the policies that use the directory: an
    /// approval's grant is kept that long only once this process was asked for such a grant.
    #[must_use]
    pub fn with_retention(self, retention: Duration) -> Self {
        lock(&self.inner.retention).keep = retention.max(MIN_RETENTION);
        self
    }

    /// How long decided requests are kept.
    pub fn retention(&self) -> Duration {
        lock(&self.inner.retention).keep
    }
}

/// When request `e` may be deleted, under `retention`; None: never.
pub(super) fn removable_at(e: &Entry, retention: Retention) -> Option<SystemTime> {
    let keep = retention.keep;
    let (since, keep) = match e.status.phase {
        ApprovalPhase::Pending => (e.expires_at, keep),
        phase => {
            let decided = e.decided_at.unwrap_or(e.modified);
            let believed = if decided > e.modified.checked_add(CLOCK_SKEW)? {
                e.modified
            } else {
                decided
            };
            match phase {
                ApprovalPhase::Expired => (believed.max(e.expires_at), keep),
                // A grant is usable until `window` after decidedAt, if decided before expiresAt.
                ApprovalPhase::Approved if decided <= e.expires_at => {
                    let timeout = e
                        .created_at
                        .and_then(|created| e.expires_at.duration_since(created).ok())
                        .unwrap_or_default();
                    (believed, keep.max(retention.longest_window).max(timeout))
                }
                _ => (believed, keep),
            }
        }
    };
    since.checked_add(keep)
}

impl Inner {
    /// Notes that a grant of `window` was asked for: approvals are kept at least that long.
    pub(super) fn note_window(&self, window: Duration) {
        let mut retention = lock(&self.retention);
        retention.longest_window = retention.longest_window.max(window);
    }

    /// Deletes up to [`MAX_REMOVALS`] of the scanned requests whose retention has passed at `now`,
    /// each read again first (the lock is held, so nobody else's update is lost). Returns how many
    /// files went.
    pub(super) fn sweep(&self, _held: &Held<'_>, scan: &Scan, now: SystemTime) -> usize {
        let retention = *lock(&self.retention);
        let due = |e: &Entry| removable_at(e, retention).is_some_and(|at| at <= now);
        let mut removed = 0;
        for entry in scan.entries.iter().filter(|e| due(e)).take(MAX_REMOVALS) {
            let name = &entry.name;
            let path = self.path(name);
            match read_file(&path, name) {
                Ok(FileState::Ok(_, current)) if due(&current) => {}
                _ => continue,
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    lock(&self.cache).remove(name.as_str());
                    info!(request = %name, phase = %entry.status.phase, "approval request deleted after its retention");
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(request = %name, error = %e, "could not delete an approval request past its retention");
                }
            }
        }
        removed
    }
}
