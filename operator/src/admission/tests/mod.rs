//! Tests of the webhooks as a user would see them: patches are applied to the pod's (or request's) JSON
//! and the result is read back as a typed object.

#![allow(clippy::unwrap_used)]

mod approval;
mod egress;
mod inject;
mod review;
mod sidecar;
