//! Turns checked configuration into what the proxy runs: upstream targets with their credentials and
//! TLS settings, token verifiers, and the listeners' settings.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::Path,
    sync::Arc,
    time::Duration,
};

use dbward_crds::{DatabaseConnectionSpec, Document, TlsMode as CrdTlsMode};
use tokio_rustls::TlsAcceptor;

use super::file::{ConfigError, FileConfig};
use crate::{
    catalog::{Catalog, DEFAULT_LOAD_TIMEOUT},
    guard::{Guard, GuardConnection, PolicyStore},
    identity::{CallerIdentity, IssuerConfig, JwksSource, TokenVerifier},
    mask::MaskKey,
    policy::PolicySet,
    proxy::{
        ProxyConfig,
        cancel::CancelRegistry,
        hook::SessionHooks,
        relay::RelayLimits,
        session::{ConnectionContext, SessionShared},
        slots::{Digest, Fingerprint},
        upstream::{Password, UpstreamTarget},
    },
    tls::{self, TlsMode},
};

/// Settings that come from the command line rather than the file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The pod's identity, `NAMESPACE/SERVICEACCOUNT`.
    pub identity: String,
    /// The pod's name, when known.
    pub pod: Option<String>,
    /// TLS toward local clients: certificate and key PEM.
    pub client_tls: Option<(Vec<u8>, Vec<u8>)>,
    pub listen: Vec<IpAddr>,
    pub shutdown_grace: Duration,
    /// Sessions served at once; more are refused with 53300.
    pub max_sessions: usize,
    pub startup_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_message: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            identity: "default/default".into(),
            pod: None,
            client_tls: None,
            listen: crate::proxy::listener::loopback(),
            shutdown_grace: Duration::from_secs(30),
            max_sessions: 1000,
            startup_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_message: RelayLimits::default().max_message,
        }
    }
}

fn conn_err(d: &Document<DatabaseConnectionSpec>, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: None,
        document: None,
        object: Some(format!("DatabaseConnection \"{}\"", d.metadata.name)),
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

fn utf8(d: &Document<DatabaseConnectionSpec>, field: &str, v: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(v).map_err(|_| conn_err(d, field, "the secret's value is not UTF-8"))
}

/// Builds one connection's upstream target and identity settings.
fn connection(
    cfg: &FileConfig,
    d: &Document<DatabaseConnectionSpec>,
    opts: &RunOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnectionContext, ConfigError> {
    let spec = &d.spec;
    let creds = &spec.credentials_secret_ref;
    let field = "spec.credentialsSecretRef";
    let user = cfg
        .secret_value(&creds.name, &creds.username_key, env)
        .map_err(|m| conn_err(d, field, m))?;
    let user = utf8(d, field, user)?;
    let password = cfg
        .secret_value(&creds.name, &creds.password_key, env)
        .map_err(|m| conn_err(d, field, m))?;
    let password = utf8(d, field, password)?;
    let mode = match spec.tls.mode {
        CrdTlsMode::Disable => TlsMode::Disable,
        CrdTlsMode::Require => TlsMode::Require,
        CrdTlsMode::VerifyCa => TlsMode::VerifyCa,
        CrdTlsMode::VerifyFull => TlsMode::VerifyFull,
    };
    let ca = match &spec.tls.ca_secret_ref {
        Some(r) => Some(
            cfg.secret_value(&r.name, &r.key, env)
                .map_err(|m| conn_err(d, "spec.tls.caSecretRef", m))?,
        ),
        None => None,
    };
    let tls_config = tls::upstream_client_config(mode, ca.as_deref())
        .map_err(|e| conn_err(d, "spec.tls", e.to_string()))?;
    let server_name = match tls_config {
        Some(_) => Some(tls::server_name(&spec.host).map_err(|e| conn_err(d, "spec.host", e.to_string()))?),
        None => None,
    };
    let mut upstream = Digest::default();
    upstream
        .field(spec.host.as_bytes())
        .field(&spec.port.to_be_bytes())
        .field(spec.database.as_bytes())
        .field(format!("{mode:?}").as_bytes())
        .field(ca.as_deref().unwrap_or_default());
    let mut credentials = Digest::default();
    credentials.field(user.as_bytes()).field(password.as_bytes());
    let mut identity = Digest::default();
    identity.field(&[u8::from(spec.identity.allow_ambient)]);
    let mut issuers = Vec::new();
    for (i, iss) in spec.identity.issuers.iter().enumerate() {
        let field = format!("spec.identity.issuers[{i}].jwksUri");
        let resolved = iss
            .jwks_uri
            .as_deref()
            .map(|uri| resolve_relative(uri, cfg.base_dir.as_deref()));
        identity
            .field(iss.issuer.as_bytes())
            .field(iss.audiences.join("\n").as_bytes())
            .field(resolved.as_deref().unwrap_or_default().as_bytes());
        let jwks = match resolved.as_deref() {
            Some(uri) => JwksSource::parse(uri).map_err(|e| conn_err(d, &field, e.to_string()))?,
            None => JwksSource::Discover(iss.issuer.clone()),
        };
        issuers.push(IssuerConfig {
            issuer: iss.issuer.clone(),
            audiences: iss.audiences.clone(),
            jwks,
        });
    }
    let verifier = if issuers.is_empty() {
        None
    } else {
        Some(Arc::new(TokenVerifier::new(issuers).map_err(|e| {
            conn_err(d, "spec.identity.issuers", e.to_string())
        })?))
    };
    Ok(ConnectionContext {
        name: d.metadata.name.clone(),
        upstream: Arc::new(UpstreamTarget {
            connection: d.metadata.name.clone(),
            host: spec.host.clone(),
            port: spec.port,
            database: spec.database.clone(),
            user,
            password: Password::new(password),
            tls_mode: mode,
            tls: tls_config,
            server_name,
            connect_timeout: opts.connect_timeout,
            scram_cache: Default::default(),
        }),
        allow_ambient: spec.identity.allow_ambient,
        verifier,
        fingerprint: Fingerprint {
            upstream: upstream.finish(),
            credentials: credentials.finish(),
            identity: identity.finish(),
        },
    })
}

/// A JWKS path relative to the config file's directory, for local setups.
fn resolve_relative(uri: &str, base: Option<&Path>) -> String {
    let plain_path = !uri.contains("://") && !uri.starts_with('/') && !uri.trim_start().starts_with('{');
    match base {
        Some(base) if plain_path => base.join(uri).display().to_string(),
        _ => uri.to_owned(),
    }
}

/// Every connection of the config, built, with its local port: what the proxy starts with, and what
/// a reload hands to [`ConnectionSlots::update`](crate::proxy::slots::ConnectionSlots::update).
pub fn contexts(
    cfg: &FileConfig,
    opts: &RunOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(Arc<ConnectionContext>, u16)>, ConfigError> {
    cfg.connections
        .iter()
        .map(|d| Ok((Arc::new(connection(cfg, d, opts, env)?), d.spec.local_port)))
        .collect()
}

/// Everything the proxy needs, from the file and the command line.
pub fn build(
    cfg: &FileConfig,
    opts: &RunOptions,
    hooks: Option<Arc<dyn SessionHooks>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProxyConfig, ConfigError> {
    if cfg.connections.is_empty() {
        return Err(ConfigError {
            file: None,
            document: None,
            object: None,
            field: None,
            message: "no DatabaseConnection documents: nothing to serve".into(),
        });
    }
    let ambient = CallerIdentity::ambient(&opts.identity, opts.pod.as_deref()).map_err(|e| ConfigError {
        file: None,
        document: None,
        object: None,
        field: Some("--identity".into()),
        message: e.to_string(),
    })?;
    let client_tls = match &opts.client_tls {
        Some((cert, key)) => Some(TlsAcceptor::from(
            tls::client_facing_server_config(cert, key).map_err(|e| ConfigError {
                file: None,
                document: None,
                object: None,
                field: Some("--tls-cert/--tls-key".into()),
                message: e.to_string(),
            })?,
        )),
        None => None,
    };
    Ok(ProxyConfig {
        connections: contexts(cfg, opts, env)?,
        listen: opts.listen.clone(),
        shared: SessionShared {
            ambient,
            client_tls,
            cancels: Arc::new(CancelRegistry::default()),
            hooks,
            limits: RelayLimits {
                max_message: opts.max_message,
            },
            startup_timeout: opts.startup_timeout,
            journal: None,
            logins: None,
        },
        shutdown_grace: opts.shutdown_grace,
        max_sessions: opts.max_sessions,
    })
}

/// The config's AccessPolicies, compiled. Every invalid policy is reported, each naming its field.
pub fn policies(cfg: &FileConfig) -> Result<PolicySet, ConfigError> {
    policies_with(cfg, BTreeSet::new())
}

/// [`policies`], with the issuers of Kubernetes service-account tokens (in a cluster, the cluster's
/// own), whose subjects bind policies' `serviceAccount` subjects.
pub fn policies_with(cfg: &FileConfig, sa_issuers: BTreeSet<String>) -> Result<PolicySet, ConfigError> {
    PolicySet::new(cfg.policies.clone(), sa_issuers).map_err(|errors| ConfigError {
        file: None,
        document: None,
        object: None,
        field: None,
        message: errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Puts policy enforcement in front of every connection the proxy serves: statements are judged and
/// results masked by the policies in `store`, which may be replaced while the proxy runs.
pub fn install_guard(proxy: &mut ProxyConfig, store: Arc<PolicyStore>, key: MaskKey) {
    install_guard_with(proxy, store, key, None);
}

/// [`install_guard`], with requireApproval statements asking `approvals` (the store, and how often a
/// waiting client is reminded); without it they are refused.
pub fn install_guard_with(
    proxy: &mut ProxyConfig,
    store: Arc<PolicyStore>,
    key: MaskKey,
    approvals: Option<(Arc<dyn crate::approval::ApprovalStore>, Duration)>,
) {
    let mut connections = HashMap::new();
    for (ctx, _) in &proxy.connections {
        connections.insert(
            ctx.name.clone(),
            Arc::new(GuardConnection {
                catalog: Catalog::new(ctx.upstream.clone(), DEFAULT_LOAD_TIMEOUT),
                user: Arc::from(ctx.upstream.user.as_str()),
            }),
        );
    }
    let mut guard = Guard::new(store, connections, key);
    if let Some((approvals, reminder)) = approvals {
        guard = guard.with_approvals(approvals, reminder);
    }
    proxy.shared.hooks = Some(Arc::new(guard));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_jwks_paths_resolve_against_the_config_dir() {
        let base = Path::new("/etc/dbward");
        assert_eq!(resolve_relative("jwks.json", Some(base)), "/etc/dbward/jwks.json");
        assert_eq!(resolve_relative("/abs/jwks.json", Some(base)), "/abs/jwks.json");
        assert_eq!(resolve_relative("https://x/jwks", Some(base)), "https://x/jwks");
        assert_eq!(resolve_relative("{\"keys\":[]}", Some(base)), "{\"keys\":[]}");
    }
}
