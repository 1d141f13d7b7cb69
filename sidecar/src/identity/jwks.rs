//! JSON Web Key Sets: where they come from, which of their keys we accept, and the per-issuer cache.
//!
//! Keys are loaded lazily and kept until: a file source's file changes (projected volumes rotate by
//! swapping a symlink, so we compare mtime, size and inode), a URL source's set is older than
//! `max_key_age`, or a token names an unknown `kid` (refetched at most once per `refetch_interval`).
//! Only RSA (RS256, at least 2048 bits) and EC P-256 (ES256) signing keys are kept.

use std::{
    fmt, io,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use super::{
    IdentityError,
    http::{self, HttpClient, HttpError},
};

/// Where an issuer's JWKS is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file, e.g. a projected volume; reread when it changes.
    File(PathBuf),
    /// An `https://` URL (`http://` only for localhost).
    Url(String),
    /// The JWKS document itself (configuration pushed by the operator).
    Static(String),
    /// OpenID Connect discovery: `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    Discover(String),
}

impl JwksSource {
    /// Whether loading needs the HTTP client.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Url(_) | Self::Discover(_))
    }
}

impl JwksSource {
    /// Accepts `file:///path`, an absolute path, `https://...` (or `http://` to localhost), or an inline
    /// JWKS document starting with `{`.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let s = s.trim();
        let invalid = |reason| IdentityError::InvalidJwksSource {
            value: super::log_safe(s),
            reason,
        };
        if s.starts_with('{') {
            KeySet::parse(s.as_bytes()).map_err(|_| invalid("the inline JWKS has no usable key"))?;
            return Ok(Self::Static(s.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("file:// URLs need an absolute path (file:///...)"));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Self::File(PathBuf::from(s)));
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            return match http::check_url(s) {
                Ok(()) => Ok(Self::Url(s.to_owned())),
                Err(HttpError::InsecureUrl { .. }) => {
                    Err(invalid("plain http is only allowed for localhost"))
                }
                Err(_) => Err(invalid("not a valid URL")),
            };
        }
        Err(invalid("unrecognised scheme"))
    }
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Url(url) => write!(f, "{url}"),
            Self::Discover(issuer) => write!(f, "the JWKS discovered from {issuer}"),
            Self::Static(_) => f.write_str("inline JWKS"),
        }
    }
}

/// Why a JWKS could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("{source_desc} is larger than {limit} bytes")]
    TooLarge { source_desc: String, limit: usize },

    #[error("fetching {url}: {source}")]
    Fetch { url: String, source: HttpError },

    #[error("fetching {url}: HTTP status {status}")]
    Status { url: String, status: u16 },

    #[error("loading {source_desc} timed out after {timeout:?}")]
    Timeout { source_desc: String, timeout: Duration },

    #[error("JWKS is not a JSON object with a \"keys\" array: {0}")]
    Json(#[source] serde_json::Error),

    #[error("JWKS has no usable RS256 (RSA >= 2048 bits) or ES256 (P-256) signing key")]
    NoUsableKeys,

    #[error("no HTTP client was configured for URL JWKS sources")]
    NoHttpClient,

    #[error("{url} is not an OpenID configuration with a jwks_uri")]
    Discovery { url: String },
}

/// GETs `url` (status 200, at most `limit` bytes).
async fn fetch(client: &HttpClient, url: &str, limit: usize) -> Result<bytes::Bytes, JwksError> {
    let resp = client.get(url, limit).await.map_err(|source| match source {
        HttpError::BodyTooLarge { .. } => JwksError::TooLarge {
            source_desc: url.to_owned(),
            limit,
        },
        source => JwksError::Fetch {
            url: url.to_owned(),
            source,
        },
    })?;
    if resp.status() != ::http::StatusCode::OK {
        return Err(JwksError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    Ok(resp.into_body())
}

/// A key we accept: its `kid`, the one algorithm it may verify, and the key itself.
#[derive(Debug, Clone)]
pub(crate) struct VerifyingKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone)]
pub(crate) struct KeySet {
    pub keys: Vec<VerifyingKey>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    pub fn parse(bytes: &[u8]) -> Result<Self, JwksError> {
        let raw: RawJwks = serde_json::from_slice(bytes).map_err(JwksError::Json)?;
        let keys: Vec<_> = raw
            .keys
            .into_iter()
            .filter_map(|value| {
                let jwk: RawJwk = serde_json::from_value(value).ok()?;
                let kid = jwk.kid.clone();
                let key = usable_key(jwk);
                if key.is_none() {
                    debug!(kid = kid.as_deref().map(super::log_safe), "skipping unusable JWK");
                }
                key
            })
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Self { keys })
    }
}

fn usable_key(jwk: RawJwk) -> Option<VerifyingKey> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let b64 = |s: &Option<String>| URL_SAFE_NO_PAD.decode(s.as_deref()?).ok();
    let (alg, key) = match jwk.kty.as_str() {
        "RSA" => {
            if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
                return None;
            }
            let (n, e) = (b64(&jwk.n)?, b64(&jwk.e)?);
            let modulus = n.iter().skip_while(|b| **b == 0).count();
            if modulus < 256 || e.is_empty() {
                return None;
            }
            (Algorithm::RS256, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            if jwk.alg.as_deref().is_some_and(|a| a != "ES256") || jwk.crv.as_deref() != Some("P-256") {
                return None;
            }
            let (x, y) = (b64(&jwk.x)?, b64(&jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            // The uncompressed SEC1 point, which is what `from_ec_components` builds too.
            let point = [&[0x04][..], &x, &y].concat();
            (Algorithm::ES256, DecodingKey::from_ec_der(&point))
        }
        _ => return None,
    };
    Some(VerifyingKey {
        kid: jwk.kid,
        alg,
        key,
    })
}

/// Limits and intervals of a [`JwksCache`].
#[derive(Debug, Clone)]
pub(crate) struct CacheOptions {
    pub refetch_interval: Duration,
    pub max_key_age: Duration,
    pub fetch_timeout: Duration,
    pub max_bytes: usize,
}

/// How long a failed load is remembered before the next caller may try again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(2);

/// One loaded version of an issuer's keys.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub keys: KeySet,
    pub generation: u64,
    loaded_at: Instant,
    stamp: Option<FileStamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

impl From<&std::fs::Metadata> for FileStamp {
    fn from(m: &std::fs::Metadata) -> Self {
        Self {
            modified: m.modified().ok(),
            len: m.len(),
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

#[derive(Debug, Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<(Instant, Arc<JwksError>)>,
}

/// Why keys are (re)loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Nothing loaded yet, the file changed, or the set is too old.
    Needed,
    /// A token named a `kid` the current set lacks.
    UnknownKid,
}

/// The keys of one issuer, loaded lazily and shared by all connections.
#[derive(Debug)]
pub(crate) struct JwksCache {
    issuer: String,
    source: JwksSource,
    http: Option<Arc<HttpClient>>,
    options: CacheOptions,
    current: RwLock<Option<Arc<Snapshot>>>,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl JwksCache {
    /// A cache for `source`; a [`JwksSource::Static`] document is parsed now.
    pub fn new(
        issuer: String,
        source: JwksSource,
        http: Option<Arc<HttpClient>>,
        options: CacheOptions,
    ) -> Result<Self, JwksError> {
        let current = match &source {
            JwksSource::Static(doc) => Some(Arc::new(Snapshot {
                keys: KeySet::parse(doc.as_bytes())?,
                generation: 1,
                loaded_at: Instant::now(),
                stamp: None,
            })),
            s if s.is_remote() && http.is_none() => return Err(JwksError::NoHttpClient),
            _ => None,
        };
        Ok(Self {
            issuer,
            source,
            http,
            options,
            current: RwLock::new(current),
            refresh: Default::default(),
        })
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current keys, loading them first if there are none yet, the file changed or they are old.
    pub async fn keys(&self) -> Result<Arc<Snapshot>, Arc<JwksError>> {
        match self.snapshot() {
            Some(snap) if self.is_fresh(&snap).await => Ok(snap),
            snap => self.reload(snap.map(|s| s.generation), Trigger::Needed).await,
        }
    }

    /// After a `kid` miss on `seen`: refetch unless that happened less than `refetch_interval` ago, and
    /// return the newest keys (possibly `seen` itself).
    pub async fn refresh_for_unknown_kid(&self, seen: &Snapshot) -> Result<Arc<Snapshot>, Arc<JwksError>> {
        self.reload(Some(seen.generation), Trigger::UnknownKid).await
    }

    async fn is_fresh(&self, snap: &Snapshot) -> bool {
        match &self.source {
            JwksSource::Static(_) => true,
            JwksSource::File(path) => match tokio::fs::metadata(path).await {
                Ok(meta) => snap.stamp == Some(FileStamp::from(&meta)),
                Err(_) => false,
            },
            JwksSource::Url(_) | JwksSource::Discover(_) => {
                snap.loaded_at.elapsed() < self.options.max_key_age
            }
        }
    }

    /// Loads the keys unless another caller did while we waited (generation moved past `seen`), or the
    /// rate limits say not yet. Serves the previous keys if a reload fails.
    async fn reload(&self, seen: Option<u64>, trigger: Trigger) -> Result<Arc<Snapshot>, Arc<JwksError>> {
        let mut state = self.refresh.lock().await;
        let previous = self.snapshot();
        if let Some(snap) = &previous
            && Some(snap.generation) != seen
        {
            return Ok(snap.clone());
        }
        let now = Instant::now();
        let recent = |at: Instant, within: Duration| now.saturating_duration_since(at) < within;
        if let Some(snap) = &previous {
            if matches!(self.source, JwksSource::Static(_)) {
                return Ok(snap.clone());
            }
            if trigger == Trigger::UnknownKid
                && state
                    .last_attempt
                    .is_some_and(|at| recent(at, self.options.refetch_interval))
            {
                return Ok(snap.clone());
            }
        }
        // After a failure, wait a little before trying again; much longer for a URL whose previous
        // keys we can keep serving, so an unreachable endpoint does not stall every connection.
        let backoff = match (&previous, &self.source) {
            (Some(_), s) if s.is_remote() => self.options.refetch_interval,
            _ => FAILURE_BACKOFF,
        };
        if let Some((at, err)) = &state.last_error
            && recent(*at, backoff)
        {
            return previous.ok_or_else(|| err.clone());
        }

        state.last_attempt = Some(now);
        let started = Instant::now();
        match self.load().await {
            Ok((keys, stamp)) => {
                let generation = previous.as_ref().map_or(0, |s| s.generation) + 1;
                info!(
                    issuer = %self.issuer, source = %self.source, keys = keys.keys.len(), generation,
                    ?trigger, elapsed_ms = started.elapsed().as_millis() as u64, "loaded JWKS"
                );
                let snap = Arc::new(Snapshot {
                    keys,
                    generation,
                    loaded_at: Instant::now(),
                    stamp,
                });
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(snap.clone());
                state.last_error = None;
                Ok(snap)
            }
            Err(err) => {
                let err = Arc::new(err);
                state.last_error = Some((Instant::now(), err.clone()));
                match previous {
                    Some(snap) => {
                        warn!(issuer = %self.issuer, source = %self.source, error = %err, "JWKS reload failed; keeping the previous keys");
                        Ok(snap)
                    }
                    None => {
                        warn!(issuer = %self.issuer, source = %self.source, error = %err, "JWKS load failed");
                        Err(err)
                    }
                }
            }
        }
    }

    async fn load(&self) -> Result<(KeySet, Option<FileStamp>), JwksError> {
        let timeout = self.options.fetch_timeout;
        let limit = self.options.max_bytes;
        let fut = async {
            match &self.source {
                JwksSource::Static(doc) => Ok((KeySet::parse(doc.as_bytes())?, None)),
                JwksSource::File(path) => {
                    let read_err = |source| JwksError::Read {
                        path: path.clone(),
                        source,
                    };
                    let file = tokio::fs::File::open(path).await.map_err(read_err)?;
                    let stamp = FileStamp::from(&file.metadata().await.map_err(read_err)?);
                    let mut bytes = Vec::new();
                    file.take(limit as u64 + 1)
                        .read_to_end(&mut bytes)
                        .await
                        .map_err(read_err)?;
                    if bytes.len() > limit {
                        return Err(JwksError::TooLarge {
                            source_desc: self.source.to_string(),
                            limit,
                        });
                    }
                    Ok((KeySet::parse(&bytes)?, Some(stamp)))
                }
                JwksSource::Url(url) => {
                    let client = self.http.as_ref().ok_or(JwksError::NoHttpClient)?;
                    Ok((KeySet::parse(&fetch(client, url, limit).await?)?, None))
                }
                JwksSource::Discover(issuer) => {
                    let client = self.http.as_ref().ok_or(JwksError::NoHttpClient)?;
                    let url = format!(
                        "{}/.well-known/openid-configuration",
                        issuer.trim_end_matches('/')
                    );
                    let doc = fetch(client, &url, limit).await?;
                    let jwks_uri = serde_json::from_slice::<serde_json::Value>(&doc)
                        .ok()
                        .and_then(|v| v.get("jwks_uri")?.as_str().map(str::to_owned))
                        .ok_or_else(|| JwksError::Discovery { url: url.clone() })?;
                    super::http::check_url(&jwks_uri).map_err(|source| JwksError::Fetch {
                        url: jwks_uri.clone(),
                        source,
                    })?;
                    Ok((KeySet::parse(&fetch(client, &jwks_uri, limit).await?)?, None))
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| JwksError::Timeout {
                source_desc: self.source.to_string(),
                timeout,
            })?
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::testutil::{TestKey, jwks};

    #[test]
    fn sources_parse() {
        assert_eq!(
            JwksSource::parse("file:///var/run/jwks.json").unwrap(),
            JwksSource::File("/var/run/jwks.json".into())
        );
        assert_eq!(
            JwksSource::parse(" /etc/jwks.json ").unwrap(),
            JwksSource::File("/etc/jwks.json".into())
        );
        assert_eq!(
            JwksSource::parse("https://kubernetes.default.svc/openid/v1/jwks").unwrap(),
            JwksSource::Url("https://kubernetes.default.svc/openid/v1/jwks".into())
        );
        assert!(matches!(
            JwksSource::parse("http://localhost:8080/jwks"),
            Ok(JwksSource::Url(_))
        ));
        for bad in [
            "http://idp.example.com/jwks",
            "file://relative",
            "jwks.json",
            "ftp://x",
            "{\"keys\": []}",
        ] {
            let err = JwksSource::parse(bad).unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidJwksSource { .. }),
                "{bad}: {err}"
            );
        }
        let doc = jwks(&[&TestKey::ec("k1")]);
        assert!(matches!(JwksSource::parse(&doc), Ok(JwksSource::Static(_))));
    }

    #[test]
    fn only_rs256_and_es256_signing_keys_are_kept() {
        let rsa = TestKey::rsa("r");
        let ec = TestKey::ec("e");
        let mut doc: serde_json::Value = serde_json::from_str(&jwks(&[&rsa, &ec])).unwrap();
        let keys = doc["keys"].as_array_mut().unwrap();
        let mut enc = keys[0].clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        let mut rs512 = keys[0].clone();
        rs512["alg"] = json!("RS512");
        let mut p384 = keys[1].clone();
        p384["crv"] = json!("P-384");
        let mut short = keys[0].clone();
        short["n"] = json!(URL_SAFE_NO_PAD.encode([0xff; 128]));
        keys.extend([
            enc,
            rs512,
            p384,
            short,
            json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
            json!("not a key"),
        ]);
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        let kept: Vec<_> = set.keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(
            kept,
            [(Some("r"), Algorithm::RS256), (Some("e"), Algorithm::ES256)]
        );

        assert!(matches!(
            KeySet::parse(b"{\"keys\": []}"),
            Err(JwksError::NoUsableKeys)
        ));
        assert!(matches!(KeySet::parse(b"[]"), Err(JwksError::Json(_))));
    }
}
