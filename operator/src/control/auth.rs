//! Who is calling the control API: a sidecar presents its pod's projected service-account token
//! (audience `dbward.dev`); a TokenReview says whose it is and which pod it is bound to, and the pod
//! itself says which connections were injected into it. Nothing the sidecar says about itself is taken
//! on trust.
//!
//! The decisions ([`identity_from_review`], [`check_pod`]) are plain functions; [`Authenticator`] does
//! the two API calls and caches a verified token for a short while, so that a sidecar's long-polls do
//! not cost a TokenReview each.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use dbward_crds::wire::{PodIdentity, TOKEN_AUDIENCE};
use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus},
    core::v1::Pod,
};
use kube::{Api, Client, api::PostParams};
use tracing::debug;

use crate::admission::spec::INJECTED_ANNOTATION;

/// The TokenReview's `extra` keys that bind a token to a pod.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
/// How long a verified token is believed without asking again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// At most this many tokens are cached; beyond it, expired entries go, then everything.
const CACHE_MAX: usize = 10_000;

/// Why a caller is refused. Messages say what to fix; none quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token: present the pod's projected token (audience {TOKEN_AUDIENCE})")]
    NoToken,
    /// The API server did not accept the token.
    #[error("the token is not valid: {0}")]
    Unauthenticated(String),
    /// The token is a service account's but not bound to a pod (e.g. made with `kubectl create token`
    /// without `--bound-object-kind Pod`).
    #[error(
        "the token of {0} is not bound to a pod: the sidecar must present the projected token the injector mounts"
    )]
    NotPodBound(String),
    /// Not a service account's token.
    #[error("the token is {0}'s, not a service account's")]
    NotServiceAccount(String),
    /// The pod the token names is gone or was replaced.
    #[error("pod {0} no longer exists (or was replaced by another of the same name)")]
    PodGone(String),
    /// The pod does not run as the token's service account.
    #[error("pod {pod} runs as service account {actual:?}, not {claimed}")]
    WrongServiceAccount {
        pod: String,
        claimed: String,
        actual: String,
    },
    /// The pod was not injected with a connection it asks for.
    #[error("pod {pod} was injected for connection(s) [{injected}]; it may not use {asked:?}")]
    ConnectionNotInjected {
        pod: String,
        injected: String,
        asked: String,
    },
    /// The API server could not be asked.
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The HTTP status the control API answers with.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::NoToken | Self::Unauthenticated(_) | Self::NotPodBound(_) | Self::NotServiceAccount(_) => {
                S::UNAUTHORIZED
            }
            Self::PodGone(_) | Self::WrongServiceAccount { .. } | Self::ConnectionNotInjected { .. } => {
                S::FORBIDDEN
            }
            Self::Unavailable(_) => S::SERVICE_UNAVAILABLE,
        }
    }
}

/// The pod a TokenReview's answer names. The service account comes from the user name
/// (`system:serviceaccount:NS:NAME`), the pod from the token's binding.
pub fn identity_from_review(status: &TokenReviewStatus) -> Result<PodIdentity, AuthError> {
    if status.authenticated != Some(true) {
        let why = status
            .error
            .clone()
            .unwrap_or_else(|| "rejected by the API server".into());
        return Err(AuthError::Unauthenticated(why));
    }
    if let Some(aud) = &status.audiences
        && !aud.iter().any(|a| a == TOKEN_AUDIENCE)
    {
        return Err(AuthError::Unauthenticated(format!(
            "its audiences [{}] do not include {TOKEN_AUDIENCE}",
            aud.join(", ")
        )));
    }
    let user = status
        .user
        .as_ref()
        .ok_or_else(|| AuthError::Unauthenticated("no user".into()))?;
    let username = user.username.clone().unwrap_or_default();
    let Some(rest) = username.strip_prefix("system:serviceaccount:") else {
        return Err(AuthError::NotServiceAccount(username));
    };
    let Some((namespace, service_account)) = rest.split_once(':') else {
        return Err(AuthError::NotServiceAccount(username));
    };
    let extra = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|e| e.get(key))
            .and_then(|v| v.first())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let (Some(pod), Some(pod_uid)) = (extra(POD_NAME_EXTRA), extra(POD_UID_EXTRA)) else {
        return Err(AuthError::NotPodBound(username));
    };
    Ok(PodIdentity {
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        pod,
        pod_uid,
    })
}

/// The connections injected into `pod` (its `dbward.dev/injected` annotation), after checking that it is
/// the pod the token was bound to.
pub fn check_pod(pod: Option<&Pod>, who: &PodIdentity) -> Result<Vec<String>, AuthError> {
    let name = format!("{}/{}", who.namespace, who.pod);
    let Some(pod) = pod else {
        return Err(AuthError::PodGone(name));
    };
    if pod.metadata.uid.as_deref() != Some(who.pod_uid.as_str()) {
        return Err(AuthError::PodGone(name));
    }
    let actual = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    if actual != who.service_account {
        return Err(AuthError::WrongServiceAccount {
            pod: name,
            claimed: who.service_account.clone(),
            actual,
        });
    }
    Ok(pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECTED_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// Every connection in `asked` must have been injected.
pub fn check_connections(who: &PodIdentity, injected: &[String], asked: &[&str]) -> Result<(), AuthError> {
    match asked.iter().find(|a| !injected.iter().any(|i| i == *a)) {
        None => Ok(()),
        Some(a) => Err(AuthError::ConnectionNotInjected {
            pod: format!("{}/{}", who.namespace, who.pod),
            injected: injected.join(", "),
            asked: (*a).to_owned(),
        }),
    }
}

/// A verified caller: the pod, and the connections injected into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub identity: PodIdentity,
    pub injected: Vec<String>,
}

/// Checks tokens with TokenReview and the pod they name; caches the answer for [`CACHE_TTL`].
pub struct Authenticator {
    client: Client,
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl Authenticator {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller presenting `token`.
    pub async fn caller(&self, token: &str) -> Result<Caller, AuthError> {
        let key = sha256(token.as_bytes());
        let now = Instant::now();
        if let Some((caller, at)) = self.lock().get(&key)
            && now.duration_since(*at) < CACHE_TTL
        {
            return Ok(caller.clone());
        }
        let caller = self.verify(token).await?;
        let mut cache = self.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| now.duration_since(*at) < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (caller.clone(), now));
        Ok(caller)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Caller, Instant)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![TOKEN_AUDIENCE.to_owned()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(format!("TokenReview failed: {e}")))?;
        let identity = identity_from_review(&answer.status.unwrap_or_default())?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &identity.namespace);
        let pod = pods
            .get_opt(&identity.pod)
            .await
            .map_err(|e| AuthError::Unavailable(format!("reading pod {}: {e}", identity.pod)))?;
        let injected = check_pod(pod.as_ref(), &identity)?;
        debug!(namespace = %identity.namespace, pod = %identity.pod, "sidecar token verified");
        Ok(Caller { identity, injected })
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
