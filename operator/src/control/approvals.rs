//! ApprovalRequests on a sidecar's behalf: made from the pod's verified identity (so the requester is
//! not what the sidecar claims), found again when an identical one is pending, read back for their
//! decision, expired when the sidecar gives up, and, in mode reject, their grants taken.
//!
//! A pod may only see and touch requests of its own service account in its own namespace.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use dbward_crds::{
    ApprovalPhase, ApprovalRequest, ApprovalRequestSpec, Requester, format_rfc3339, parse_rfc3339,
    wire::{ApprovalCreate, ApprovalState, PodIdentity},
};
use kube::{ResourceExt, api::ObjectMeta};

pub use dbward_crds::approval::USED_AT_ANNOTATION;
/// The longest an approval request may stay open.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The largest statement accepted in a request (an object must stay well under etcd's 1.5 MiB).
pub const MAX_STATEMENT_BYTES: usize = 128 * 1024;
/// A clock difference between the operator and the API server that is tolerated.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("the statement is {0} bytes; at most {MAX_STATEMENT_BYTES} can be held for approval")]
    TooLong(usize),
    #[error("timeoutSeconds must be between 1 and {}", MAX_TIMEOUT.as_secs())]
    Timeout,
    #[error("the request is not valid: {0}")]
    Invalid(String),
}

/// `namespace/name` of the pod's service account, as written into `spec.requester.serviceAccount`.
pub fn service_account(who: &PodIdentity) -> String {
    format!("{}/{}", who.namespace, who.service_account)
}

/// The phase of a request (Pending while it has no status).
pub fn phase(ar: &ApprovalRequest) -> ApprovalPhase {
    ar.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// Whether the request belongs to the pod's service account in the pod's namespace.
pub fn owned_by(ar: &ApprovalRequest, who: &PodIdentity) -> bool {
    ar.namespace().as_deref() == Some(who.namespace.as_str())
        && ar.spec.requester.service_account.as_deref() == Some(service_account(who).as_str())
}

/// The answer for a request.
pub fn state_of(ar: &ApprovalRequest) -> ApprovalState {
    let status = ar.status.clone().unwrap_or_default();
    ApprovalState {
        name: ar.name_any(),
        phase: status.phase,
        decided_by: status.decided_by,
        decided_at: status.decided_at,
        reason: status.reason,
    }
}

/// The new request's object, named `name`, or why the body cannot make one.
pub fn new_request(
    who: &PodIdentity,
    body: &ApprovalCreate,
    name: &str,
    now: SystemTime,
) -> Result<ApprovalRequest, RequestError> {
    for (field, value) in [
        ("connection", &body.connection),
        ("subject", &body.subject),
        ("statement", &body.statement),
        ("fingerprint", &body.fingerprint),
        ("rule", &body.rule),
    ] {
        if value.trim().is_empty() {
            return Err(RequestError::Empty(field));
        }
    }
    if body.statement.len() > MAX_STATEMENT_BYTES {
        return Err(RequestError::TooLong(body.statement.len()));
    }
    if body.timeout_seconds == 0 || body.timeout_seconds > MAX_TIMEOUT.as_secs() {
        return Err(RequestError::Timeout);
    }
    let spec = ApprovalRequestSpec {
        connection: body.connection.clone(),
        requester: Requester {
            service_account: Some(service_account(who)),
            pod: Some(who.pod.clone()),
            subject: body.subject.clone(),
            uid: body.uid,
        },
        statement: body.statement.clone(),
        fingerprint: body.fingerprint.clone(),
        rule: body.rule.clone(),
        expires_at: format_rfc3339(now + Duration::from_secs(body.timeout_seconds)),
    };
    spec.validate().map_err(|errors| {
        RequestError::Invalid(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let mut ar = ApprovalRequest::new(name, spec);
    ar.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(who.namespace.clone()),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                "dbward-operator".to_owned(),
            )]
            .into_iter()
            .collect(),
        ),
        ..ObjectMeta::default()
    };
    Ok(ar)
}

fn expires_at(ar: &ApprovalRequest) -> Option<SystemTime> {
    parse_rfc3339(&ar.spec.expires_at).ok()
}

/// A still-pending request from the same caller (service account, subject) for the same statement on
/// the same connection, not past its expiry: asking again reuses it.
pub fn reusable<'a>(
    requests: &'a [Arc<ApprovalRequest>],
    who: &PodIdentity,
    body: &ApprovalCreate,
    now: SystemTime,
) -> Option<&'a Arc<ApprovalRequest>> {
    requests.iter().find(|ar| {
        owned_by(ar, who)
            && phase(ar) == ApprovalPhase::Pending
            && ar.spec.connection == body.connection
            && ar.spec.requester.subject == body.subject
            && ar.spec.fingerprint == body.fingerprint
            && expires_at(ar).is_some_and(|t| t > now)
    })
}

/// Approved requests of this caller for this fingerprint whose grant can be used now: approved less than
/// `window` ago (and not after their expiry), and, when `once`, not used yet. Oldest decision first.
pub fn grants<'a>(
    requests: &'a [Arc<ApprovalRequest>],
    who: &PodIdentity,
    subject: &str,
    fingerprint: &str,
    window: Duration,
    once: bool,
    now: SystemTime,
) -> Vec<&'a Arc<ApprovalRequest>> {
    let mut found: Vec<(SystemTime, &Arc<ApprovalRequest>)> = requests
        .iter()
        .filter(|ar| {
            owned_by(ar, who)
                && phase(ar) == ApprovalPhase::Approved
                && ar.spec.requester.subject == subject
                && ar.spec.fingerprint == fingerprint
                && (!once || !ar.annotations().contains_key(USED_AT_ANNOTATION))
        })
        .filter_map(|ar| {
            let decided = ar
                .status
                .as_ref()
                .and_then(|s| s.decided_at.as_deref())
                .and_then(|t| parse_rfc3339(t).ok())?;
            let in_window = match now.duration_since(decided) {
                Ok(age) => age < window,
                Err(ahead) => ahead.duration() <= CLOCK_SKEW,
            };
            let before_expiry = expires_at(ar).is_some_and(|e| decided <= e + CLOCK_SKEW);
            (in_window && before_expiry).then_some((decided, ar))
        })
        .collect();
    found.sort_by_key(|(t, _)| *t);
    found.into_iter().map(|(_, ar)| ar).collect()
}

/// A fresh request name: `dbward-` and 12 random hex digits.
pub fn random_name() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 6];
    aws_lc_rs::rand::fill(&mut bytes)?;
    Ok(format!(
        "dbward-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}
