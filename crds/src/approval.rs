//! ApprovalRequest: one statement waiting for a person's decision.
//!
//! The operator creates it from the sidecar's verified identity; the spec never changes after that. An
//! approver sets `status.phase` through the status subresource, where RBAC and a webhook decide who may.

use std::fmt;

#[cfg(feature = "kube")]
use kube::core::Rule as CelRule;
use serde::{Deserialize, Serialize};

use crate::validate::{Errors, FieldError};

/// The annotation recording when a once-only grant was used (RFC 3339), so that it is never used again
/// (by a restarted sidecar, or another replica's).
pub const USED_AT_ANNOTATION: &str = "dbward.dev/used-at";

/// The held statement and who sent it, set by the operator from verified identity. Immutable.
// clippy reads the repeated `type_ = "string"` of the print columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(kube::CustomResource, kube::KubeSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "dbward.dev",
        version = "v1alpha1",
        kind = "ApprovalRequest",
        namespaced,
        status = "ApprovalRequestStatus",
        derive = "PartialEq",
        shortname = "dbapproval",
        category = "dbward",
        doc = "One statement held by a requireApproval rule, waiting for a person's decision. Approve it with \
               kubectl patch approvalrequest NAME --subresource=status --type=merge \
               -p '{\"status\":{\"phase\":\"Approved\"}}'",
        printcolumn(name = "Connection", type_ = "string", json_path = ".spec.connection"),
        printcolumn(name = "Requester", type_ = "string", json_path = ".spec.requester.subject"),
        printcolumn(name = "Rule", type_ = "string", json_path = ".spec.rule", priority = 1),
        printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
        printcolumn(name = "Expires", type_ = "date", json_path = ".spec.expiresAt", priority = 1),
        printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    ),
    x_kube(validation = CelRule::new("self == oldSelf").message("spec is immutable"))
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRequestSpec {
    /// Name of the DatabaseConnection the statement was sent to.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub connection: String,
    /// Who sent the statement, as verified by the operator.
    pub requester: Requester,
    /// The statement's SQL text.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub statement: String,
    /// Hash of the normalized statement; an approval covers exactly this statement from this requester.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub fingerprint: String,
    /// The rule that required approval, as `<namespace>/<policy>/<rule name>` (`<policy>/<rule name>` for a
    /// policy without a namespace, as in a local config file).
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub rule: String,
    /// When the request expires if nobody decides (RFC 3339).
    #[cfg_attr(feature = "kube", schemars(regex(pattern = crate::timestamp::TIMESTAMP_PATTERN)))]
    pub expires_at: String,
}

/// The verified identity of whoever sent a statement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requester {
    /// The pod's service account, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The pod the statement came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The caller's identity: the token's subject, or the service account's for ambient callers
    /// (`system:serviceaccount:<namespace>:<name>`).
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub subject: String,
    /// The Unix uid of the calling process inside the pod, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

/// The decision on an ApprovalRequest. Once the phase is final, nothing in the status may change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(kube::KubeSchema))]
#[cfg_attr(
    feature = "kube",
    x_kube(validation = CelRule::new("oldSelf.phase == 'Pending' || self == oldSelf")
        .message("the request is already decided: a final phase cannot change"))
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestStatus {
    /// Pending until someone decides: Approved or Denied; Expired when nobody did in time. Only Pending
    /// may change.
    #[serde(default)]
    pub phase: ApprovalPhase,
    /// Who decided, stamped by the admission webhook from the authenticated user (not from the patch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When the decision was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Why, in the approver's words or the operator's (e.g. for Expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where an ApprovalRequest stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum ApprovalPhase {
    /// Waiting for a decision. The default.
    #[default]
    Pending,
    /// Approved: the statement may run.
    Approved,
    /// Denied: the statement fails.
    Denied,
    /// Nobody decided before expiresAt: the statement fails.
    Expired,
}

impl ApprovalPhase {
    /// Whether the phase is final (anything but Pending): no later change is allowed.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }

    /// The name used in the API, e.g. `Approved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Approved => "Approved",
            Self::Denied => "Denied",
            Self::Expired => "Expired",
        }
    }
}

impl fmt::Display for ApprovalPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ApprovalRequestSpec {
    /// Check everything the schema cannot: returns every problem, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        e.object_name("spec.connection", &self.connection);
        e.non_empty("spec.requester.subject", &self.requester.subject);
        if let Some(sa) = &self.requester.service_account {
            match sa.split_once('/') {
                Some((ns, name)) => {
                    e.namespace("spec.requester.serviceAccount", ns);
                    e.object_name("spec.requester.serviceAccount", name);
                }
                None => e.push(
                    "spec.requester.serviceAccount",
                    format!("{sa:?} must be namespace/name"),
                ),
            }
        }
        if let Some(pod) = &self.requester.pod {
            e.object_name("spec.requester.pod", pod);
        }
        e.non_empty("spec.statement", &self.statement);
        e.non_empty("spec.fingerprint", &self.fingerprint);
        e.non_empty("spec.rule", &self.rule);
        e.timestamp("spec.expiresAt", &self.expires_at);
        e.finish()
    }
}
