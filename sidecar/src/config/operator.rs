//! The operator as the configuration source (`run --operator URL --connections a,b`): the sidecar asks
//! the operator's control API for its connections, their credentials and the policies that can apply,
//! presenting the pod's projected token, then long-polls for changes.
//!
//! Fail closed: until a first configuration arrives the sidecar does not listen (a client gets
//! "connection refused", never an unguarded database). Afterwards an unreachable operator changes
//! nothing: the last good configuration stays in force, and the sidecar keeps asking.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use base64::Engine;
use bytes::Bytes;
use dbward_crds::{
    TrustedIssuer,
    wire::{self, ApiError, SidecarConfig},
};
use http::{Method, Request, StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};

use super::file::{ConfigError, FileConfig, SecretData, check_across};
use crate::identity::http::{HttpClient, HttpClientConfig, HttpError};

/// Where the pod's projected token (audience `dbward.dev`) is mounted by the injector.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/dbward.dev/token";
/// How long one long-poll waits at the operator.
pub const POLL_WAIT: Duration = Duration::from_secs(30);
/// Deadline of calls that do not wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token file read.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// Why a call to the control API failed. Never holds a token or a credential.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("reading the pod's token {}: {error}", .path.display())]
    Token { path: PathBuf, error: std::io::Error },
    #[error("the pod's token {} is empty or larger than 64 KiB", .path.display())]
    BadToken { path: PathBuf },
    #[error("the operator's CA bundle: {0}")]
    Ca(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The operator answered with an error.
    #[error("the operator refused {call}: {status}: {message}")]
    Refused {
        call: &'static str,
        status: StatusCode,
        message: String,
    },
    /// The answer is not what the API says it is.
    #[error("the operator's answer to {call} is not valid: {message}")]
    BadAnswer { call: &'static str, message: String },
    /// The configuration the operator sent cannot be run.
    #[error("the configuration from the operator: {0}")]
    Config(#[from] ConfigError),
}

impl OperatorError {
    /// Whether asking again may help: the operator is down, restarting, or not ready. A refusal that
    /// names the request (403, 404, 400) will not change by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http(_) | Self::Token { .. } => true,
            Self::Refused { status, .. } => status.is_server_error() || *status == StatusCode::UNAUTHORIZED,
            _ => false,
        }
    }
}

/// A client of the operator's control API.
#[derive(Debug, Clone)]
pub struct OperatorClient {
    base: String,
    token_file: PathBuf,
    calls: HttpClient,
    polls: HttpClient,
}

impl OperatorClient {
    /// `base` is the control API's root, e.g. `https://dbward-operator.dbward-system.svc:8443`.
    /// `ca_pem` is the operator's CA (the injector passes it as `DBWARD_OPERATOR_CA`); without it the
    /// system roots are trusted.
    pub fn new(base: &str, ca_pem: Option<&[u8]>, token_file: PathBuf) -> Result<Self, OperatorError> {
        let base = base.trim_end_matches('/').to_owned();
        crate::identity::http::check_url(&base)?;
        let client = |timeout| {
            HttpClient::new(HttpClientConfig {
                system_roots: ca_pem.is_none(),
                extra_roots_pem: ca_pem.map(<[u8]>::to_vec),
                timeout,
            })
        };
        Ok(Self {
            calls: client(CALL_TIMEOUT)?,
            polls: client(POLL_WAIT + CALL_TIMEOUT)?,
            base,
            token_file,
        })
    }

    fn token(&self) -> Result<String, OperatorError> {
        use std::io::Read;
        let path = &self.token_file;
        let err = |error| OperatorError::Token {
            path: path.clone(),
            error,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(err)?
            .take(MAX_TOKEN_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(err)?;
        let token = text.trim();
        if token.is_empty() || text.len() as u64 > MAX_TOKEN_BYTES {
            return Err(OperatorError::BadToken { path: path.clone() });
        }
        Ok(token.to_owned())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        call: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<&impl Serialize>,
        waits: bool,
    ) -> Result<Option<T>, OperatorError> {
        let body = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| OperatorError::BadAnswer {
                call,
                message: e.to_string(),
            })?),
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token()?))
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(HttpError::from)?;
        let client = if waits { &self.polls } else { &self.calls };
        let resp = client.send(req, wire::MAX_RESPONSE_BODY).await?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED || status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(resp.body())
                .map(|e| e.error)
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(&resp.body()[..resp.body().len().min(512)]).into()
                });
            return Err(OperatorError::Refused {
                call,
                status,
                message,
            });
        }
        serde_json::from_slice(resp.body())
            .map(Some)
            .map_err(|e| OperatorError::BadAnswer {
                call,
                message: e.to_string(),
            })
    }

    /// The pod's configuration for `connections`. With `revision`, waits up to `wait` for a newer one
    /// and returns None when there is none.
    pub async fn config(
        &self,
        connections: &[String],
        revision: Option<&str>,
        wait: Duration,
    ) -> Result<Option<SidecarConfig>, OperatorError> {
        let mut q = format!("/v1/config?connections={}", connections.join(","));
        if let Some(r) = revision {
            q.push_str(&format!("&revision={r}&waitSeconds={}", wait.as_secs()));
        }
        let got: Option<SidecarConfig> = self
            .call("GET /v1/config", Method::GET, &q, None::<&()>, revision.is_some())
            .await?;
        if let Some(cfg) = &got {
            check_answer(cfg, connections)?;
        }
        Ok(got)
    }

    /// `POST /v1/approvals`.
    pub async fn create_approval(
        &self,
        body: &wire::ApprovalCreate,
    ) -> Result<wire::ApprovalTicket, OperatorError> {
        self.call(
            "POST /v1/approvals",
            Method::POST,
            "/v1/approvals",
            Some(body),
            false,
        )
        .await?
        .ok_or(OperatorError::BadAnswer {
            call: "POST /v1/approvals",
            message: "no body".into(),
        })
    }

    /// `GET /v1/approvals/NAME`, waiting up to `wait` for a decision.
    pub async fn approval(&self, name: &str, wait: Duration) -> Result<wire::ApprovalState, OperatorError> {
        let path = format!("/v1/approvals/{name}?waitSeconds={}", wait.as_secs());
        self.call("GET /v1/approvals", Method::GET, &path, None::<&()>, true)
            .await?
            .ok_or(OperatorError::BadAnswer {
                call: "GET /v1/approvals",
                message: "no body".into(),
            })
    }

    /// `POST /v1/approvals/NAME/expire`.
    pub async fn expire_approval(&self, name: &str, reason: &str) -> Result<(), OperatorError> {
        let body = wire::ApprovalExpire {
            reason: reason.to_owned(),
        };
        let path = format!("/v1/approvals/{name}/expire");
        let _: Option<wire::ApprovalState> = self
            .call(
                "POST /v1/approvals/expire",
                Method::POST,
                &path,
                Some(&body),
                false,
            )
            .await?;
        Ok(())
    }

    /// `POST /v1/server-version`: the `server_version` the database announced when the sidecar logged
    /// in for `connection`; the operator shows it as the connection's `status.serverVersion`.
    pub async fn report_server_version(&self, connection: &str, version: &str) -> Result<(), OperatorError> {
        let body = wire::ServerVersionReport {
            connection: connection.to_owned(),
            server_version: version.to_owned(),
        };
        let _: Option<serde::de::IgnoredAny> = self
            .call(
                "POST /v1/server-version",
                Method::POST,
                "/v1/server-version",
                Some(&body),
                false,
            )
            .await?;
        Ok(())
    }

    /// `POST /v1/grants`.
    pub async fn take_grant(&self, body: &wire::GrantTake) -> Result<Option<String>, OperatorError> {
        let got: Option<wire::GrantTaken> = self
            .call("POST /v1/grants", Method::POST, "/v1/grants", Some(body), false)
            .await?;
        Ok(got.and_then(|g| g.name))
    }
}

/// The operator must answer with exactly the connections asked for.
fn check_answer(cfg: &SidecarConfig, asked: &[String]) -> Result<(), OperatorError> {
    let got: Vec<&str> = cfg.connections.iter().map(|c| c.metadata.name.as_str()).collect();
    if got.len() != asked.len() || asked.iter().any(|a| !got.contains(&a.as_str())) {
        return Err(OperatorError::BadAnswer {
            call: "GET /v1/config",
            message: format!(
                "asked for connections [{}], got [{}]",
                asked.join(", "),
                got.join(", ")
            ),
        });
    }
    Ok(())
}

/// Turns the operator's answer into the same [`FileConfig`] a config file gives: the cluster's issuers
/// join every connection's own, and secrets come only from the answer (never the environment).
pub fn to_file_config(cfg: &SidecarConfig) -> Result<FileConfig, ConfigError> {
    let mut out = FileConfig::default();
    for c in &cfg.connections {
        let mut c = c.clone();
        for iss in &cfg.cluster_issuers {
            if c.spec.identity.issuers.iter().any(|i| i.issuer == iss.issuer) {
                continue;
            }
            c.spec.identity.issuers.push(TrustedIssuer {
                issuer: iss.issuer.clone(),
                audiences: iss.audiences.clone(),
                jwks_uri: Some(iss.jwks.to_string()),
            });
        }
        out.connections.push(c);
    }
    let mut secrets = HashMap::new();
    for s in &cfg.secrets {
        let mut data = BTreeMap::new();
        for (k, v) in &s.data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|_| ConfigError {
                    file: None,
                    document: None,
                    object: Some(format!("Secret \"{}\"", s.name)),
                    field: Some(format!("data.{k}")),
                    message: "is not valid base64".into(),
                })?;
            data.insert(k.clone(), bytes);
        }
        secrets.insert(s.name.clone(), SecretData::new(data));
    }
    out.secrets = secrets;
    out.policies = cfg.policies.clone();
    check_across(&out)?;
    Ok(out)
}

/// Secrets in operator mode come only from the operator.
pub fn no_env(_: &str) -> Option<String> {
    None
}

/// Backoff between failed attempts: 0.5 s doubling to 10 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(10))
}
