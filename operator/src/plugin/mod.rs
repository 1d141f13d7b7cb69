//! The decisions behind `kubectl dbward` (the `kubectl-dbward` binary), as plain functions over typed
//! data: the binary reads the objects with a kube client, calls these, and prints what they return.
//!
//! - [`explain`]: which AccessPolicies apply to a service account on a connection, and what they add up
//!   to. It mirrors the sidecar's policy engine (`sidecar/src/policy/`) without depending on it: the
//!   sidecar decides statements, this describes the same rules per operation.
//! - [`effect`]: what the applicable policies add up to, per operation, and their masking, limits and
//!   approval settings.
//! - [`report`]: the explanation as text.
//! - [`approvals`]: the pending ApprovalRequests table, the checks before an approval or denial, the
//!   status patch, and how the result is told.
//! - [`errors`]: API refusals turned into messages that say what to do (which RBAC verb is missing).
//! - [`text`]: durations, truncation, terminal-safe text and aligned tables.

pub mod approvals;
pub mod effect;
pub mod errors;
pub mod explain;
pub mod report;
pub mod text;

#[cfg(test)]
mod tests;
