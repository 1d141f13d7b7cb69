//! Verifying a JWT presented as the Postgres password against the trusted issuers.
//!
//! The unverified `iss` only chooses which issuer's keys to use; the signature (RS256 or ES256, with
//! the key named by `kid` and of the matching type), then `iss` (exact), `aud` (one of the issuer's
//! audiences), `exp` (required) and `nbf` are checked by jsonwebtoken with at most 60 s of leeway.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::debug;

use super::{
    CallerIdentity, IdentityError, Result,
    http::{HttpClient, HttpClientConfig},
    jwks::{CacheOptions, JwksCache, JwksSource, KeySet, Snapshot, VerifyingKey},
    log_safe,
};

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The most clock skew we tolerate on `exp` and `nbf`.
const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// A token must name at least one of these in `aud`.
    pub audiences: Vec<String>,
    /// Where its signing keys are published.
    pub jwks: JwksSource,
}

/// Tunables of a [`TokenVerifier`]; the defaults are the documented behaviour.
#[derive(Debug, Clone)]
pub struct VerifierOptions {
    /// Clock skew allowed on `exp` and `nbf` (capped at 60 s). Default 60 s.
    pub leeway: Duration,
    /// After a token names an unknown `kid`, refetch its issuer's JWKS at most this often. Default 30 s.
    pub refetch_interval: Duration,
    /// Refetch a URL JWKS once it is this old, to drop revoked keys. Default 10 min.
    pub max_key_age: Duration,
    /// Deadline for loading a JWKS. Default 5 s.
    pub fetch_timeout: Duration,
    /// Largest JWKS document accepted. Default 1 MiB.
    pub max_jwks_bytes: usize,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            leeway: MAX_LEEWAY,
            refetch_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(600),
            fetch_timeout: Duration::from_secs(5),
            max_jwks_bytes: 1024 * 1024,
        }
    }
}

struct Issuer {
    audiences: Vec<String>,
    jwks: JwksCache,
    rs256: Validation,
    es256: Validation,
}

/// Verifies JWTs of the trusted issuers, caching their keys. Share it behind an `Arc`.
pub struct TokenVerifier {
    issuers: HashMap<String, Issuer>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuers", &self.issuers.keys())
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier with default options; builds an HTTPS client on the system roots if any issuer's
    /// JWKS is a URL. Fails on duplicate issuers, empty audiences or an unusable inline JWKS.
    pub fn new(issuers: Vec<IssuerConfig>) -> Result<Self> {
        let http = match issuers.iter().find(|i| i.jwks.is_remote()) {
            Some(first) => Some(Arc::new(HttpClient::new(HttpClientConfig::default()).map_err(
                |e| IdentityError::InvalidConfig {
                    issuer: first.issuer.clone(),
                    reason: e.to_string(),
                },
            )?)),
            None => None,
        };
        Self::with_options(issuers, VerifierOptions::default(), http)
    }

    /// A verifier with explicit options and HTTP client (e.g. one trusting the cluster CA).
    pub fn with_options(
        issuers: Vec<IssuerConfig>,
        options: VerifierOptions,
        http: Option<Arc<HttpClient>>,
    ) -> Result<Self> {
        let cache_options = CacheOptions {
            refetch_interval: options.refetch_interval,
            max_key_age: options.max_key_age,
            fetch_timeout: options.fetch_timeout,
            max_bytes: options.max_jwks_bytes,
        };
        let leeway = options.leeway.min(MAX_LEEWAY).as_secs();
        let mut map = HashMap::new();
        for config in issuers {
            let invalid = |reason: String| IdentityError::InvalidConfig {
                issuer: config.issuer.clone(),
                reason,
            };
            if config.issuer.is_empty() {
                return Err(invalid("the issuer is empty".into()));
            }
            if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
                return Err(invalid("it needs at least one non-empty audience".into()));
            }
            if map.contains_key(&config.issuer) {
                return Err(invalid("it is listed twice".into()));
            }
            match &config.jwks {
                JwksSource::Url(url) | JwksSource::Discover(url) => {
                    super::http::check_url(url).map_err(|e| invalid(e.to_string()))?;
                }
                _ => {}
            }
            let jwks = JwksCache::new(
                config.issuer.clone(),
                config.jwks,
                http.clone(),
                cache_options.clone(),
            )
            .map_err(|e| invalid(e.to_string()))?;
            let validation = |alg| {
                let mut v = Validation::new(alg);
                v.leeway = leeway;
                v.validate_exp = true;
                v.validate_nbf = true;
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                v.set_issuer(&[&config.issuer]);
                v.set_audience(&config.audiences);
                v
            };
            let issuer = Issuer {
                rs256: validation(Algorithm::RS256),
                es256: validation(Algorithm::ES256),
                audiences: config.audiences,
                jwks,
            };
            map.insert(config.issuer, issuer);
        }
        Ok(Self { issuers: map })
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }

    /// Verifies `token` and returns the identity it carries.
    pub async fn verify(&self, token: &str) -> Result<CallerIdentity> {
        let token = token.trim();
        let unverified = Unverified::parse(token)?;
        let issuer =
            self.issuers
                .get_key_value(&unverified.iss)
                .ok_or_else(|| IdentityError::UnknownIssuer {
                    issuer: log_safe(&unverified.iss),
                })?;
        let (iss, issuer) = issuer;
        let unavailable = |source| IdentityError::JwksUnavailable {
            issuer: iss.clone(),
            source,
        };
        let kid = unverified.kid.as_deref();

        let mut snapshot = issuer.jwks.keys().await.map_err(unavailable)?;
        if matches!(select(&snapshot.keys, kid, unverified.alg), Selection::NotFound) {
            debug!(issuer = %iss, kid = kid.map(log_safe), "unknown kid; refreshing JWKS");
            snapshot = issuer
                .jwks
                .refresh_for_unknown_kid(&snapshot)
                .await
                .map_err(unavailable)?;
        }
        let candidates = candidates(&snapshot, iss, kid, unverified.alg)?;
        let validation = match unverified.alg {
            Algorithm::ES256 => &issuer.es256,
            _ => &issuer.rs256,
        };
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => {
                    let identity = CallerIdentity::from_token_claims(iss, data.claims)?;
                    debug!(issuer = %iss, kid = kid.map(log_safe), %identity, "token verified");
                    return Ok(identity);
                }
                // Without a kid, several keys may fit: try the next one on a signature mismatch.
                Err(err) if matches!(err.kind(), ErrorKind::InvalidSignature) => last = Some(err),
                Err(err) => return Err(map_error(&err, iss, &issuer.audiences)),
            }
        }
        Err(match last {
            Some(err) => map_error(&err, iss, &issuer.audiences),
            None => IdentityError::UnknownKey {
                issuer: iss.clone(),
                kid: kid.map(log_safe),
            },
        })
    }
}

enum Selection<'a> {
    Keys(Vec<&'a VerifyingKey>),
    /// Keys with the kid exist, but none is for the token's algorithm.
    AlgorithmMismatch(Algorithm),
    NotFound,
}

/// The keys that may have signed a token with `kid` (any key when there is none) and `alg`.
fn select<'a>(set: &'a KeySet, kid: Option<&str>, alg: Algorithm) -> Selection<'a> {
    let named: Vec<_> = set
        .keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
        .collect();
    let Some(first) = named.first() else {
        return Selection::NotFound;
    };
    let first_alg = first.alg;
    let fitting: Vec<_> = named.into_iter().filter(|k| k.alg == alg).collect();
    if fitting.is_empty() {
        Selection::AlgorithmMismatch(first_alg)
    } else {
        Selection::Keys(fitting)
    }
}

fn candidates<'a>(
    snapshot: &'a Snapshot,
    issuer: &str,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Vec<&'a VerifyingKey>> {
    match select(&snapshot.keys, kid, alg) {
        Selection::Keys(keys) => Ok(keys),
        Selection::AlgorithmMismatch(key_alg) => Err(IdentityError::KeyAlgorithmMismatch {
            issuer: issuer.to_owned(),
            kid: kid.map(log_safe),
            alg: format!("{alg:?}"),
            key_alg: format!("{key_alg:?}"),
        }),
        Selection::NotFound => Err(IdentityError::UnknownKey {
            issuer: issuer.to_owned(),
            kid: kid.map(log_safe),
        }),
    }
}

fn map_error(err: &jsonwebtoken::errors::Error, issuer: &str, audiences: &[String]) -> IdentityError {
    let issuer = issuer.to_owned();
    match err.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidKeyFormat => IdentityError::BadSignature { issuer },
        ErrorKind::ExpiredSignature => IdentityError::Expired { issuer },
        ErrorKind::ImmatureSignature => IdentityError::NotYetValid { issuer },
        ErrorKind::InvalidAudience => IdentityError::WrongAudience {
            issuer,
            expected: audiences.to_vec(),
        },
        ErrorKind::InvalidIssuer => IdentityError::UnknownIssuer { issuer },
        ErrorKind::MissingRequiredClaim(claim) => IdentityError::MissingClaim {
            claim: match claim.as_str() {
                "exp" => "exp",
                "iss" => "iss",
                "aud" => "aud",
                "sub" => "sub",
                _ => "nbf",
            },
        },
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            IdentityError::UnsupportedAlgorithm { alg: "?".into() }
        }
        ErrorKind::InvalidClaimFormat(_) => IdentityError::Malformed {
            reason: "a registered claim (exp, nbf, iss, aud) has the wrong type",
        },
        _ => IdentityError::Malformed {
            reason: "the token cannot be decoded",
        },
    }
}

/// What we read from a token before verifying it: only used to pick the issuer and key.
#[derive(Debug)]
struct Unverified {
    alg: Algorithm,
    kid: Option<String>,
    iss: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

impl Unverified {
    fn parse(token: &str) -> Result<Self> {
        let malformed = |reason| IdentityError::Malformed { reason };
        if token.is_empty() {
            return Err(malformed("the password is empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed("the token is longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("a JWT has three dot-separated parts"));
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed("the header is not base64url"))?;
        let header: RawHeader = serde_json::from_slice(&header)
            .map_err(|_| malformed("the header is not a JSON object with alg"))?;
        let alg = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => return Err(IdentityError::UnsupportedAlgorithm { alg: log_safe(other) }),
        };
        if header.crit.is_some() {
            return Err(malformed("the header has critical extensions (crit)"));
        }
        if signature.is_empty() {
            return Err(malformed("the token has no signature"));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| malformed("the payload is not base64url"))?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| malformed("the payload is not a JSON object"))?;
        let Some(Value::String(iss)) = claims.get("iss") else {
            return Err(IdentityError::MissingClaim { claim: "iss" });
        };
        Ok(Self {
            alg,
            kid: header.kid,
            iss: iss.clone(),
        })
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
