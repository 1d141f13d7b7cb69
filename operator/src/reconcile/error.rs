//! What can go wrong in a reconcile, and how the controllers react: log at warn (never a secret value:
//! the errors carry names and API statuses only) and try again with a growing delay.

use std::{collections::HashMap, error::Error as _, fmt::Write as _, sync::Mutex, time::Duration};

/// A reconcile that could not finish. Each variant names the object it was working on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace or no name, so nothing can be read or written for it.
    #[error("{kind} has no {what}; only namespaced objects with a name are reconciled")]
    MissingMetadata {
        /// The kind, e.g. `DatabaseConnection`.
        kind: std::borrow::Cow<'static, str>,
        /// `namespace` or `name`.
        what: &'static str,
    },
    /// Reading a Secret a DatabaseConnection references failed (other than "not found", which is a
    /// status, not an error).
    #[error("reading secret {namespace}/{name}: check the operator's RBAC (get secrets)")]
    ReadSecret {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The API's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// Listing the DatabaseConnections of a namespace failed.
    #[error("listing the DatabaseConnections of namespace {namespace}")]
    ListConnections {
        /// The namespace.
        namespace: String,
        /// The API's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// Reading a pod's Namespace failed.
    #[error("reading namespace {namespace}")]
    ReadNamespace {
        /// The namespace.
        namespace: String,
        /// The API's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// Writing an object's status (server-side apply) failed.
    #[error("applying the status of {kind} {namespace}/{name}")]
    ApplyStatus {
        /// The kind.
        kind: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The API's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// Deleting a decided ApprovalRequest failed.
    #[error("deleting ApprovalRequest {namespace}/{name} after its retention")]
    DeleteApproval {
        /// The request's namespace.
        namespace: String,
        /// The request's name.
        name: String,
        /// The API's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// Publishing an Event failed.
    #[error("publishing event {reason} for {kind} {namespace}/{name}")]
    PublishEvent {
        /// The Event's reason, e.g. `SidecarMissing`.
        reason: &'static str,
        /// The kind of the object the Event is about.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API's answer.
        #[source]
        source: Box<kube::Error>,
    },
}

/// The result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, fixed name of the variant, for the `error` label of the error counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingMetadata { .. } => "missing_metadata",
            Self::ReadSecret { .. } => "read_secret",
            Self::ListConnections { .. } => "list_connections",
            Self::ReadNamespace { .. } => "read_namespace",
            Self::ApplyStatus { .. } => "apply_status",
            Self::DeleteApproval { .. } => "delete_approval",
            Self::PublishEvent { .. } => "publish_event",
        }
    }

    /// The message with its sources, `outer: inner: innermost`, for logs.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = self.source();
        while let Some(cause) = source {
            // Writing to a String cannot fail.
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        text
    }
}

/// The first retry after a failure waits this long; each further failure doubles it.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between retries.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(300);

/// Failures in a row per object, for exponential backoff. An object's count is cleared by its next
/// successful reconcile.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Count a failure of `key` and return how long to wait before the next try.
    pub(crate) fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        retry_delay(*n)
    }

    /// Forget the failures of `key`.
    pub(crate) fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// The wait after the `failures`-th failure in a row: 5 s, 10 s, 20 s, ... up to 5 minutes.
pub(crate) fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let cases = [(1, 5), (2, 10), (3, 20), (4, 40), (6, 160), (7, 300), (40, 300)];
        for (failures, secs) in cases {
            assert_eq!(
                retry_delay(failures),
                Duration::from_secs(secs),
                "{failures} failures"
            );
        }
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a"), Duration::from_secs(5));
        assert_eq!(backoff.failed("a"), Duration::from_secs(10));
        assert_eq!(backoff.failed("b"), Duration::from_secs(5));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(5));
    }

    #[test]
    fn the_log_line_carries_the_api_answer_but_names_only() {
        let status = kube::core::Status::failure("secrets \"db\" is forbidden", "Forbidden").with_code(403);
        let err = Error::ReadSecret {
            namespace: "shop".into(),
            name: "db".into(),
            source: Box::new(kube::Error::Api(Box::new(status))),
        };
        let chain = err.chain();
        assert!(
            chain.starts_with("reading secret shop/db: check the operator's RBAC"),
            "{chain}"
        );
        assert!(chain.contains("forbidden"), "{chain}");
        assert_eq!(err.metric_label(), "read_secret");
    }
}
