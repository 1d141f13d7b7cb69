//! The operator's two mutating admission webhooks, as plain functions from an admission request to an
//! admission response (no HTTP, no API calls), so that every decision is unit-tested:
//!
//! - [`review_pod`] (`/mutate-pod`, Pod CREATE): injects the dbward sidecar into pods that ask for it
//!   ([`admit_pod`] also says when the namespace's Pod Security level will refuse the egress lock).
//! - [`review_approval_status`] (`/mutate-approval-status`, `approvalrequests/status` UPDATE): stamps who
//!   decided an ApprovalRequest and when, and refuses what no one may do.
//!
//! The server around them decodes the `AdmissionReview`, looks up what they read (the namespace's
//! DatabaseConnections and labels, the clock), records Events, and wraps the response with
//! [`AdmissionResponse::into_review`](kube::core::admission::AdmissionResponse::into_review).

pub mod approval;
pub mod egress;
pub mod inject;
mod names;
mod patch;
pub mod pod_security;
pub mod spec;
mod version;

#[cfg(test)]
mod tests;

pub use approval::{
    ApprovalContext, ApprovalRefusal, check_status_update, review_approval_status, service_account_username,
};
pub use inject::{
    ConnectionTarget, DEFAULT_ADMIN_PORT, InjectContext, InjectSettings, PodAdmission, Refusal, admit_pod,
    mutate_pod, pod_namespace, review_pod,
};
pub use spec::control_api_url;
pub use version::supports_native_sidecars;
