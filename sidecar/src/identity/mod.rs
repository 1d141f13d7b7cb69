//! Who is calling: JWT/JWKS verification and the caller's Unix uid (DESIGN §4).
//!
//! A client that presents a JWT as its Postgres password is identified by [`TokenVerifier::verify`]:
//! signature against the issuer's JWKS, issuer, audience and expiry, then the subject, groups and (for
//! Kubernetes service-account tokens) the service account and pod. A client without a token is the pod
//! itself, [`CallerIdentity::ambient`], when the connection allows it. In both cases the Unix uid of the
//! connecting process is read from the kernel's socket table with [`peer_uid`] and recorded.
//!
//! Nothing in this module logs or returns the token: errors describe the failure, and
//! [`IdentityError::client_message`] is what the client may be told.

pub mod http;
mod jwks;
mod jwt;
mod peer;
#[cfg(test)]
mod testutil;

use std::{fmt, sync::Arc};

use serde_json::{Map, Value};

pub use self::{
    jwks::{JwksError, JwksSource},
    jwt::{IssuerConfig, TokenVerifier, VerifierOptions},
    peer::{find_socket_uid, peer_uid, uid_from_proc_net_tcp},
};

/// How the caller's identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// No token: the caller is the pod the sidecar runs in (its own service account).
    Ambient,
    /// A verified JWT presented as the password.
    Token,
}

/// A Kubernetes service account, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

const SA_SUBJECT_PREFIX: &str = "system:serviceaccount:";

impl ServiceAccountRef {
    /// The service account's subject as Kubernetes writes it: `system:serviceaccount:NS:NAME`.
    pub fn subject(&self) -> String {
        format!("{SA_SUBJECT_PREFIX}{}:{}", self.namespace, self.name)
    }

    /// Parses `system:serviceaccount:NS:NAME`; `None` for any other subject or invalid names.
    pub fn from_subject(sub: &str) -> Option<Self> {
        let (namespace, name) = sub.strip_prefix(SA_SUBJECT_PREFIX)?.split_once(':')?;
        (is_dns_label(namespace) && is_dns_subdomain(name)).then(|| Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Who runs a session.
///
/// `service_account` and `pod` are read from the claims of whichever trusted issuer signed the token:
/// an OIDC issuer other than the cluster's could mint `sub: system:serviceaccount:...`, so policies
/// that bind a service account should also match [`CallerIdentity::issuer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub kind: IdentityKind,
    /// `sub` of the token; for the ambient identity and Kubernetes service-account tokens
    /// `system:serviceaccount:NS:NAME`.
    pub subject: String,
    /// The token's (verified) issuer; `None` for the ambient identity.
    pub issuer: Option<String>,
    pub service_account: Option<ServiceAccountRef>,
    /// The pod, from the `kubernetes.io.pod.name` claim (or the sidecar's own pod when ambient).
    pub pod: Option<String>,
    /// The `groups` claim, if any.
    pub groups: Vec<String>,
    /// Every claim of the token, for policy OIDC subject matching. Empty for the ambient identity.
    pub claims: Map<String, Value>,
    /// Unix uid of the connecting process, from the kernel's socket table.
    pub uid: Option<u32>,
}

impl CallerIdentity {
    /// The pod's own identity, from `NAMESPACE/SERVICEACCOUNT` (and the pod name when known).
    pub fn ambient(service_account: &str, pod: Option<&str>) -> Result<Self> {
        let invalid = |reason| IdentityError::InvalidAmbientIdentity {
            value: log_safe(service_account),
            reason,
        };
        let (namespace, name) = service_account.split_once('/').ok_or_else(|| invalid("no '/'"))?;
        if !is_dns_label(namespace) {
            return Err(invalid("the namespace is not a DNS-1123 label"));
        }
        if !is_dns_subdomain(name) {
            return Err(invalid("the service account is not a DNS-1123 subdomain"));
        }
        if pod.is_some_and(|pod| !is_dns_subdomain(pod)) {
            return Err(invalid("the pod name is not a DNS-1123 subdomain"));
        }
        let sa = ServiceAccountRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        Ok(Self {
            kind: IdentityKind::Ambient,
            subject: sa.subject(),
            issuer: None,
            service_account: Some(sa),
            pod: pod.map(str::to_owned),
            groups: Vec::new(),
            claims: Map::new(),
            uid: None,
        })
    }

    /// The identity carried by verified claims of a token from `issuer`.
    pub(crate) fn from_token_claims(issuer: &str, claims: Map<String, Value>) -> Result<Self> {
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(IdentityError::MissingClaim { claim: "sub" }),
        };
        let k8s = claims.get("kubernetes.io");
        let from_sub = ServiceAccountRef::from_subject(&subject);
        let from_k8s = k8s.and_then(|k8s| {
            let namespace = k8s.get("namespace")?.as_str()?;
            let name = k8s.get("serviceaccount")?.get("name")?.as_str()?;
            Some(ServiceAccountRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        });
        let service_account = match (from_sub, from_k8s) {
            (Some(a), Some(b)) if a != b => {
                return Err(IdentityError::Malformed {
                    reason: "sub and the kubernetes.io claim name different service accounts",
                });
            }
            (a, b) => a.or(b),
        };
        let pod = k8s
            .and_then(|k8s| k8s.get("pod")?.get("name")?.as_str())
            .map(str::to_owned);
        let groups = match claims.get("groups") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(group)) => vec![group.clone()],
            _ => Vec::new(),
        };
        Ok(Self {
            kind: IdentityKind::Token,
            subject,
            issuer: Some(issuer.to_owned()),
            service_account,
            pod,
            groups,
            claims,
            uid: None,
        })
    }

    /// Records the connecting process's uid (see [`peer_uid`]).
    pub fn with_uid(mut self, uid: Option<u32>) -> Self {
        self.uid = uid;
        self
    }
}

/// A short description for logs: kind, subject, issuer, pod, uid. Values are escaped and shortened.
impl fmt::Display for CallerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            IdentityKind::Ambient => write!(f, "ambient sub={}", log_safe(&self.subject))?,
            IdentityKind::Token => write!(f, "token sub={}", log_safe(&self.subject))?,
        }
        if let Some(issuer) = &self.issuer {
            write!(f, " iss={}", log_safe(issuer))?;
        }
        if let Some(pod) = &self.pod {
            write!(f, " pod={}", log_safe(pod))?;
        }
        if let Some(uid) = self.uid {
            write!(f, " uid={uid}")?;
        }
        Ok(())
    }
}

/// Why no identity could be established. None of the variants carries the token.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The password is not a well-formed JWT (or its header uses features we refuse).
    #[error("token is malformed: {reason}")]
    Malformed { reason: &'static str },

    /// The header's `alg` is not RS256 or ES256 (`none` and HMAC included).
    #[error("token algorithm {alg:?} is not accepted (only RS256 and ES256)")]
    UnsupportedAlgorithm { alg: String },

    /// The token's `iss` is none of the trusted issuers.
    #[error("token issuer {issuer:?} is not trusted")]
    UnknownIssuer { issuer: String },

    /// The issuer's JWKS has no key with the token's `kid`, even after a refetch.
    #[error("issuer {issuer}: no key with kid {} in its JWKS", show_kid(kid))]
    UnknownKey { issuer: String, kid: Option<String> },

    /// The key named by `kid` is not for the token's algorithm (e.g. an RS256 token with an EC key).
    #[error(
        "issuer {issuer}: key {} is for {key_alg}, but the token says {alg}",
        show_kid(kid)
    )]
    KeyAlgorithmMismatch {
        issuer: String,
        kid: Option<String>,
        alg: String,
        key_alg: String,
    },

    /// The signature does not verify with the issuer's key.
    #[error("issuer {issuer}: token signature does not verify")]
    BadSignature { issuer: String },

    /// `exp` is in the past (beyond the leeway).
    #[error("issuer {issuer}: token has expired")]
    Expired { issuer: String },

    /// `nbf` is in the future (beyond the leeway).
    #[error("issuer {issuer}: token is not valid yet (nbf)")]
    NotYetValid { issuer: String },

    /// `aud` names none of the audiences configured for the issuer.
    #[error("issuer {issuer}: token audience matches none of {expected:?}")]
    WrongAudience { issuer: String, expected: Vec<String> },

    /// A claim we require (`iss`, `sub`, `aud`, `exp`) is missing or not of the right type.
    #[error("token has no usable {claim:?} claim")]
    MissingClaim { claim: &'static str },

    /// The issuer's keys could not be loaded, so no token of it can be checked.
    #[error("issuer {issuer}: JWKS unavailable: {source}")]
    JwksUnavailable { issuer: String, source: Arc<JwksError> },

    /// The ambient identity given to the sidecar is not `NAMESPACE/SERVICEACCOUNT`.
    #[error("ambient identity {value:?} is invalid: {reason} (expected NAMESPACE/SERVICEACCOUNT)")]
    InvalidAmbientIdentity { value: String, reason: &'static str },

    /// A JWKS source is neither `file:///path`, an absolute path, nor an `https://` URL.
    #[error("JWKS source {value:?} is invalid: {reason} (use file:///path, an absolute path or https://...)")]
    InvalidJwksSource { value: String, reason: &'static str },

    /// The trusted-issuer configuration is unusable.
    #[error("trusted issuer {issuer:?} is misconfigured: {reason}")]
    InvalidConfig { issuer: String, reason: String },

    /// The caller presented no token and no other identity is acceptable.
    #[error("no acceptable identity: {reason}")]
    NoAcceptableIdentity { reason: &'static str },
}

/// Result of the identity functions.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

impl IdentityError {
    /// The SQLSTATE to send: `28P01` (invalid_password) when the presented token is bad or expired,
    /// `28000` (invalid_authorization_specification) when no identity is acceptable or the problem is
    /// on our side (configuration, unreachable JWKS).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Self::Malformed { .. }
            | Self::UnsupportedAlgorithm { .. }
            | Self::UnknownIssuer { .. }
            | Self::UnknownKey { .. }
            | Self::KeyAlgorithmMismatch { .. }
            | Self::BadSignature { .. }
            | Self::Expired { .. }
            | Self::NotYetValid { .. }
            | Self::WrongAudience { .. }
            | Self::MissingClaim { .. } => "28P01",
            Self::JwksUnavailable { .. }
            | Self::InvalidAmbientIdentity { .. }
            | Self::InvalidJwksSource { .. }
            | Self::InvalidConfig { .. }
            | Self::NoAcceptableIdentity { .. } => "28000",
        }
    }

    /// What the client is told. Never contains the token or values read from it.
    pub fn client_message(&self) -> String {
        let msg = match self {
            Self::Malformed { .. } => "the password is not a valid JWT",
            Self::UnsupportedAlgorithm { .. } => {
                "token signing algorithm is not accepted (use RS256 or ES256)"
            }
            Self::UnknownIssuer { .. } => "token issuer is not trusted for this connection",
            Self::UnknownKey { .. } => "token is signed with a key its issuer does not publish",
            Self::KeyAlgorithmMismatch { .. } => "token algorithm does not match the issuer's key",
            Self::BadSignature { .. } => "token signature is invalid",
            Self::Expired { .. } => "token has expired",
            Self::NotYetValid { .. } => "token is not valid yet",
            Self::WrongAudience { expected, .. } => &format!(
                "token audience is not accepted (expected one of: {})",
                expected.join(", ")
            ),
            Self::MissingClaim { claim } => &format!("token has no usable \"{claim}\" claim"),
            Self::JwksUnavailable { .. } => {
                "the token issuer's keys cannot be loaded right now; try again later"
            }
            Self::InvalidAmbientIdentity { .. }
            | Self::InvalidJwksSource { .. }
            | Self::InvalidConfig { .. } => {
                "dbward is misconfigured and cannot identify callers; see the sidecar log"
            }
            Self::NoAcceptableIdentity { .. } => "no acceptable identity: present a JWT as the password",
        };
        format!("dbward: {msg}")
    }
}

fn show_kid(kid: &Option<String>) -> String {
    kid.as_ref()
        .map_or_else(|| "(none)".to_owned(), |kid| format!("{kid:?}"))
}

/// Longest value we copy from untrusted input into logs and errors.
const LOG_SAFE_MAX_CHARS: usize = 128;

/// `s` shortened and with control characters escaped, for logs and error messages.
pub(crate) fn log_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(LOG_SAFE_MAX_CHARS + 3));
    for (i, c) in s.chars().enumerate() {
        if i == LOG_SAFE_MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// RFC 1123 label as Kubernetes checks namespaces: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// RFC 1123 subdomain as Kubernetes checks object names: dot-separated labels, at most 253.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_chars)
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!("test claims are objects"),
        }
    }

    #[test]
    fn ambient_identity_from_namespace_and_service_account() {
        let id = CallerIdentity::ambient("orders/api", Some("api-7d9f-x2")).unwrap();
        assert_eq!(id.kind, IdentityKind::Ambient);
        assert_eq!(id.subject, "system:serviceaccount:orders:api");
        assert_eq!(
            id.service_account,
            Some(ServiceAccountRef {
                namespace: "orders".into(),
                name: "api".into()
            })
        );
        assert_eq!(id.pod.as_deref(), Some("api-7d9f-x2"));
        assert_eq!(id.issuer, None);
        assert_eq!(
            id.with_uid(Some(1000)).to_string(),
            "ambient sub=system:serviceaccount:orders:api pod=api-7d9f-x2 uid=1000"
        );
    }

    #[test]
    fn ambient_identity_rejects_bad_formats() {
        for bad in [
            "orders",
            "orders/",
            "/api",
            "Orders/api",
            "orders/api/x",
            "or ders/api",
            "-x/api",
            "",
        ] {
            let err = CallerIdentity::ambient(bad, None).unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidAmbientIdentity { .. }),
                "{bad}: {err}"
            );
            assert_eq!(err.sqlstate(), "28000");
            assert!(err.to_string().contains("NAMESPACE/SERVICEACCOUNT"), "{err}");
        }
        assert!(CallerIdentity::ambient("orders/api", Some("Bad_Pod")).is_err());
        assert!(CallerIdentity::ambient("orders/api.v2", None).is_ok());
    }

    #[test]
    fn projected_service_account_token_claims() {
        let c = claims(json!({
            "aud": ["dbward.dev"], "exp": 2, "iat": 1, "iss": "https://kubernetes.default.svc",
            "sub": "system:serviceaccount:orders:api",
            "kubernetes.io": {
                "namespace": "orders",
                "pod": {"name": "api-0", "uid": "1"},
                "serviceaccount": {"name": "api", "uid": "2"}
            }
        }));
        let id = CallerIdentity::from_token_claims("https://kubernetes.default.svc", c).unwrap();
        assert_eq!(id.kind, IdentityKind::Token);
        assert_eq!(
            id.service_account.as_ref().map(ToString::to_string).as_deref(),
            Some("orders/api")
        );
        assert_eq!(id.pod.as_deref(), Some("api-0"));
        assert!(id.groups.is_empty());
        assert_eq!(id.claims["kubernetes.io"]["pod"]["uid"], "1");
        assert_eq!(
            id.to_string(),
            "token sub=system:serviceaccount:orders:api iss=https://kubernetes.default.svc pod=api-0"
        );
    }

    #[test]
    fn oidc_token_claims_with_groups() {
        let c = claims(json!({"sub": "alice@example.com", "groups": ["dba", 7, "oncall"]}));
        let id = CallerIdentity::from_token_claims("https://idp.example.com", c).unwrap();
        assert_eq!(id.service_account, None);
        assert_eq!(id.groups, ["dba", "oncall"]);
        let c = claims(json!({"sub": "bob", "groups": "dba"}));
        assert_eq!(CallerIdentity::from_token_claims("i", c).unwrap().groups, ["dba"]);
    }

    #[test]
    fn service_account_claims_must_agree() {
        let c = claims(json!({
            "sub": "system:serviceaccount:orders:api",
            "kubernetes.io": {"namespace": "orders", "serviceaccount": {"name": "admin"}}
        }));
        let err = CallerIdentity::from_token_claims("i", c).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
        let err = CallerIdentity::from_token_claims("i", claims(json!({"sub": ""}))).unwrap_err();
        assert!(
            matches!(err, IdentityError::MissingClaim { claim: "sub" }),
            "{err}"
        );
    }

    #[test]
    fn display_escapes_and_shortens_untrusted_values() {
        let c = claims(json!({"sub": format!("evil\n{}", "x".repeat(500))}));
        let shown = CallerIdentity::from_token_claims("i", c).unwrap().to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.contains("evil\\n"), "{shown}");
        assert!(shown.len() < 200, "{shown}");
    }

    #[test]
    fn sqlstates_and_client_messages() {
        let bad = IdentityError::Expired { issuer: "i".into() };
        assert_eq!(bad.sqlstate(), "28P01");
        assert_eq!(bad.client_message(), "dbward: token has expired");
        let none = IdentityError::NoAcceptableIdentity { reason: "no token" };
        assert_eq!(none.sqlstate(), "28000");
    }
}
