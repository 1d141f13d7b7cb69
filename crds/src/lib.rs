//! dbward's API: the DatabaseConnection, AccessPolicy and ApprovalRequest custom resources (group
//! `dbward.dev`, version `v1alpha1`, all namespaced), their validation, and the pieces both the operator
//! and the sidecar need to read them.
//!
//! Without the `kube` feature the specs and statuses are plain serde types (the sidecar reads them from
//! YAML files as [`Document`]s). With it (the default), each spec also derives `kube::CustomResource`,
//! giving the root types [`DatabaseConnection`], [`AccessPolicy`] and [`ApprovalRequest`], and
//! [`crdgen`] renders the CustomResourceDefinitions.

pub mod approval;
pub mod condition;
pub mod connection;
#[cfg(feature = "kube")]
pub mod crdgen;
pub mod document;
pub mod duration;
pub mod policy;
pub mod timestamp;
pub mod validate;
pub mod wire;

#[cfg(feature = "kube")]
pub use approval::ApprovalRequest;
pub use approval::{ApprovalPhase, ApprovalRequestSpec, ApprovalRequestStatus, Requester};
pub use condition::{Condition, ConditionStatus};
#[cfg(feature = "kube")]
pub use connection::DatabaseConnection;
pub use connection::{
    CredentialsSecretRef, DatabaseConnectionSpec, DatabaseConnectionStatus, IdentitySpec, RecordingSpec,
    ResultsRecording, SecretKeyRef, TlsMode, TlsSpec, TrustedIssuer,
};
pub use document::{ApiSpec, Document, Metadata};
pub use duration::{DurationError, format_duration, parse_duration};
#[cfg(feature = "kube")]
pub use policy::AccessPolicy;
pub use policy::{
    AccessPolicySpec, AccessPolicyStatus, Action, ApprovalMode, ApprovalSpec, Detector, Enforcement, Limits,
    MaskStrategy, MaskingRule, OidcSubject, Operation, Rule, RuleWhen, ServiceAccountSubject, Subject,
};
pub use timestamp::{Rfc3339Millis, TimestampError, format_rfc3339, parse_rfc3339};
pub use validate::FieldError;

/// The API group.
pub const GROUP: &str = "dbward.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every object: `dbward.dev/v1alpha1`.
pub const API_VERSION: &str = "dbward.dev/v1alpha1";
