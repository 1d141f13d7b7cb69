//! The `approvalrequests/status` UPDATE webhook: who decided, and when, is written by dbward from the
//! authenticated request, never taken from what the client sent.
//!
//! The rules, for an update of the status subresource:
//! - The spec is immutable: any difference between the old and new spec is refused.
//! - Once the phase is final (Approved, Denied, Expired), the status may not change at all; resending the
//!   same status is a no-op and allowed.
//! - From Pending, a user may move to Approved or Denied. dbward sets `decidedBy` to the authenticated
//!   user name and `decidedAt` to now, overwriting anything the client put there.
//! - The requester may not approve its own statement: refused when the user is the requester's service
//!   account (`system:serviceaccount:<ns>:<name>`) or its subject. Denying one's own request is allowed.
//! - Only the operator moves a request to Expired (when nobody decided in time); dbward then sets
//!   `decidedAt` and leaves `decidedBy` empty, as nobody decided.
//! - While the phase stays Pending, `decidedBy` and `decidedAt` are removed: nobody has decided yet.
//! - A phase that is not one of the four is refused with the valid ones (the CRD schema would too, but
//!   only after this webhook).
//!
//! The objects are read as JSON rather than as [`ApprovalRequest`](dbward_crds::ApprovalRequest), so
//! that an unknown phase gets a clear refusal instead of failing to decode.

use std::time::SystemTime;

use dbward_crds::{ApprovalPhase, format_rfc3339};
use kube::core::{
    Resource,
    admission::{AdmissionRequest, AdmissionResponse, Operation},
};
use serde::Serialize;
use serde_json::{Map, Value};

use super::patch::PatchBuilder;

const DECIDED_BY: &str = "decidedBy";
const DECIDED_AT: &str = "decidedAt";

/// What the approvals webhook needs to know about the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalContext {
    /// The operator's own user name, `system:serviceaccount:<ns>:<name>`: the only one that may expire
    /// a request.
    pub operator_username: String,
}

impl ApprovalContext {
    /// The context for an operator running as service account `name` in `namespace`.
    pub fn new(namespace: &str, service_account: &str) -> Self {
        Self {
            operator_username: service_account_username(namespace, service_account),
        }
    }
}

/// The user name Kubernetes gives a service account.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Why a status update is refused. Each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    /// The request lacks the old or the new object.
    #[error("the admission request carries no {0} object; it cannot be checked")]
    MissingObject(&'static str),
    /// The user has no name to stamp as the decider.
    #[error("the request has no authenticated user name, so there is nobody to record as the decider")]
    Anonymous,
    /// The spec differs between the old and the new object.
    #[error(
        "spec is immutable: an ApprovalRequest covers exactly the statement and requester it was created \
         for; change only status.phase (and status.reason)"
    )]
    SpecChanged,
    /// The status is not a JSON object.
    #[error("status must be an object such as {{\"phase\":\"Approved\"}}")]
    MalformedStatus,
    /// The new phase is not a phase.
    #[error("status.phase {value} is not a phase: use \"Approved\" or \"Denied\"")]
    UnknownPhase {
        /// The value sent, as JSON.
        value: String,
    },
    /// The stored status is not one the API allows (its schema should have prevented that).
    #[error(
        "the stored status {value} is not valid, so the request cannot be decided; delete it and let the \
         statement be retried"
    )]
    CorruptStoredStatus {
        /// The stored status, as JSON.
        value: String,
    },
    /// The request is decided; its status is frozen.
    #[error(
        "the request is already {phase}: a decided request cannot change; if the statement should run \
         (or not) after all, it will create a new request when retried"
    )]
    AlreadyDecided {
        /// The final phase.
        phase: ApprovalPhase,
    },
    /// The requester tries to approve its own statement.
    #[error(
        "{user} sent this statement and cannot approve it: someone else must (the requester may still deny \
         it)"
    )]
    SelfApproval {
        /// The user name.
        user: String,
    },
    /// Someone other than the operator tries to expire a request.
    #[error(
        "only dbward-operator expires requests (at spec.expiresAt); to refuse the statement, set \
         status.phase to \"Denied\""
    )]
    ExpiredByUser,
}

/// The `approvalrequests/status` webhook (`/mutate-approval-status`). `now` is the decision time
/// stamped into `decidedAt`.
///
/// Generic over the object type so that the server can decode the review as
/// [`DynamicObject`](kube::core::DynamicObject), where an unknown phase still decodes and is refused
/// with a message; typed [`ApprovalRequest`](dbward_crds::ApprovalRequest)s work as well. Requests other
/// than UPDATE of the `status` subresource pass unchanged (the main resource ignores status changes).
/// Dry-run requests get the same answer as real ones.
pub fn review_approval_status<K: Resource + Serialize>(
    req: &AdmissionRequest<K>,
    ctx: &ApprovalContext,
    now: SystemTime,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    if req.operation != Operation::Update || req.sub_resource.as_deref() != Some("status") {
        return response;
    }
    let user = req.user_info.username.as_deref().unwrap_or_default();
    let decided = as_json(req.old_object.as_ref(), "old").and_then(|old| {
        let new = as_json(req.object.as_ref(), "new")?;
        check_status_update(&old, &new, user, ctx, now)
    });
    let name = if req.name.is_empty() {
        "(unnamed)"
    } else {
        req.name.as_str()
    };
    match decided {
        Ok(None) => response,
        Ok(Some(patch)) => match response.with_patch(patch) {
            Ok(patched) => patched,
            Err(e) => AdmissionResponse::from(req).deny(format!(
                "dbward: could not encode the patch for ApprovalRequest {name:?}: {e}"
            )),
        },
        Err(refusal) => response.deny(format!("dbward: ApprovalRequest {name:?}: {refusal}")),
    }
}

fn as_json<K: Serialize>(object: Option<&K>, which: &'static str) -> Result<Value, ApprovalRefusal> {
    let object = object.ok_or(ApprovalRefusal::MissingObject(which))?;
    serde_json::to_value(object).map_err(|_| ApprovalRefusal::MissingObject(which))
}

/// Decide an update from `old` to `new` (whole objects as JSON) by `user`: `None` to let it through as
/// sent, a patch stamping or clearing `decidedBy`/`decidedAt`, or a refusal.
pub fn check_status_update(
    old: &Value,
    new: &Value,
    user: &str,
    ctx: &ApprovalContext,
    now: SystemTime,
) -> Result<Option<json_patch::Patch>, ApprovalRefusal> {
    if old.get("spec") != new.get("spec") {
        return Err(ApprovalRefusal::SpecChanged);
    }
    let corrupt = || ApprovalRefusal::CorruptStoredStatus {
        value: render(old.get("status")),
    };
    let old_status = status_of(old).map_err(|_| corrupt())?;
    let old_phase = phase_of(&old_status).map_err(|_| corrupt())?;
    let new_status = status_of(new)?;
    if without_nulls(&old_status) == without_nulls(&new_status) {
        return Ok(None);
    }
    if old_phase.is_final() {
        return Err(ApprovalRefusal::AlreadyDecided { phase: old_phase });
    }
    let new_phase = phase_of(&new_status).map_err(|value| ApprovalRefusal::UnknownPhase { value })?;
    if user.is_empty() {
        return Err(ApprovalRefusal::Anonymous);
    }
    let stamp = match new_phase {
        ApprovalPhase::Pending => Stamp::default(),
        ApprovalPhase::Approved | ApprovalPhase::Denied => {
            if new_phase == ApprovalPhase::Approved && is_requester(user, old.get("spec")) {
                return Err(ApprovalRefusal::SelfApproval {
                    user: user.to_owned(),
                });
            }
            Stamp {
                by: Some(user.to_owned()),
                at: Some(format_rfc3339(now)),
            }
        }
        ApprovalPhase::Expired if user == ctx.operator_username => Stamp {
            by: None,
            at: Some(format_rfc3339(now)),
        },
        ApprovalPhase::Expired => return Err(ApprovalRefusal::ExpiredByUser),
    };
    Ok(stamp.patch(&new_status))
}

/// What `decidedBy` and `decidedAt` must hold after the update; `None` means absent.
#[derive(Debug, Default)]
struct Stamp {
    by: Option<String>,
    at: Option<String>,
}

impl Stamp {
    /// The operations that make the new status hold the stamp; `None` when it already does.
    fn patch(self, status: &Map<String, Value>) -> Option<json_patch::Patch> {
        let mut patch = PatchBuilder::default();
        for (field, want) in [(DECIDED_BY, self.by), (DECIDED_AT, self.at)] {
            let have = status.get(field);
            match want {
                Some(want) if have.and_then(Value::as_str) != Some(want.as_str()) => {
                    patch.add(&["status", field], Value::String(want));
                }
                None if have.is_some() => patch.remove(&["status", field]),
                _ => {}
            }
        }
        patch.finish()
    }
}

/// The status object; a missing or null status is an empty one (phase Pending).
fn status_of(object: &Value) -> Result<Map<String, Value>, ApprovalRefusal> {
    match object.get("status") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(status)) => Ok(status.clone()),
        Some(_) => Err(ApprovalRefusal::MalformedStatus),
    }
}

/// The phase of a status; a missing or null one is Pending (the API default). Otherwise the value as
/// JSON, for the message.
fn phase_of(status: &Map<String, Value>) -> Result<ApprovalPhase, String> {
    match status.get("phase") {
        None | Some(Value::Null) => Ok(ApprovalPhase::Pending),
        Some(value) => serde_json::from_value(value.clone()).map_err(|_| render(Some(value))),
    }
}

/// A status with its null members dropped: a merge patch writes `null` to remove a member, and the
/// stored object has none, so `{"reason": null}` is no change to a status without a reason.
fn without_nulls(status: &Map<String, Value>) -> Map<String, Value> {
    status
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether `user` is who sent the statement: its subject, or its pod's service account.
fn is_requester(user: &str, spec: Option<&Value>) -> bool {
    let requester = spec.and_then(|s| s.get("requester"));
    let field = |name: &str| requester.and_then(|r| r.get(name)).and_then(Value::as_str);
    if field("subject") == Some(user) {
        return true;
    }
    field("serviceAccount")
        .and_then(|sa| sa.split_once('/'))
        .is_some_and(|(ns, name)| service_account_username(ns, name) == user)
}

fn render(value: Option<&Value>) -> String {
    value.map_or_else(|| "null".to_owned(), Value::to_string)
}
