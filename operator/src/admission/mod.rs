//! The operator's two mutating admission webhooks, as plain functions from an admission request to an
//! admission response (no HTTP, no API calls), so that every decision is unit-tested:
//!
//! - [`review_pod`] (`/mutate-pod`, Pod CREATE): injects the dbward sidecar into pods that ask for it.
//! - [`review_approval_status`] (`/mutate-approval-status`, `approvalrequests/status` UPDATE): stamps who
//!   decided an ApprovalRequest and when, and refuses what no one may do.
//!
//! The server around them decodes the `AdmissionReview`, looks up what they read (the namespace's
//! DatabaseConnections, the clock), and wraps the response with
//! [`AdmissionResponse::into_review`](kube::core::admission::AdmissionResponse::into_review).

pub mod approval;
pub mod inject;
mod names;
mod patch;
pub mod spec;
mod version;

#[cfg(test)]
mod tests;

pub use approval::{
    ApprovalContext, ApprovalRefusal, check_status_update, review_approval_status, service_account_username,
};
pub use inject::{
    ConnectionTarget, InjectContext, InjectSettings, Refusal, mutate_pod, pod_namespace, review_pod,
};
pub use spec::control_api_url;
pub use version::supports_native_sidecars;
