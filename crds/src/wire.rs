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
//! | `POST /v1/server-version` | [`ServerVersionReport`] | 204, once `status.serverVersion` says it |
//!
//! Errors are `{"error": "..."}` ([`ApiError`]) with 400 (bad request), 401 (no or bad token), 403 (the
//! pod may not), 404, 409, 503 (the operator is not ready, e.g. its caches are still loading).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    AccessPolicySpec, ApprovalPhase, DatabaseConnectionSpec, Document,
    validate::{Errors, FieldError},
};

/// The audience of the projected token a sidecar presents.
pub const TOKEN_AUDIENCE: &str = "dbward.dev";
/// The longest `waitSeconds` the operator honours; longer asks are cut to it.
pub const MAX_WAIT_SECONDS: u64 = 60;
/// The largest request body the control API reads.
pub const MAX_REQUEST_BODY: usize = 256 * 1024;
/// The largest response body a sidecar reads (a configuration with many policies).
pub const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;
/// The longest `serverVersion` a sidecar may report, in bytes (PostgreSQL's are a few dozen).
pub const MAX_SERVER_VERSION_BYTES: usize = 256;

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

/// `POST /v1/server-version`: the `server_version` a PostgreSQL server announced (ParameterStatus) when
/// the sidecar logged in to it for `connection`. The operator writes it into the connection's
/// `status.serverVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerVersionReport {
    /// The DatabaseConnection logged in to; one of the pod's.
    pub connection: String,
    /// The server's `server_version`, as sent, e.g. `16.4 (Debian 16.4-1.pgdg120+1)`.
    pub server_version: String,
}

impl ServerVersionReport {
    /// Refuses an empty connection name or version, a version longer than [`MAX_SERVER_VERSION_BYTES`],
    /// and one holding control characters (it is shown by `kubectl`). Messages never quote the version.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        e.object_name("connection", &self.connection);
        let version = &self.server_version;
        if version.trim().is_empty() {
            e.push(
                "serverVersion",
                "must not be empty: send the server_version the server announced at login",
            );
        }
        if version.len() > MAX_SERVER_VERSION_BYTES {
            e.push(
                "serverVersion",
                format!(
                    "is {} bytes long; at most {MAX_SERVER_VERSION_BYTES} are accepted",
                    version.len()
                ),
            );
        }
        if let Some((at, c)) = version.char_indices().find(|(_, c)| c.is_control()) {
            e.push(
                "serverVersion",
                format!(
                    "holds the control character U+{:04X} at byte {at}: a version must be printable text",
                    u32::from(c)
                ),
            );
        }
        e.finish()
    }
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(connection: &str, server_version: &str) -> ServerVersionReport {
        ServerVersionReport {
            connection: connection.into(),
            server_version: server_version.into(),
        }
    }

    #[test]
    fn server_version_reports_are_camel_case_json() {
        let json = serde_json::to_value(report("orders", "16.4")).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"connection": "orders", "serverVersion": "16.4"})
        );
    }

    #[test]
    fn server_version_reports_refuse_what_kubectl_should_not_show() {
        let longest = "9".repeat(MAX_SERVER_VERSION_BYTES);
        let too_long = "9".repeat(MAX_SERVER_VERSION_BYTES + 1);
        let cases: [(&str, &str, &[&str]); 9] = [
            ("orders", "16.4 (Debian 16.4-1.pgdg120+1)", &[]),
            ("orders", "17devel", &[]),
            ("orders", &longest, &[]),
            ("orders", "", &["serverVersion: must not be empty"]),
            ("orders", "   ", &["serverVersion: must not be empty"]),
            (
                "orders",
                &too_long,
                &["serverVersion: is 257 bytes long; at most 256 are accepted"],
            ),
            (
                "orders",
                "16.4\nevil: true",
                &["serverVersion: holds the control character U+000A at byte 4"],
            ),
            (
                "orders",
                "16.4\u{1b}[31m",
                &["serverVersion: holds the control character U+001B at byte 4"],
            ),
            ("", "16.4", &["connection: must not be empty"]),
        ];
        for (connection, version, want) in cases {
            let got: Vec<String> = match report(connection, version).validate() {
                Ok(()) => Vec::new(),
                Err(errors) => errors.iter().map(ToString::to_string).collect(),
            };
            assert_eq!(got.len(), want.len(), "{connection:?} {version:?}: {got:?}");
            for (got, want) in got.iter().zip(want) {
                assert!(got.starts_with(want), "{connection:?} {version:?}: {got}");
            }
        }
        let errors = report("Orders_1", "x")
            .validate()
            .expect_err("not an object name");
        assert_eq!(errors[0].field, "connection");
    }
}
