//! The operator's own certificates: a CA it makes once (ten years) and a serving certificate for the
//! webhook and control API servers (90 days, re-issued with 30 days left or when its names change),
//! kept in the Secret `dbward-operator-certs` so that every replica serves the same ones. No
//! cert-manager is needed. The CA goes into both webhook configurations' `caBundle` and into every
//! injected sidecar (`DBWARD_OPERATOR_CA`).
//!
//! Validity dates and names are kept as annotations next to the PEM so that deciding whether to renew
//! needs no X.509 parser. A Secret whose annotations are missing or unreadable is replaced.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::{server::ResolvesServerCert, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tracing::{info, warn};

/// The Secret holding the certificates, in the operator's namespace.
pub const SECRET_NAME: &str = "dbward-operator-certs";
/// The CA's lifetime.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A new CA is made when the current one has less than this left.
pub const CA_RENEW_BEFORE: Duration = Duration::from_secs(365 * 24 * 3600);
/// The serving certificate's lifetime.
pub const CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// The serving certificate is re-issued when it has less than this left.
pub const CERT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Backdating against clock skew between replicas and clients.
const BACKDATE: Duration = Duration::from_secs(3600);

const CA_CN: &str = "dbward-operator CA";
const ANN_CA_NOT_AFTER: &str = "dbward.dev/ca-not-after";
const ANN_CERT_NOT_AFTER: &str = "dbward.dev/cert-not-after";
const ANN_SANS: &str = "dbward.dev/cert-names";

/// Certificate work failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate or key is not usable by TLS: {0}")]
    Tls(String),
    #[error("the Secret {namespace}/{SECRET_NAME}: {error}")]
    Api { namespace: String, error: kube::Error },
}

/// The certificates as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca_key_pem: String,
    /// The CA certificate (and, after a CA renewal, the previous one while it is still valid).
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_not_after: SystemTime,
    pub cert_not_after: SystemTime,
    /// The names the serving certificate is for, sorted.
    pub names: Vec<String>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("ca_not_after", &self.ca_not_after)
            .field("cert_not_after", &self.cert_not_after)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// What to do with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// A new serving certificate from the same CA.
    Reissue,
    /// A new CA, and a serving certificate from it.
    NewCa,
}

/// Decides from the stored bundle (if any), the names wanted and the time.
pub fn plan(stored: Option<&Bundle>, names: &[String], now: SystemTime) -> Plan {
    let Some(b) = stored else { return Plan::NewCa };
    if b.ca_not_after <= now + CA_RENEW_BEFORE {
        return Plan::NewCa;
    }
    let mut wanted = names.to_vec();
    wanted.sort();
    wanted.dedup();
    if b.cert_not_after <= now + CERT_RENEW_BEFORE || b.names != wanted {
        return Plan::Reissue;
    }
    Plan::Keep
}

/// The service names every replica answers to, plus any extra ones (`--cert-name`: e.g. an address
/// the API server uses to reach an operator running outside the cluster).
pub fn service_names(namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "dbward-operator".to_owned(),
        format!("dbward-operator.{namespace}"),
        format!("dbward-operator.{namespace}.svc"),
        format!("dbward-operator.{namespace}.svc.cluster.local"),
    ];
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn ca_params(now: SystemTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = offset(now - BACKDATE);
    p.not_after = offset(now + CA_LIFETIME);
    p
}

/// A whole new bundle: CA and serving certificate. The previous CA, when still valid, stays in the
/// trust bundle so that clients given it keep working through the change.
pub fn new_bundle(names: &[String], previous: Option<&Bundle>, now: SystemTime) -> Result<Bundle, CertError> {
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params(now).self_signed(&ca_key)?;
    let mut b = Bundle {
        ca_key_pem: ca_key.serialize_pem(),
        ca_pem: ca_cert.pem(),
        cert_pem: String::new(),
        key_pem: String::new(),
        ca_not_after: now + CA_LIFETIME,
        cert_not_after: now,
        names: Vec::new(),
    };
    if let Some(prev) = previous
        && prev.ca_not_after > now
    {
        b.ca_pem.push_str(&prev.ca_pem);
    }
    reissue(&b, names, now)
}

/// A new serving certificate from the bundle's CA.
pub fn reissue(b: &Bundle, names: &[String], now: SystemTime) -> Result<Bundle, CertError> {
    let ca_key = KeyPair::from_pem(&b.ca_key_pem)?;
    // The issuer is rebuilt from the same name and key: what a signature needs of it.
    let issuer = Issuer::new(ca_params(now), ca_key);
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    let mut p = CertificateParams::new(names.clone())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = offset(now - BACKDATE);
    let not_after = (now + CERT_LIFETIME).min(b.ca_not_after);
    p.not_after = offset(not_after);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Bundle {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_not_after: not_after,
        names,
        ..b.clone()
    })
}

fn secret_of(b: &Bundle, namespace: &str, resource_version: Option<String>) -> Secret {
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let annotations = BTreeMap::from([
        (
            ANN_CA_NOT_AFTER.to_owned(),
            dbward_crds::format_rfc3339(b.ca_not_after),
        ),
        (
            ANN_CERT_NOT_AFTER.to_owned(),
            dbward_crds::format_rfc3339(b.cert_not_after),
        ),
        (ANN_SANS.to_owned(), b.names.join(",")),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(SECRET_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            annotations: Some(annotations),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "dbward-operator".to_owned(),
            )])),
            resource_version,
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("ca.crt".to_owned(), bytes(&b.ca_pem)),
            ("ca.key".to_owned(), bytes(&b.ca_key_pem)),
            ("tls.crt".to_owned(), bytes(&b.cert_pem)),
            ("tls.key".to_owned(), bytes(&b.key_pem)),
        ])),
        ..Secret::default()
    }
}

/// The bundle a Secret holds, or None when anything is missing or unreadable.
pub fn bundle_of(s: &Secret) -> Option<Bundle> {
    let data = s.data.as_ref()?;
    let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let ann = s.metadata.annotations.as_ref()?;
    let time = |k: &str| ann.get(k).and_then(|v| dbward_crds::parse_rfc3339(v).ok());
    let names = ann
        .get(ANN_SANS)?
        .split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    Some(Bundle {
        ca_key_pem: text("ca.key")?,
        ca_pem: text("ca.crt")?,
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
        ca_not_after: time(ANN_CA_NOT_AFTER)?,
        cert_not_after: time(ANN_CERT_NOT_AFTER)?,
        names,
    })
}

/// Reads the Secret and renews what needs renewing. Of two replicas writing at once, one gets a
/// conflict, reads the other's bundle, and uses it.
pub async fn ensure(client: &Client, namespace: &str, names: &[String]) -> Result<Bundle, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |error| CertError::Api {
        namespace: namespace.to_owned(),
        error,
    };
    for _ in 0..3 {
        let existing = api.get_opt(SECRET_NAME).await.map_err(err)?;
        let stored = existing.as_ref().and_then(bundle_of);
        let now = SystemTime::now();
        let next = match (plan(stored.as_ref(), names, now), stored) {
            (Plan::Keep, Some(b)) => return Ok(b),
            (Plan::Reissue, Some(b)) => reissue(&b, names, now)?,
            (_, previous) => new_bundle(names, previous.as_ref(), now)?,
        };
        let written = match &existing {
            None => {
                api.create(&PostParams::default(), &secret_of(&next, namespace, None))
                    .await
            }
            Some(s) => {
                let rv = s.metadata.resource_version.clone();
                api.replace(
                    SECRET_NAME,
                    &PostParams::default(),
                    &secret_of(&next, namespace, rv),
                )
                .await
            }
        };
        match written {
            Ok(_) => {
                info!(names = ?next.names, "operator certificates written to Secret {namespace}/{SECRET_NAME}");
                return Ok(next);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                warn!("another replica wrote the certificates at the same time; using theirs");
                continue;
            }
            Err(e) => return Err(err(e)),
        }
    }
    let s = api.get(SECRET_NAME).await.map_err(err)?;
    bundle_of(&s).ok_or_else(|| CertError::Tls("the certificates Secret is unreadable".into()))
}

/// The serving certificate in use, swapped in place when it is renewed; both HTTPS servers share it.
#[derive(Debug)]
pub struct Resolver(RwLock<Arc<CertifiedKey>>);

impl Resolver {
    pub fn new(b: &Bundle) -> Result<Self, CertError> {
        Ok(Self(RwLock::new(certified(b)?)))
    }

    /// Serves `b` from the next handshake on.
    pub fn set(&self, b: &Bundle) -> Result<(), CertError> {
        let key = certified(b)?;
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        Ok(())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

fn certified(b: &Bundle) -> Result<Arc<CertifiedKey>, CertError> {
    let tls = |e: &dyn std::fmt::Display| CertError::Tls(e.to_string());
    let certs = CertificateDer::pem_slice_iter(b.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(b.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| tls(&e))?;
    Ok(Arc::new(CertifiedKey::new(certs, signer)))
}

/// A TLS server configuration serving the resolver's certificate (HTTP/1.1).
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The webhook configurations whose `caBundle` the operator keeps equal to its CA.
pub const WEBHOOK_CONFIGURATIONS: [&str; 2] = ["dbward-pod-injector", "dbward-approvals"];

/// The JSON patch that sets every webhook's `clientConfig.caBundle` of `config` to `ca_pem`, or None when
/// all already have it. Each replace is guarded by a test of the webhook's name, so that a list changed
/// in between fails the patch instead of writing into the wrong entry.
pub fn ca_bundle_patch(
    config: &k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    ca_pem: &str,
) -> Option<json_patch::Patch> {
    use base64::Engine;
    let want = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let mut ops = Vec::new();
    for (i, w) in config.webhooks.iter().flatten().enumerate() {
        let has = w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
        if has == Some(ca_pem.as_bytes()) {
            continue;
        }
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w.name}));
        ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": want}));
    }
    if ops.is_empty() {
        return None;
    }
    serde_json::from_value(serde_json::Value::Array(ops)).ok()
}

/// Puts the CA into both webhook configurations where it is missing or different. A configuration
/// that does not exist (the chart not installed yet, or an e2e run that registers only one) is skipped
/// with a warning.
pub async fn patch_ca_bundles(client: &Client, ca_pem: &str) {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    for name in WEBHOOK_CONFIGURATIONS {
        let current = match api.get_opt(name).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                warn!(
                    webhook = name,
                    "MutatingWebhookConfiguration not found; its caBundle is not set"
                );
                continue;
            }
            Err(e) => {
                warn!(webhook = name, error = %e, "cannot read the webhook configuration");
                continue;
            }
        };
        let Some(patch) = ca_bundle_patch(&current, ca_pem) else {
            continue;
        };
        match api
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::<()>::Json(patch),
            )
            .await
        {
            Ok(_) => info!(webhook = name, "caBundle set to the operator's CA"),
            Err(e) => warn!(webhook = name, error = %e, "cannot patch the caBundle; retrying later"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        service_names("dbward-system", &["127.0.0.1".to_owned()])
    }

    #[test]
    fn plans() {
        let now = SystemTime::now();
        assert_eq!(plan(None, &names(), now), Plan::NewCa);
        let b = new_bundle(&names(), None, now).unwrap();
        assert_eq!(plan(Some(&b), &names(), now), Plan::Keep);
        assert_eq!(
            plan(
                Some(&b),
                &names(),
                now + CERT_LIFETIME - CERT_RENEW_BEFORE + Duration::from_secs(1)
            ),
            Plan::Reissue
        );
        assert_eq!(plan(Some(&b), &["other".to_owned()], now), Plan::Reissue);
        assert_eq!(
            plan(Some(&b), &names(), now + CA_LIFETIME - CA_RENEW_BEFORE),
            Plan::NewCa
        );
    }

    #[test]
    fn secret_round_trip_and_usable_by_rustls() {
        let now = SystemTime::now();
        let b = new_bundle(&names(), None, now).unwrap();
        let s = secret_of(&b, "dbward-system", None);
        let back = bundle_of(&s).unwrap();
        // Times are stored to the second.
        assert_eq!(back.names, b.names);
        assert_eq!(back.cert_pem, b.cert_pem);
        Resolver::new(&back).unwrap();
        let again = reissue(&back, &names(), now).unwrap();
        assert_ne!(again.cert_pem, b.cert_pem);
        assert_eq!(again.ca_pem, b.ca_pem);
    }

    #[test]
    fn a_new_ca_keeps_the_previous_one_trusted() {
        let now = SystemTime::now();
        let old = new_bundle(&names(), None, now).unwrap();
        let new = new_bundle(&names(), Some(&old), now).unwrap();
        assert!(new.ca_pem.ends_with(&old.ca_pem));
        assert_eq!(new.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn ca_bundle_patch_fills_only_what_differs() {
        use k8s_openapi::{
            ByteString,
            api::admissionregistration::v1::{
                MutatingWebhook, MutatingWebhookConfiguration, WebhookClientConfig,
            },
        };
        let hook = |name: &str, ca: Option<&str>| MutatingWebhook {
            name: name.into(),
            client_config: WebhookClientConfig {
                ca_bundle: ca.map(|c| ByteString(c.as_bytes().to_vec())),
                ..WebhookClientConfig::default()
            },
            ..MutatingWebhook::default()
        };
        let cfg = MutatingWebhookConfiguration {
            webhooks: Some(vec![
                hook("a.dbward.dev", Some("CA")),
                hook("b.dbward.dev", Some("old")),
                hook("c", None),
            ]),
            ..MutatingWebhookConfiguration::default()
        };
        let patch = serde_json::to_value(ca_bundle_patch(&cfg, "CA").unwrap()).unwrap();
        let ops = patch.as_array().unwrap();
        assert_eq!(ops.len(), 4, "{patch}");
        assert_eq!(ops[0]["path"], "/webhooks/1/name");
        assert_eq!(ops[1]["path"], "/webhooks/1/clientConfig/caBundle");
        assert_eq!(ops[1]["value"], "Q0E=");
        assert_eq!(ops[3]["path"], "/webhooks/2/clientConfig/caBundle");
        let mut doc = serde_json::to_value(&cfg).unwrap();
        json_patch::patch(&mut doc, &ca_bundle_patch(&cfg, "CA").unwrap()).unwrap();
        let done: MutatingWebhookConfiguration = serde_json::from_value(doc).unwrap();
        assert!(ca_bundle_patch(&done, "CA").is_none());
    }
}
