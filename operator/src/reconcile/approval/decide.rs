//! What happens to an ApprovalRequest next, from its spec, its status and the clock. No I/O.

use std::time::{Duration, SystemTime};

use dbward_crds::{ApprovalPhase, ApprovalRequest, ApprovalRequestStatus, format_rfc3339, parse_rfc3339};
use kube::ResourceExt;

/// `status.reason` of a request the operator expired.
pub const EXPIRED_REASON: &str = "nobody decided before expiresAt";

/// Most bytes of an Event's note (the API's limit is 1 kB).
const MAX_NOTE: usize = 1024;

/// The next step for one ApprovalRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do before this time: the request expires then, or its retention ends.
    WaitUntil(SystemTime),
    /// Pending past `spec.expiresAt`: apply this status (phase Expired).
    Expire(ApprovalRequestStatus),
    /// Decided, and kept for the whole retention: delete it.
    Delete,
}

/// The next step for `request` at `now`, keeping decided requests for `retention` after `decidedAt`
/// (or, when that is missing or unreadable, after the request's creation).
///
/// A pending request whose `spec.expiresAt` cannot be read expires at once: it could never expire
/// otherwise, and the statement it holds should fail rather than wait forever.
pub fn next_step(request: &ApprovalRequest, now: SystemTime, retention: Duration) -> Step {
    let phase = request.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if phase.is_final() {
        let decided = request
            .status
            .as_ref()
            .and_then(|s| s.decided_at.as_deref())
            .and_then(|t| parse_rfc3339(t).ok())
            .or_else(|| created(request))
            .unwrap_or(now);
        let delete_at = decided + retention;
        return if now >= delete_at {
            Step::Delete
        } else {
            Step::WaitUntil(delete_at)
        };
    }
    match parse_rfc3339(&request.spec.expires_at) {
        Ok(expires) if now < expires => Step::WaitUntil(expires),
        Ok(_) => Step::Expire(expired(now, EXPIRED_REASON.to_owned())),
        Err(error) => Step::Expire(expired(
            now,
            format!("spec.expiresAt cannot be read, so the request cannot wait: {error}"),
        )),
    }
}

fn expired(now: SystemTime, reason: String) -> ApprovalRequestStatus {
    ApprovalRequestStatus {
        phase: ApprovalPhase::Expired,
        decided_by: None,
        decided_at: Some(format_rfc3339(now)),
        reason: Some(reason),
    }
}

fn created(request: &ApprovalRequest) -> Option<SystemTime> {
    let created = request.metadata.creation_timestamp.as_ref()?;
    Some(SystemTime::from(created.0))
}

/// Whether `request` waits for a decision (and so deserves an ApprovalRequested Event).
pub fn is_pending(request: &ApprovalRequest) -> bool {
    !request.status.as_ref().is_some_and(|s| s.phase.is_final())
}

/// The note of the ApprovalRequested Event: who asks, on which connection, under which rule, until
/// when, and the command that approves. The statement itself is not repeated (it is in the spec, for
/// those allowed to read it; Events are readable more widely).
pub fn announcement(request: &ApprovalRequest) -> String {
    let spec = &request.spec;
    let name = request.name_any();
    let namespace = request.namespace().unwrap_or_default();
    let note = format!(
        "{subject} asks to run a statement on connection {connection:?}, held by rule {rule:?} until {expires}. \
         Approve: kubectl patch approvalrequest {name} -n {namespace} --subresource=status --type=merge \
         -p '{{\"status\":{{\"phase\":\"Approved\"}}}}' (or \"Denied\" to refuse)",
        subject = spec.requester.subject,
        connection = spec.connection,
        rule = spec.rule,
        expires = spec.expires_at,
    );
    truncate(note, MAX_NOTE)
}

/// `text` cut to at most `max` bytes on a character boundary, marked with an ellipsis when cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::UNIX_EPOCH;

    use serde_json::json;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn at(rfc3339: &str) -> SystemTime {
        parse_rfc3339(rfc3339).unwrap()
    }

    fn request(expires_at: &str, status: Option<serde_json::Value>) -> ApprovalRequest {
        let value = crate::reconcile::tests::approval_json("2026-05-01T09:00:00Z", expires_at, status);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn steps_follow_phase_expiry_and_retention() {
        let expires = "2026-05-01T09:10:00Z";
        let approved_at = |t: &str| Some(json!({"phase": "Approved", "decidedBy": "alice", "decidedAt": t}));
        let wait = |t: &str| Step::WaitUntil(at(t));
        let cases: Vec<(&str, ApprovalRequest, &str, Step)> = vec![
            (
                "pending, no status yet: wait for expiry",
                request(expires, None),
                "2026-05-01T09:05:00Z",
                wait(expires),
            ),
            (
                "pending with a status: wait for expiry",
                request(expires, Some(json!({"phase": "Pending"}))),
                "2026-05-01T09:09:59Z",
                wait(expires),
            ),
            (
                "approved: wait for the end of the retention",
                request(expires, approved_at("2026-05-01T09:07:00Z")),
                "2026-05-01T09:08:00Z",
                wait("2026-05-02T09:07:00Z"),
            ),
            (
                "approved, retention over: delete",
                request(expires, approved_at("2026-05-01T09:07:00Z")),
                "2026-05-02T09:07:00Z",
                Step::Delete,
            ),
            (
                "denied without decidedAt: the retention counts from creation",
                request(expires, Some(json!({"phase": "Denied"}))),
                "2026-05-02T08:59:59Z",
                wait("2026-05-02T09:00:00Z"),
            ),
            (
                "denied without decidedAt, a day after creation: delete",
                request(expires, Some(json!({"phase": "Denied"}))),
                "2026-05-02T09:00:00Z",
                Step::Delete,
            ),
            (
                "expired earlier: deleted after the retention, like any decision",
                request(
                    expires,
                    Some(json!({"phase": "Expired", "decidedAt": "2026-05-01T09:10:01Z",
                                             "reason": EXPIRED_REASON})),
                ),
                "2026-05-03T00:00:00Z",
                Step::Delete,
            ),
            (
                "an approval after expiresAt stands (expiry only applies to pending requests)",
                request(expires, approved_at("2026-05-01T09:20:00Z")),
                "2026-05-01T10:00:00Z",
                wait("2026-05-02T09:20:00Z"),
            ),
        ];
        for (name, req, now, want) in cases {
            assert_eq!(next_step(&req, at(now), DAY), want, "{name}");
        }
    }

    #[test]
    fn pending_requests_expire_at_expires_at() {
        let req = request("2026-05-01T09:10:00Z", None);
        let now = at("2026-05-01T09:10:00Z");
        let Step::Expire(status) = next_step(&req, now, DAY) else {
            panic!("a pending request at expiresAt expires");
        };
        assert_eq!(
            status,
            ApprovalRequestStatus {
                phase: ApprovalPhase::Expired,
                decided_by: None,
                decided_at: Some("2026-05-01T09:10:00Z".into()),
                reason: Some("nobody decided before expiresAt".into()),
            }
        );
        // Much later: still expired, stamped with the time the operator saw it.
        let Step::Expire(status) = next_step(&req, now + 2 * HOUR, DAY) else {
            panic!()
        };
        assert_eq!(status.decided_at.as_deref(), Some("2026-05-01T11:10:00Z"));
    }

    #[test]
    fn an_unreadable_expiry_expires_at_once() {
        let req = request("2026-02-30T09:10:00Z", None);
        let Step::Expire(status) = next_step(&req, UNIX_EPOCH + HOUR, DAY) else {
            panic!()
        };
        let reason = status.reason.unwrap();
        assert!(reason.starts_with("spec.expiresAt cannot be read"), "{reason}");
    }

    #[test]
    fn the_retention_is_the_context_s() {
        let req = request(
            "2026-05-01T09:10:00Z",
            Some(json!({"phase": "Denied", "decidedAt": "2026-05-01T09:00:00Z"})),
        );
        let now = at("2026-05-01T10:30:00Z");
        assert_eq!(next_step(&req, now, HOUR), Step::Delete);
        assert_eq!(
            next_step(&req, now, 2 * HOUR),
            Step::WaitUntil(at("2026-05-01T11:00:00Z"))
        );
    }

    #[test]
    fn the_announcement_names_requester_connection_rule_and_the_approve_command() {
        let req = request("2026-05-01T09:10:00Z", None);
        assert!(is_pending(&req));
        assert_eq!(
            announcement(&req),
            "system:serviceaccount:shop:agent asks to run a statement on connection \"orders\", held by rule \
             \"ops/deletes\" until 2026-05-01T09:10:00Z. Approve: kubectl patch approvalrequest ar-1 -n shop \
             --subresource=status --type=merge -p '{\"status\":{\"phase\":\"Approved\"}}' (or \"Denied\" to \
             refuse)"
        );
        let mut long = req.clone();
        long.spec.requester.subject = "é".repeat(600);
        let note = announcement(&long);
        assert!(note.len() <= 1024 && note.ends_with('…'), "{}", note.len());
        assert!(!is_pending(&request(
            "2026-05-01T09:10:00Z",
            Some(json!({"phase": "Denied"}))
        )));
    }
}
