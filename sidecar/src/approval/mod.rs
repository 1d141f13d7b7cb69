//! Approval requests: where statements held by `requireApproval` rules ask a person (DESIGN section 6).
//!
//! [`ApprovalStore`] is what the guard talks to: it creates an ApprovalRequest for a held statement (or
//! finds the identical one already pending), waits for its decision, withdraws it, and in mode `reject`
//! hands out the grant of an approved one. [`local::DirStore`] keeps the requests as YAML files in a
//! directory (running without a cluster); in a cluster the operator's control API does the same with
//! ApprovalRequest objects.

pub mod local;
pub mod operator;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use dbward_crds::{ApprovalPhase, Requester};
use futures_util::future::BoxFuture;

pub use local::DirStore;

pub use dbward_crds::approval::USED_AT_ANNOTATION;

/// A statement that needs a person's approval.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The DatabaseConnection the statement was sent to.
    pub connection: String,
    /// Who sent it, as the sidecar verified it; written to the request as is.
    pub requester: Requester,
    /// The SQL text, as the client sent it.
    pub statement: String,
    /// What an approval covers: the exact statement (and, for the extended protocol, its bound
    /// parameters) — computed by the caller.
    pub fingerprint: String,
    /// The rule that asked, `<policy>/<rule>`.
    pub rule: String,
    /// How long the request stays open.
    pub timeout: Duration,
}

/// A request made, or an identical one found still pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The request's name (a DNS-1123 label).
    pub name: String,
    /// Whether this is an earlier request from the same caller for the same statement, still pending.
    pub reused: bool,
    /// When the request expires if nobody decides (its `spec.expiresAt`).
    pub expires_at: SystemTime,
}

/// A request's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Approved, Denied or Expired.
    pub phase: ApprovalPhase,
    /// Who decided (`status.decidedBy`), when known.
    pub decided_by: Option<String>,
    /// When (`status.decidedAt`), when known.
    pub decided_at: Option<SystemTime>,
    /// Why, in the approver's words or the store's (`status.reason`).
    pub reason: Option<String>,
}

/// Why the store could not do what was asked. Messages name the request or the file, never the
/// statement's text.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// A file system operation failed.
    #[error("cannot {what} {}: {error}", .path.display())]
    Io {
        /// What was being done, e.g. "read the approval request file".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The file is larger than any request the store writes.
    #[error("approval request file {}: larger than {max} bytes, not read", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        max: u64,
    },
    /// The file is not a readable ApprovalRequest document (broken YAML, a misspelled field or phase).
    #[error("approval request file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// The file reads but is not a valid ApprovalRequest (wrong kind or name, invalid spec).
    #[error("approval request file {}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A [`NewRequest`] that cannot make a valid ApprovalRequest.
    #[error("cannot ask for approval: {0}")]
    InvalidRequest(String),
    /// Not the name of an approval request (DNS-1123 label: lower-case letters, digits and `-`, at most
    /// 63 characters).
    #[error(
        "{name:?} is not an approval request name (lower-case letters, digits and '-', at most 63 characters)"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// No request of that name.
    #[error("no approval request {name:?} in {}; {}", .dir.display(), pending_list(.pending))]
    NotFound {
        /// The name given.
        name: String,
        /// The approvals directory.
        dir: PathBuf,
        /// The names of the requests still pending there.
        pending: Vec<String>,
    },
    /// The request was decided already; a final phase does not change.
    #[error("approval request {name:?} is already {phase}{}", by_suffix(.decided_by.as_deref()))]
    AlreadyDecided {
        /// The request.
        name: String,
        /// Its final phase.
        phase: ApprovalPhase,
        /// Who decided, when known.
        decided_by: Option<String>,
    },
    /// The request is still Pending but past its `expiresAt`: nobody decided in time, the statement
    /// failed, and approving it now would change nothing.
    #[error(
        "approval request {name:?} expired at {expires_at} without a decision; run the statement again to ask anew"
    )]
    PastExpiry {
        /// The request.
        name: String,
        /// Its `spec.expiresAt`.
        expires_at: String,
    },
    /// The system's random source failed (request names are random).
    #[error("no random bytes for an approval request name")]
    Random,
    /// The store's background task failed.
    #[error("the approval store's task failed: {0}")]
    Task(String),
}

fn pending_list(pending: &[String]) -> String {
    if pending.is_empty() {
        "no request is pending there".to_owned()
    } else {
        format!("pending: {}", pending.join(", "))
    }
}

fn by_suffix(by: Option<&str>) -> String {
    by.map(|b| format!(" (by {b})")).unwrap_or_default()
}

/// Where approval requests live: a directory of files ([`DirStore`]) or the operator's control API.
pub trait ApprovalStore: Send + Sync + 'static {
    /// Creates a Pending request, or returns the still-pending one (not past its expiresAt) with the same
    /// requester.subject and fingerprint (reused = true).
    ///
    /// [`DirStore`] also requires the same connection for reuse: a request shown to an approver names
    /// the database the statement goes to.
    fn request(&self, req: NewRequest) -> BoxFuture<'static, Result<Ticket, ApprovalError>>;
    /// Resolves once the request is decided (phase Approved, Denied or Expired). It does not time out by
    /// itself (the caller wraps it in a timeout). A request whose file disappears resolves as Expired with
    /// reason "the request was removed".
    fn decided(&self, name: &str) -> BoxFuture<'static, Result<Decision, ApprovalError>>;
    /// Marks a still-Pending request Expired with `reason` (timed out, client went away); no-op when
    /// already final.
    fn expire(&self, name: &str, reason: &str) -> BoxFuture<'static, Result<(), ApprovalError>>;
    /// Mode reject: the name of an Approved request for this subject + fingerprint whose grant can be used
    /// now — approved (decidedAt) less than `window` ago and, when `once`, not used yet — marking it used.
    /// None when there is none.
    ///
    /// There is no connection here: a fingerprint that should not carry over between connections must
    /// cover the connection.
    fn take_grant(
        &self,
        subject: &str,
        fingerprint: &str,
        window: Duration,
        once: bool,
    ) -> BoxFuture<'static, Result<Option<String>, ApprovalError>>;
    /// The exact command a person runs to approve `name` (shown to the waiting client), e.g.
    /// `dbward-sidecar approve NAME --approvals /path`.
    fn approve_hint(&self, name: &str) -> String;
}

/// Whether `name` can name an approval request: a DNS-1123 label (lower-case letters, digits and `-`,
/// starting and ending with a letter or digit, at most 63 characters). Anything else — a path, `..` —
/// is refused before it reaches the file system.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}
