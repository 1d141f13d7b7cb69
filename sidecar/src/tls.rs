//! TLS on both legs of the proxy: toward the upstream PostgreSQL server (the sidecar is the client)
//! and toward local clients that ask for it with `SSLRequest` (the sidecar is the server).
//!
//! Everything uses rustls with the aws-lc-rs provider passed explicitly, so these configurations do
//! not depend on which process-wide default provider was installed (or whether one was).
//!
//! Upstream verification follows libpq's `sslmode` semantics, minus the modes that silently fall
//! back to plaintext (`allow`, `prefer`):
//!
//! | mode          | encrypted | chain checked | host name checked |
//! |---------------|-----------|---------------|-------------------|
//! | `disable`     | no        | -             | -                 |
//! | `require`     | yes       | no            | no                |
//! | `verify-ca`   | yes       | yes           | no                |
//! | `verify-full` | yes       | yes           | yes               |
//!
//! Even in `require` the server must prove it holds the key of the certificate it sent (handshake
//! signatures are always verified); what `require` gives up is any check of *who* that key belongs
//! to. libpq treats `require` as `verify-ca` when a root certificate file happens to exist; we do not
//! copy that implicit switch: the configured mode is the behaviour, and `ca_pem` is ignored in
//! `require`.
//!
//! Both sides advertise the ALPN protocol `postgresql`, as libpq and the server do since
//! PostgreSQL 17; older servers ignore the extension, and a local client offering some other protocol
//! is refused, which is what PostgreSQL itself does to stop cross-protocol attacks.

use std::{str::FromStr, sync::Arc};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::{
        VerifierBuilderError, WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, UnixTime,
    pem::{self, PemObject},
};

/// ALPN protocol name registered for PostgreSQL.
const POSTGRES_ALPN: &[u8] = b"postgresql";

/// How the sidecar secures its connection to the upstream server (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext.
    Disable,
    /// Encrypted; the server's certificate is not checked.
    Require,
    /// Encrypted; the certificate must chain to the CA, whatever host name it is for.
    VerifyCa,
    /// Encrypted; the certificate must chain to the CA and be issued for the host we dial.
    VerifyFull,
}

impl TlsMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsMode {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s {
            "disable" => Ok(Self::Disable),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(TlsError::UnknownSslMode(other.to_owned())),
        }
    }
}

/// What is wrong with which TLS input.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "unknown sslmode \"{0}\": use disable, require, verify-ca or verify-full \
         (allow and prefer are not supported because they fall back to plaintext)"
    )]
    UnknownSslMode(String),
    #[error("CA bundle contains no certificate")]
    EmptyCaBundle,
    #[error("CA bundle is not valid PEM: {0}")]
    CaBundlePem(#[source] pem::Error),
    #[error("CA bundle: certificate #{index} cannot be used as a trust anchor: {source}")]
    CaCertificate {
        /// 1-based position in the bundle.
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "sslmode {mode} without a CA certificate uses the system's root certificates, but none could be \
         loaded ({detail}); provide the CA certificate that signed the server's certificate"
    )]
    NoSystemRoots { mode: TlsMode, detail: String },
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(#[source] VerifierBuilderError),
    #[error("certificate chain: no PEM certificate found")]
    NoCertificate,
    #[error("certificate chain is not valid PEM: {0}")]
    CertificatePem(#[source] pem::Error),
    #[error("private key: no PEM key found (expected PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey,
    #[error("private key is not valid PEM: {0}")]
    PrivateKeyPem(#[source] pem::Error),
    #[error("certificate and private key cannot be used together: {0}")]
    CertifiedKey(#[source] rustls::Error),
    #[error("\"{0}\" is neither an IP address nor a valid DNS name")]
    InvalidServerName(String),
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// The client configuration for dialing the upstream server in `mode`, or `None` for `disable`.
///
/// `ca_pem` is the PEM bundle of CA certificates to trust in `verify-ca` / `verify-full`; without it
/// the system's roots are used. Loading those reads files, so build this once per upstream and share
/// the `Arc`.
pub fn upstream_client_config(
    mode: TlsMode,
    ca_pem: Option<&[u8]>,
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    if mode == TlsMode::Disable {
        return Ok(None);
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let mut config = match mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        TlsMode::VerifyCa => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(mode, ca_pem)?), provider)
                .build()
                .map_err(TlsError::Verifier)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        TlsMode::VerifyFull => builder
            .with_root_certificates(roots(mode, ca_pem)?)
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![POSTGRES_ALPN.to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The server configuration for TLS toward local clients, from a PEM certificate chain (leaf first)
/// and its PEM private key. No client certificates are requested: callers are identified by other
/// means (DESIGN section 4).
pub fn client_facing_server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertificatePem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        e => TlsError::PrivateKeyPem(e),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        // Also checks that the key belongs to the leaf certificate.
        .with_single_cert(certs, key)
        .map_err(TlsError::CertifiedKey)?;
    config.alpn_protocols = vec![POSTGRES_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The name to dial and (in `verify-full`) to check: an IP address or a DNS name. A bracketed IPv6
/// literal (`[::1]`) is accepted too. For a DNS name it is also sent as SNI, like libpq does.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare)
        .map(|name| name.to_owned())
        .map_err(|_| TlsError::InvalidServerName(host.to_owned()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Trust anchors: the given CA bundle, or the system's roots when there is none.
fn roots(mode: TlsMode, ca_pem: Option<&[u8]>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for (index, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
                let cert = cert.map_err(TlsError::CaBundlePem)?;
                roots.add(cert).map_err(|source| TlsError::CaCertificate {
                    index: index + 1,
                    source,
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::EmptyCaBundle);
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            let (_, unparsable) = roots.add_parsable_certificates(loaded.certs);
            let detail = loaded
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            if roots.is_empty() {
                let detail = if detail.is_empty() {
                    "no certificate found".to_owned()
                } else {
                    detail
                };
                return Err(TlsError::NoSystemRoots { mode, detail });
            }
            if unparsable > 0 || !detail.is_empty() {
                tracing::debug!(unparsable, errors = %detail, "some system root certificates were skipped");
            }
        }
    }
    Ok(roots)
}

/// `sslmode=require`: accept whatever certificate the server sends, but still make it prove, with
/// the handshake signature, that it holds the matching private key. That keeps the session keys
/// bound to the certificate; it does not say who the server is.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the full WebPKI check (chain to our roots, validity period, key usage,
/// handshake signatures) except the host name.
///
/// `WebPkiServerVerifier` checks the chain before the name and returns at the first failure, so a
/// name-mismatch error means everything before it passed; that is why accepting exactly that error
/// (and nothing else) keeps every other check. The test `verify_ca_rejects_other_ca_under_other_name`
/// guards this ordering.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
