//! The same objects outside a cluster: `Document<S>` is one YAML document of a config file
//! (`apiVersion`, `kind`, `metadata`, `spec`), readable without the Kubernetes crates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    API_VERSION, AccessPolicySpec, ApprovalRequestSpec, DatabaseConnectionSpec,
    validate::{Errors, FieldError},
};

/// One API object as written in a file: `apiVersion`, `kind`, `metadata` and `spec`, and `status` when
/// there is one (ApprovalRequests in the local approvals directory). Unknown metadata that `kubectl get
/// -o yaml` adds (uid, resourceVersion, ...) is ignored, so such output can be used as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document<S, T = serde_json::Value> {
    /// `dbward.dev/v1alpha1`.
    pub api_version: String,
    /// DatabaseConnection, AccessPolicy or ApprovalRequest.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: Metadata,
    /// The object's spec.
    pub spec: S,
    /// The object's status, if the file has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<T>,
}

/// The part of Kubernetes' ObjectMeta a file needs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The object's name; connections are referred to by it.
    pub name: String,
    /// The namespace. In a file it may be left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A spec of one of our kinds: which `kind` it belongs to, and its validation.
pub trait ApiSpec: Serialize + DeserializeOwned {
    /// The `kind` whose spec this is.
    const KIND: &'static str;

    /// The spec's own `validate()`.
    fn validate_spec(&self) -> Result<(), Vec<FieldError>>;
}

impl ApiSpec for DatabaseConnectionSpec {
    const KIND: &'static str = "DatabaseConnection";

    fn validate_spec(&self) -> Result<(), Vec<FieldError>> {
        self.validate()
    }
}

impl ApiSpec for AccessPolicySpec {
    const KIND: &'static str = "AccessPolicy";

    fn validate_spec(&self) -> Result<(), Vec<FieldError>> {
        self.validate()
    }
}

impl ApiSpec for ApprovalRequestSpec {
    const KIND: &'static str = "ApprovalRequest";

    fn validate_spec(&self) -> Result<(), Vec<FieldError>> {
        self.validate()
    }
}

impl<S: ApiSpec> Document<S> {
    /// A document of `S`'s kind with this name and spec, and no status.
    pub fn new(name: impl Into<String>, spec: S) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: S::KIND.to_owned(),
            metadata: Metadata {
                name: name.into(),
                ..Metadata::default()
            },
            spec,
            status: None,
        }
    }
}

impl<S: ApiSpec, T> Document<S, T> {
    /// The same document with this status (e.g. an ApprovalRequest's decision).
    pub fn with_status<U>(self, status: U) -> Document<S, U> {
        Document {
            api_version: self.api_version,
            kind: self.kind,
            metadata: self.metadata,
            spec: self.spec,
            status: Some(status),
        }
    }

    /// Check the envelope (apiVersion, kind, metadata) and the spec; every problem names its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        if self.api_version != API_VERSION {
            e.push(
                "apiVersion",
                format!("is {:?}, expected {API_VERSION:?}", self.api_version),
            );
        }
        if self.kind != S::KIND {
            e.push("kind", format!("is {:?}, expected {:?}", self.kind, S::KIND));
        }
        e.object_name("metadata.name", &self.metadata.name);
        if let Some(ns) = &self.metadata.namespace {
            e.namespace("metadata.namespace", ns);
        }
        let mut errors = e.finish().err().unwrap_or_default();
        if let Err(spec_errors) = self.spec.validate_spec() {
            errors.extend(spec_errors);
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// The kind named by a YAML/JSON document, to pick the type to read it as (e.g. in a multi-document
/// config file). Returns `None` if the value has no string `kind`.
pub fn kind_of(value: &serde_json::Value) -> Option<&str> {
    value.get("kind")?.as_str()
}

#[cfg(feature = "kube")]
mod kube_conversions {
    use kube::{Resource, api::ObjectMeta};

    use super::{Document, Metadata};
    use crate::{
        AccessPolicy, AccessPolicySpec, AccessPolicyStatus, ApprovalRequest, ApprovalRequestSpec,
        ApprovalRequestStatus, DatabaseConnection, DatabaseConnectionSpec, DatabaseConnectionStatus,
    };

    impl From<&ObjectMeta> for Metadata {
        fn from(meta: &ObjectMeta) -> Self {
            Self {
                name: meta.name.clone().unwrap_or_default(),
                namespace: meta.namespace.clone(),
                labels: meta.labels.clone().unwrap_or_default(),
                annotations: meta.annotations.clone().unwrap_or_default(),
            }
        }
    }

    impl From<Metadata> for ObjectMeta {
        fn from(meta: Metadata) -> Self {
            let non_empty = |m: std::collections::BTreeMap<String, String>| (!m.is_empty()).then_some(m);
            ObjectMeta {
                name: Some(meta.name),
                namespace: meta.namespace,
                labels: non_empty(meta.labels),
                annotations: non_empty(meta.annotations),
                ..ObjectMeta::default()
            }
        }
    }

    macro_rules! conversions {
        ($kind:ty, $spec:ty, $status:ty) => {
            impl From<$kind> for Document<$spec, $status> {
                fn from(object: $kind) -> Self {
                    Self {
                        api_version: <$kind as Resource>::api_version(&()).into_owned(),
                        kind: <$kind as Resource>::kind(&()).into_owned(),
                        metadata: Metadata::from(&object.metadata),
                        spec: object.spec,
                        status: object.status,
                    }
                }
            }

            impl From<Document<$spec, $status>> for $kind {
                fn from(doc: Document<$spec, $status>) -> Self {
                    let mut object = <$kind>::new(&doc.metadata.name, doc.spec);
                    object.metadata = doc.metadata.into();
                    object.status = doc.status;
                    object
                }
            }
        };
    }

    conversions!(
        DatabaseConnection,
        DatabaseConnectionSpec,
        DatabaseConnectionStatus
    );
    conversions!(AccessPolicy, AccessPolicySpec, AccessPolicyStatus);
    conversions!(ApprovalRequest, ApprovalRequestSpec, ApprovalRequestStatus);
}
