//! What a sidecar is told: its connections, the credentials they reference, the policies that can apply
//! to callers in its pod, and the cluster's service-account issuer.
//!
//! [`select`] decides from the cached objects (a plain function); [`SecretKeys`] lists what must be read
//! from Secrets; [`assemble`] puts it together with a revision that changes whenever anything in it does.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use dbward_crds::{
    API_VERSION, AccessPolicy, AccessPolicySpec, DatabaseConnection, DatabaseConnectionSpec, Document,
    Metadata,
    wire::{ClusterIssuer, PodIdentity, SecretData, SidecarConfig},
};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

/// Why a configuration cannot be given. Messages name objects and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A connection the pod asks for does not exist in its namespace.
    #[error("DatabaseConnection {name:?} does not exist in namespace {namespace}")]
    NoConnection { namespace: String, name: String },
    /// A Secret a connection references is missing.
    #[error("Secret {namespace}/{name} (referenced by DatabaseConnection {connection:?}) does not exist")]
    NoSecret {
        namespace: String,
        name: String,
        connection: String,
    },
    /// A key a connection references is missing from its Secret.
    #[error(
        "Secret {namespace}/{name} has no key {key:?} (referenced by DatabaseConnection {connection:?}); it has: [{has}]"
    )]
    NoKey {
        namespace: String,
        name: String,
        key: String,
        connection: String,
        has: String,
    },
}

/// The Secret keys a set of connections reference: secret name → (key → referencing connection).
pub type SecretKeys = BTreeMap<String, BTreeMap<String, String>>;

/// What [`select`] picks: the connections, the policies, the Secret keys to read.
pub type Selection = (
    Vec<Document<DatabaseConnectionSpec>>,
    Vec<Document<AccessPolicySpec>>,
    SecretKeys,
);

/// The pod's connections (in the order asked), the valid policies of its namespace that name one of
/// them, and the Secret keys to read.
pub fn select(
    who: &PodIdentity,
    asked: &[&str],
    connections: &[std::sync::Arc<DatabaseConnection>],
    policies: &[std::sync::Arc<AccessPolicy>],
) -> Result<Selection, ConfigError> {
    let ns = who.namespace.as_str();
    let mut conns = Vec::new();
    let mut keys = SecretKeys::new();
    for name in asked {
        let c = connections
            .iter()
            .find(|c| c.namespace().as_deref() == Some(ns) && c.name_any() == *name)
            .ok_or_else(|| ConfigError::NoConnection {
                namespace: ns.to_owned(),
                name: (*name).to_owned(),
            })?;
        let creds = &c.spec.credentials_secret_ref;
        for key in [&creds.username_key, &creds.password_key] {
            keys.entry(creds.name.clone())
                .or_default()
                .insert(key.clone(), (*name).to_owned());
        }
        if let Some(ca) = &c.spec.tls.ca_secret_ref {
            keys.entry(ca.name.clone())
                .or_default()
                .insert(ca.key.clone(), (*name).to_owned());
        }
        conns.push(document("DatabaseConnection", c.name_any(), ns, c.spec.clone()));
    }
    let asked_set: BTreeSet<&str> = asked.iter().copied().collect();
    let mut pols: Vec<_> = policies
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns))
        .filter(|p| p.spec.connections.iter().any(|c| asked_set.contains(c.as_str())))
        // An invalid policy grants nothing; the sidecar would refuse the whole set because of it.
        .filter(|p| p.spec.validate().is_ok())
        .map(|p| document("AccessPolicy", p.name_any(), ns, p.spec.clone()))
        .collect();
    pols.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok((conns, pols, keys))
}

fn document<S>(kind: &str, name: String, namespace: &str, spec: S) -> Document<S> {
    Document {
        api_version: API_VERSION.to_owned(),
        kind: kind.to_owned(),
        metadata: Metadata {
            name,
            namespace: Some(namespace.to_owned()),
            ..Metadata::default()
        },
        spec,
        status: None,
    }
}

/// The referenced keys of each Secret, base64 as in `data`. `secrets` holds what was read (None = the
/// Secret does not exist).
pub fn secret_data(
    namespace: &str,
    keys: &SecretKeys,
    secrets: &BTreeMap<String, Option<Secret>>,
) -> Result<Vec<SecretData>, ConfigError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (name, wanted) in keys {
        let first_user = wanted.values().next().cloned().unwrap_or_default();
        let Some(Some(secret)) = secrets.get(name) else {
            return Err(ConfigError::NoSecret {
                namespace: namespace.to_owned(),
                name: name.clone(),
                connection: first_user,
            });
        };
        let mut data = BTreeMap::new();
        for (key, connection) in wanted {
            let value = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| b64.encode(&v.0))
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|v| b64.encode(v))
                });
            let Some(value) = value else {
                let mut has: Vec<&str> = secret
                    .data
                    .iter()
                    .flat_map(|d| d.keys())
                    .map(String::as_str)
                    .collect();
                has.sort_unstable();
                return Err(ConfigError::NoKey {
                    namespace: namespace.to_owned(),
                    name: name.clone(),
                    key: key.clone(),
                    connection: connection.clone(),
                    has: has.join(", "),
                });
            };
            data.insert(key.clone(), value);
        }
        out.push(SecretData {
            name: name.clone(),
            data,
        });
    }
    Ok(out)
}

/// The whole answer, with its revision: a hash of everything else in it.
pub fn assemble(
    identity: PodIdentity,
    connections: Vec<Document<DatabaseConnectionSpec>>,
    secrets: Vec<SecretData>,
    policies: Vec<Document<AccessPolicySpec>>,
    cluster_issuers: Vec<ClusterIssuer>,
) -> SidecarConfig {
    let mut config = SidecarConfig {
        revision: String::new(),
        identity,
        connections,
        secrets,
        policies,
        cluster_issuers,
    };
    let bytes = serde_json::to_vec(&config).unwrap_or_default();
    let digest = super::auth::sha256(&bytes);
    config.revision = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    config
}
