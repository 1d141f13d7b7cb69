//! The control API between the operator and its sidecars (`https://dbward-operator.<ns>.svc:8443/v1/`):
//! the JSON bodies both sides read and write. Every request carries the sidecar's projected
//! service-account token (audience [`TOKEN_AUDIENCE`]) as `Authorization: Bearer`; the operator checks it
//! with a TokenReview and takes the caller's pod, namespace and service account from it, never from the
//! body.
//!
//! | Call | Body | Answer |
//! |---|---|---|
//! | `GET /v1/config?connections=a,b[&revision=R&waitSeconds=N]` | – | 200 [`SidecarConfig`]; 304 when `revision` is still current after the wait |
//! | `POST /v1/approvals` | [`ApprovalCreate`] | 200 [`ApprovalTicket`] |
//! | `GET /v1/approvals/NAME[?waitSeconds=N]` | – | 200 [`ApprovalState`], once final or after the wait |
//! | `POST /v1/approvals/NAME/expire` | [`ApprovalExpire`] | 200 [`ApprovalState`] |
//! | `POST /v1/grants` | [`GrantTake`] | 200 [`GrantTaken`] |
//!
//! Errors are `{"error": "..."}` ([`ApiError`]) with 400 (bad request), 401 (no or bad token), 403 (the
//! pod may not), 404, 409, 503 (the operator is not ready, e.g. its caches are still loading).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AccessPolicySpec, ApprovalPhase, DatabaseConnectionSpec, Document};

/// The audience of the projected token a sidecar presents.
pub const TOKEN_AUDIENCE: &str = "dbward.dev";
/// The longest `waitSeconds` the operator honours; longer asks are cut to it.
pub const MAX_WAIT_SECONDS: u64 = 60;
/// The largest request body the control API reads.
pub const MAX_REQUEST_BODY: usize = 256 * 1024;
/// The largest response body a sidecar reads (a configuration with many policies).
pub const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;

/// Who the operator verified the caller to be: from the TokenReview, checked against the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentity {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's service account (name only).
    pub service_account: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid.
    pub pod_uid: String,
}

/// A Secret's data as the sidecar needs it: the keys its connections reference, values base64 as in a
/// v1 Secret's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretData {
    /// The Secret's name (in the pod's namespace).
    pub name: String,
    /// Key → base64 value; only the keys a connection references.
    pub data: BTreeMap<String, String>,
}

/// An issuer every connection trusts in a cluster: the cluster's own service-account issuer, with its
/// keys inline (the sidecar cannot reach the API server's discovery endpoints without RBAC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIssuer {
    /// The `iss` of the cluster's service-account tokens.
    pub issuer: String,
    /// Audiences a caller's token must carry.
    pub audiences: Vec<String>,
    /// The issuer's JWKS document.
    pub jwks: serde_json::Value,
}

/// What a sidecar runs with: the answer to `GET /v1/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarConfig {
    /// Changes whenever anything below does; the sidecar sends it back to long-poll for the next one.
    pub revision: String,
    /// The pod the configuration is for.
    pub identity: PodIdentity,
    /// The connections the pod asked for, in the order it named them.
    pub connections: Vec<Document<DatabaseConnectionSpec>>,
    /// The Secrets those connections reference (only the keys they reference).
    pub secrets: Vec<SecretData>,
    /// Every valid AccessPolicy of the pod's namespace that names one of the connections: the subjects
    /// of a policy can be OIDC identities, so which ones apply is decided per caller, by the sidecar.
    pub policies: Vec<Document<AccessPolicySpec>>,
    /// Issuers trusted on every connection besides the connection's own.
    #[serde(default)]
    pub cluster_issuers: Vec<ClusterIssuer>,
}

/// `POST /v1/approvals`: a statement held by a requireApproval rule. The requester's pod and service
/// account come from the token; `subject` and `uid` are the caller the sidecar verified inside the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalCreate {
    /// The DatabaseConnection the statement was sent to; one of the pod's.
    pub connection: String,
    /// The caller's subject (a verified token's `sub`, or the pod's service account).
    pub subject: String,
    /// The caller's Unix uid, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The statement.
    pub statement: String,
    /// What an approval covers.
    pub fingerprint: String,
    /// `<policy>/<rule>`.
    pub rule: String,
    /// How long the request stays open, in seconds.
    pub timeout_seconds: u64,
}

/// The answer to [`ApprovalCreate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalTicket {
    /// The ApprovalRequest's name, in the pod's namespace.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// True when an identical request from the same caller was still pending and is reused.
    pub reused: bool,
    /// RFC 3339.
    pub expires_at: String,
}

/// An ApprovalRequest's decision, or Pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalState {
    /// The request's name.
    pub name: String,
    /// Where it stands.
    pub phase: ApprovalPhase,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/approvals/NAME/expire`: the sidecar gives up on a request (timed out, client gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalExpire {
    /// Why, recorded as the request's `status.reason`.
    pub reason: String,
}

/// `POST /v1/grants`: mode reject asks whether an approved request covers this statement now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantTake {
    /// The caller's subject.
    pub subject: String,
    /// The statement's fingerprint.
    pub fingerprint: String,
    /// How long after its approval a grant may be used, in seconds.
    pub window_seconds: u64,
    /// Whether a grant is used up by one use.
    pub once: bool,
}

/// The answer to [`GrantTake`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantTaken {
    /// The approved request whose grant was taken; none when there is no usable grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
}
