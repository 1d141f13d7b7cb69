//! A minimal HTTPS client: one request per connection over hyper 1 + tokio-rustls (aws-lc-rs), trusting
//! the system roots and/or an extra CA. Plain `http://` is accepted only for loopback hosts (tests,
//! node-local agents). Every request has a deadline and a bound on the response body.
//!
//! Used for JWKS fetching; meant to be reused by other small control-plane calls.

use std::{fmt, io, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    task::JoinHandle,
};
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

/// Why a request failed. Never contains request or response bodies.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be used (not absolute, user info, unsupported scheme...).
    #[error("URL {url:?} is not usable: {reason}")]
    InvalidUrl { url: String, reason: &'static str },

    /// `http://` to a host other than 127.0.0.1, ::1 or localhost.
    #[error("URL {url:?} uses plain http, which is only allowed for localhost; use https")]
    InsecureUrl { url: String },

    /// The extra CA bundle has no usable certificate or is not PEM.
    #[error("extra CA bundle is not a PEM certificate list: {0}")]
    BadCaPem(String),

    /// Neither the system trust store nor the extra CA gave any root certificate.
    #[error("no trusted root certificates: the system store is empty and no extra CA was given")]
    NoTrustRoots,

    /// Building the TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),

    /// The TCP connection could not be made.
    #[error("connecting to {authority}: {source}")]
    Connect { authority: String, source: io::Error },

    /// The TLS handshake failed (certificate not trusted, wrong name...).
    #[error("TLS handshake with {authority}: {source}")]
    TlsHandshake { authority: String, source: io::Error },

    /// An HTTP protocol error.
    #[error("HTTP exchange with {authority}: {source}")]
    Http { authority: String, source: hyper::Error },

    /// The request could not be built.
    #[error("building the request: {0}")]
    Request(#[from] http::Error),

    /// The response body exceeds the caller's limit.
    #[error("response from {authority} is larger than {limit} bytes")]
    BodyTooLarge { authority: String, limit: usize },

    /// The whole exchange took longer than the deadline.
    #[error("request to {authority} timed out after {timeout:?}")]
    Timeout { authority: String, timeout: Duration },
}

/// Result of the HTTP client.
pub type Result<T, E = HttpError> = std::result::Result<T, E>;

/// How to build an [`HttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Trust the operating system's root certificates.
    pub system_roots: bool,
    /// Extra PEM CA certificates to trust (e.g. the cluster CA).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Deadline for a whole request: connect, TLS, request, response body.
    pub timeout: Duration,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            system_roots: true,
            extra_roots_pem: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A small HTTP/1.1 client. Cheap to share behind an `Arc`; holds no connections.
#[derive(Clone)]
pub struct HttpClient {
    tls: TlsConnector,
    timeout: Duration,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(config: HttpClientConfig) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        if config.system_roots {
            let native = rustls_native_certs::load_native_certs();
            for err in &native.errors {
                warn!(error = %err, "skipping unreadable system CA certificates");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            debug!(added, ignored, "loaded system root certificates");
        }
        if let Some(pem) = &config.extra_roots_pem {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| HttpError::BadCaPem(e.to_string()))?;
            if certs.is_empty() {
                return Err(HttpError::BadCaPem("no CERTIFICATE block".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| HttpError::BadCaPem(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            return Err(HttpError::NoTrustRoots);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(tls)),
            timeout: config.timeout,
        })
    }

    /// `GET url`, with the response body limited to `max_body` bytes.
    pub async fn get(&self, url: &str, max_body: usize) -> Result<Response<Bytes>> {
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Bytes::new())?;
        self.send(req, max_body).await
    }

    /// Sends `req` (absolute URI) on a new connection and reads the whole response, at most
    /// `max_body` bytes of body, within the client's deadline.
    pub async fn send(&self, req: Request<Bytes>, max_body: usize) -> Result<Response<Bytes>> {
        let target = Target::parse(req.uri())?;
        let authority = target.authority.clone();
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.send_inner(target, req, max_body))
            .await
            .map_err(|_| HttpError::Timeout { authority, timeout })?
    }

    async fn send_inner(
        &self,
        target: Target,
        req: Request<Bytes>,
        max_body: usize,
    ) -> Result<Response<Bytes>> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| HttpError::Connect {
                authority: target.authority.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let (mut parts, body) = req.into_parts();
        parts.uri = target.origin_form.clone();
        parts.headers.insert(header::HOST, target.host_header()?);
        parts
            .headers
            .entry(header::USER_AGENT)
            .or_insert(header::HeaderValue::from_static("dbward"));
        let req = Request::from_parts(parts, Full::new(body));
        if target.tls {
            let name = ServerName::try_from(target.host.clone()).map_err(|_| HttpError::InvalidUrl {
                url: target.authority.clone(),
                reason: "bad host name",
            })?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|source| HttpError::TlsHandshake {
                    authority: target.authority.clone(),
                    source,
                })?;
            exchange(tls, req, max_body, &target.authority).await
        } else {
            exchange(tcp, req, max_body, &target.authority).await
        }
    }
}

/// Aborts the connection task when the request is done or abandoned (timeout).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<IO>(
    io: IO,
    req: Request<Full<Bytes>>,
    max_body: usize,
    authority: &str,
) -> Result<Response<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |source| HttpError::Http {
        authority: authority.to_owned(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http_err)?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        if let Err(error) = conn.await {
            debug!(%error, "HTTP connection ended with an error");
        }
    }));
    let resp = sender.send_request(req).await.map_err(http_err)?;
    let too_large = || HttpError::BodyTooLarge {
        authority: authority.to_owned(),
        limit: max_body,
    };
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(too_large());
    }
    let (parts, body) = resp.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return Err(match err.downcast::<hyper::Error>() {
                Ok(source) => http_err(*source),
                Err(_) => too_large(),
            });
        }
    };
    Ok(Response::from_parts(parts, body))
}

/// Where a request goes, from its absolute URI.
#[derive(Debug)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// `host[:port]` as written in the URL, for the Host header and messages.
    authority: String,
    origin_form: Uri,
}

impl Target {
    fn parse(uri: &Uri) -> Result<Self> {
        let url = uri.to_string();
        let invalid = |reason| HttpError::InvalidUrl {
            url: url.clone(),
            reason,
        };
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(_) => return Err(invalid("the scheme is not https")),
            None => return Err(invalid("not an absolute URL")),
        };
        let auth = uri.authority().ok_or_else(|| invalid("no host"))?;
        if auth.as_str().contains('@') {
            return Err(invalid("user info in URLs is not supported"));
        }
        let host = auth
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        if !tls && !is_loopback_host(&host) {
            return Err(HttpError::InsecureUrl { url });
        }
        let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let origin_form = match uri.path_and_query() {
            Some(pq) => Uri::try_from(pq.as_str()).map_err(|_| invalid("bad path"))?,
            None => Uri::from_static("/"),
        };
        Ok(Self {
            tls,
            host,
            port,
            authority: auth.as_str().to_owned(),
            origin_form,
        })
    }

    fn host_header(&self) -> Result<header::HeaderValue> {
        header::HeaderValue::from_str(&self.authority).map_err(|_| HttpError::InvalidUrl {
            url: self.authority.clone(),
            reason: "bad host",
        })
    }
}

/// Whether plain http is acceptable for `host` (brackets already removed).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

/// Checks that `url` is one this client will fetch (https, or http to loopback), without fetching it.
pub fn check_url(url: &str) -> Result<()> {
    let uri: Uri = url.parse().map_err(|_| HttpError::InvalidUrl {
        url: url.to_owned(),
        reason: "not a valid URL",
    })?;
    Target::parse(&uri).map(drop)
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://issuer.example.com/openid/v1/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]:9/jwks").is_ok());
        assert!(matches!(
            check_url("http://issuer.example.com/jwks"),
            Err(HttpError::InsecureUrl { .. })
        ));
        assert!(matches!(
            check_url("http://127.0.0.2/jwks"),
            Err(HttpError::InsecureUrl { .. })
        ));
        assert!(matches!(
            check_url("ftp://x/y"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            check_url("https://u:p@x/y"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            check_url("/just/a/path"),
            Err(HttpError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn target_parts() {
        let t = Target::parse(&"https://[::1]:8443/a/b?c=d".parse().unwrap()).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 8443, true));
        assert_eq!(t.origin_form, "/a/b?c=d");
        assert_eq!(t.authority, "[::1]:8443");
        let t = Target::parse(&"https://issuer.example.com".parse().unwrap()).unwrap();
        assert_eq!((t.port, t.origin_form.to_string().as_str()), (443, "/"));
    }

    #[test]
    fn extra_ca_must_be_pem() {
        let config = HttpClientConfig {
            system_roots: false,
            extra_roots_pem: Some(b"not pem".to_vec()),
            ..Default::default()
        };
        assert!(matches!(HttpClient::new(config), Err(HttpError::BadCaPem(_))));
        let none = HttpClientConfig {
            system_roots: false,
            ..Default::default()
        };
        assert!(matches!(HttpClient::new(none), Err(HttpError::NoTrustRoots)));
    }

    /// A one-shot plain-HTTP server on loopback that answers every connection with `response`.
    async fn serve(response: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
                let _ = conn.write_all(response).await;
                let _ = conn.shutdown().await;
            }
        });
        format!("http://{addr}/jwks")
    }

    fn client(timeout: Duration) -> HttpClient {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let config = HttpClientConfig {
            system_roots: false,
            extra_roots_pem: Some(ca.cert.pem().into_bytes()),
            timeout,
        };
        HttpClient::new(config).unwrap()
    }

    #[tokio::test]
    async fn loopback_http_get_and_body_limit() {
        let url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").await;
        let resp = client(Duration::from_secs(5)).get(&url, 1024).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body().as_ref(), b"hello");
        let err = client(Duration::from_secs(5)).get(&url, 4).await.unwrap_err();
        assert!(matches!(err, HttpError::BodyTooLarge { limit: 4, .. }), "{err}");

        // Without Content-Length, the limit applies while streaming.
        let url = serve(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789").await;
        let err = client(Duration::from_secs(5)).get(&url, 4).await.unwrap_err();
        assert!(matches!(err, HttpError::BodyTooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let err = client(Duration::from_millis(200))
            .get(&url, 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        drop(listener);
    }
}
