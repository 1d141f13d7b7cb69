//! DatabaseConnection: one upstream database, the credential to reach it, and how the sidecar serves it.

use serde::{Deserialize, Serialize};

use crate::{
    condition::Condition,
    validate::{Errors, FieldError},
};

/// Where the database is, the credential to reach it, and how the sidecar serves it inside the pod.
// clippy reads the repeated `type_ = "string"` of the print columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "dbward.dev",
        version = "v1alpha1",
        kind = "DatabaseConnection",
        namespaced,
        status = "DatabaseConnectionStatus",
        derive = "PartialEq",
        shortname = "dbconn",
        category = "dbward",
        doc = "One upstream PostgreSQL database. Workloads reach it only through their dbward sidecar, which alone \
               holds the credential; pods connect to 127.0.0.1:<localPort>.",
        printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
        printcolumn(name = "Port", type_ = "integer", json_path = ".spec.port", priority = 1),
        printcolumn(name = "Database", type_ = "string", json_path = ".spec.database"),
        printcolumn(
            name = "Ready",
            type_ = "string",
            json_path = r#".status.conditions[?(@.type=="Ready")].status"#
        ),
        printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseConnectionSpec {
    /// Host name or IP address of the PostgreSQL server (no scheme, no port).
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub host: String,
    /// TCP port of the PostgreSQL server.
    #[serde(default = "default_pg_port")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub port: u16,
    /// Name of the database on the server. Clients may connect using this name or the connection's name.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub database: String,
    /// The Secret, in the connection's namespace, holding the database user name and password. Only
    /// the sidecar ever sees it.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// TLS between the sidecar and the server. Defaults to verify-full against the system's roots.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Port the sidecar listens on at 127.0.0.1 and [::1] inside the pod; the app connects there.
    #[serde(default = "default_pg_port")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub local_port: u16,
    /// Who may connect: the pod's own identity and/or tokens from trusted OIDC issuers.
    #[serde(default)]
    pub identity: IdentitySpec,
    /// When true, an init container firewalls the pod so that only the sidecar may reach host:port,
    /// so an app cannot bypass the proxy even if it learns the address.
    #[serde(default = "default_true")]
    pub egress_lock: bool,
    /// What the session journal keeps of each statement's results.
    #[serde(default)]
    pub recording: RecordingSpec,
}

/// A Secret holding a database user name and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSecretRef {
    /// Name of the Secret, in the same namespace.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub name: String,
    /// Key of the Secret holding the user name.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the Secret holding the password.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

/// TLS settings for the upstream connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// How strictly to use TLS, as libpq's sslmode: disable, require (encrypt, no verification),
    /// verify-ca (the certificate chains to the CA), or verify-full (and names the host). Default
    /// verify-full.
    #[serde(default)]
    pub mode: TlsMode,
    /// A Secret key holding the PEM CA bundle to verify the server with. Without it, the system's roots
    /// are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// How the sidecar uses TLS to the server (libpq's sslmode names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP. Only for databases on a trusted network.
    Disable,
    /// Encrypt, but do not verify the server's certificate.
    Require,
    /// Encrypt and verify that the certificate chains to a trusted CA.
    VerifyCa,
    /// Encrypt, verify the chain, and verify the certificate names the host. The default.
    #[default]
    VerifyFull,
}

/// A key in a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_ca_key")]
    pub key: String,
}

/// How callers prove who they are to the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentitySpec {
    /// When true, a caller that presents no token is the pod itself (its service account). When false,
    /// every connection must present a JWT as its password.
    #[serde(default = "default_true")]
    pub allow_ambient: bool,
    /// OIDC issuers whose tokens (given as the Postgres password) are trusted, besides the cluster's own
    /// service-account issuer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<TrustedIssuer>,
}

impl Default for IdentitySpec {
    fn default() -> Self {
        Self {
            allow_ambient: true,
            issuers: Vec::new(),
        }
    }
}

/// An OIDC issuer whose tokens identify callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The issuer URL, exactly as in the tokens' `iss` claim (https).
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one of them.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub audiences: Vec<String>,
    /// Where to fetch the signing keys: an https URL (plain http only to localhost), or a file — `file:///path`,
    /// an absolute path (e.g. a projected volume), or, for a sidecar run from a config file, a path relative
    /// to that file. Default: discovered from `<issuer>/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// What the session journal records.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingSpec {
    /// How much of each result to keep: none, metadata (row count, bytes, columns; the default), or
    /// sample (also the first rows, after masking).
    #[serde(default)]
    pub results: ResultsRecording,
}

/// How much of a statement's result the journal keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum ResultsRecording {
    /// Nothing about the result.
    None,
    /// Row count, byte count and column names. The default.
    #[default]
    Metadata,
    /// Metadata and the first rows, after masking.
    Sample,
}

/// What the operator last saw of a DatabaseConnection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DatabaseConnectionStatus {
    /// Ready, CredentialsResolved, Reachable, and PodsWithoutSidecar (True when pods that name this
    /// connection in their dbward.dev/inject annotation run without the dbward sidecar).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The server's `server_version` as the dbward sidecars last saw it when logging in (they report it
    /// to the operator). Empty until a sidecar has logged in to the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
}

fn default_pg_port() -> u16 {
    5432
}

fn default_true() -> bool {
    true
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

impl DatabaseConnectionSpec {
    /// Check everything the schema cannot: returns every problem, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        e.host("spec.host", &self.host);
        if self.port == 0 {
            e.push("spec.port", "must be between 1 and 65535");
        }
        e.non_empty("spec.database", &self.database);
        let creds = &self.credentials_secret_ref;
        e.object_name("spec.credentialsSecretRef.name", &creds.name);
        e.secret_key("spec.credentialsSecretRef.usernameKey", &creds.username_key);
        e.secret_key("spec.credentialsSecretRef.passwordKey", &creds.password_key);
        if creds.username_key == creds.password_key {
            e.push(
                "spec.credentialsSecretRef.passwordKey",
                format!("is the same key as usernameKey ({:?})", creds.username_key),
            );
        }
        if let Some(ca) = &self.tls.ca_secret_ref {
            e.object_name("spec.tls.caSecretRef.name", &ca.name);
            e.secret_key("spec.tls.caSecretRef.key", &ca.key);
            if self.tls.mode == TlsMode::Disable {
                e.push(
                    "spec.tls.caSecretRef",
                    "is set but tls.mode is disable: use verify-ca or verify-full",
                );
            }
        }
        if self.local_port == 0 {
            e.push("spec.localPort", "must be between 1 and 65535");
        }
        if !self.identity.allow_ambient && self.identity.issuers.is_empty() {
            e.push(
                "spec.identity.issuers",
                "allowAmbient is false and no issuer is trusted, so no caller could ever connect",
            );
        }
        for (i, issuer) in self.identity.issuers.iter().enumerate() {
            let at = format!("spec.identity.issuers[{i}]");
            e.https_url(format_args!("{at}.issuer"), &issuer.issuer);
            if issuer.audiences.is_empty() {
                e.push(format_args!("{at}.audiences"), "must list at least one audience");
            }
            for (j, aud) in issuer.audiences.iter().enumerate() {
                e.non_empty(format_args!("{at}.audiences[{j}]"), aud);
            }
            if let Some(jwks) = &issuer.jwks_uri {
                e.jwks_uri(format_args!("{at}.jwksUri"), jwks);
            }
        }
        e.unique(
            |i| format!("spec.identity.issuers[{i}].issuer"),
            self.identity.issuers.iter().map(|i| i.issuer.as_str()),
            "issuer",
        );
        e.finish()
    }
}
