//! Real TLS handshakes over loopback: a tokio-rustls server built with `client_facing_server_config`
//! and a client built with `upstream_client_config`, exchanging bytes once the handshake is done.
#![allow(clippy::unwrap_used)]

use std::{io, net::SocketAddr, sync::Arc};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::{CertificateError, ClientConfig, ServerConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

const HOST: &str = "db.example.test";

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IPs), as (chain PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        self.issue_with(names, |_| {})
    }

    fn issue_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let mut params = leaf_params(names);
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        (
            params.signed_by(&key, &self.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params
}

fn self_signed(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    (
        leaf_params(names).self_signed(&key).unwrap().pem(),
        key.serialize_pem(),
    )
}

/// Accepts one connection on 127.0.0.1, answers "ping" with "pong".
async fn serve_once(config: Arc<ServerConfig>) -> (SocketAddr, tokio::task::JoinHandle<io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.shutdown().await
    });
    (addr, server)
}

async fn ping(config: Arc<ClientConfig>, addr: SocketAddr, host: &str) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(config)
        .connect(server_name(host).unwrap(), tcp)
        .await?;
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"pong");
    Ok(())
}

/// Serves `server_cert` and dials it as `host` with a client for `mode` trusting `ca`.
async fn connect(
    server_cert: &(String, String),
    mode: TlsMode,
    ca: Option<&str>,
    host: &str,
) -> io::Result<()> {
    let client = upstream_client_config(mode, ca.map(str::as_bytes))
        .unwrap()
        .unwrap();
    connect_with(server_cert, client, host).await
}

async fn connect_with(
    server_cert: &(String, String),
    client: Arc<ClientConfig>,
    host: &str,
) -> io::Result<()> {
    let server_config =
        client_facing_server_config(server_cert.0.as_bytes(), server_cert.1.as_bytes()).unwrap();
    connect_to(server_config, client, host).await
}

async fn connect_to(
    server_config: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    host: &str,
) -> io::Result<()> {
    let (addr, server) = serve_once(server_config).await;
    let result = ping(client, addr, host).await;
    // The server task ends either way: after "pong", or when the client aborts the handshake.
    let served = server.await.unwrap();
    if result.is_ok() {
        served.unwrap();
    }
    result
}

/// The certificate problem the client reported, if the handshake failed because of one.
fn certificate_error(err: &io::Error) -> &CertificateError {
    match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(e)) => e,
        _ => panic!("expected a certificate error, got {err:?}"),
    }
}

fn is_name_mismatch(err: &CertificateError) -> bool {
    matches!(
        err,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

#[test]
fn disable_has_no_tls() {
    assert!(upstream_client_config(TlsMode::Disable, None).unwrap().is_none());
    assert!(
        upstream_client_config(TlsMode::Disable, Some(b"not even PEM"))
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn require_accepts_a_self_signed_certificate_for_any_name() {
    let cert = self_signed(&[HOST]);
    connect(&cert, TlsMode::Require, None, HOST).await.unwrap();
    connect(&cert, TlsMode::Require, None, "elsewhere.example.test")
        .await
        .unwrap();
    // A CA given with require is ignored, not enforced.
    let other = Ca::new("unrelated CA");
    connect(&cert, TlsMode::Require, Some(&other.pem()), HOST)
        .await
        .unwrap();
}

/// A server that sends one certificate but signs the handshake with another key (rustls' own
/// configuration refuses that pairing, so the resolver is built by hand).
#[derive(Debug)]
struct MismatchedKey(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for MismatchedKey {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// What separates `require` from "no verification at all": the server must still hold the key of
/// the certificate it presents.
#[tokio::test]
async fn require_still_verifies_the_handshake_signature() {
    let (cert, _) = self_signed(&[HOST]);
    let (_, other_key) = self_signed(&[HOST]);
    let provider = provider();
    let signer = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_slice(other_key.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let resolver = MismatchedKey(Arc::new(rustls::sign::CertifiedKey::new(chain, signer)));
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));

    let client = upstream_client_config(TlsMode::Require, None).unwrap().unwrap();
    let err = connect_to(Arc::new(server), client, HOST).await.unwrap_err();
    assert_eq!(certificate_error(&err), &CertificateError::BadSignature);
}

#[tokio::test]
async fn verify_ca_accepts_a_ca_signed_certificate_under_another_name() {
    let ca = Ca::new("dbward test CA");
    let cert = ca.issue(&[HOST]);
    connect(&cert, TlsMode::VerifyCa, Some(&ca.pem()), HOST)
        .await
        .unwrap();
    connect(&cert, TlsMode::VerifyCa, Some(&ca.pem()), "replica.example.test")
        .await
        .unwrap();
    connect(&cert, TlsMode::VerifyCa, Some(&ca.pem()), "127.0.0.1")
        .await
        .unwrap();
}

#[tokio::test]
async fn verify_ca_rejects_a_certificate_from_another_ca() {
    let ca = Ca::new("dbward test CA");
    let cert = Ca::new("someone else's CA").issue(&[HOST]);
    let err = connect(&cert, TlsMode::VerifyCa, Some(&ca.pem()), HOST)
        .await
        .unwrap_err();
    assert_eq!(certificate_error(&err), &CertificateError::UnknownIssuer);
}

/// The chain failure must win even when the name does not match either (see `ChainOnly`).
#[tokio::test]
async fn verify_ca_rejects_other_ca_under_other_name() {
    let ca = Ca::new("dbward test CA");
    let cert = Ca::new("someone else's CA").issue(&["attacker.example.test"]);
    let err = connect(&cert, TlsMode::VerifyCa, Some(&ca.pem()), HOST)
        .await
        .unwrap_err();
    assert_eq!(certificate_error(&err), &CertificateError::UnknownIssuer);
    let err = connect(
        &self_signed(&["x.test"]),
        TlsMode::VerifyCa,
        Some(&ca.pem()),
        HOST,
    )
    .await
    .unwrap_err();
    assert_eq!(certificate_error(&err), &CertificateError::UnknownIssuer);
}

#[tokio::test]
async fn verify_ca_still_checks_the_validity_period() {
    let ca = Ca::new("dbward test CA");
    let expired = ca.issue_with(&["elsewhere.example.test"], |p| {
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
    });
    let err = connect(&expired, TlsMode::VerifyCa, Some(&ca.pem()), HOST)
        .await
        .unwrap_err();
    assert!(
        matches!(certificate_error(&err), CertificateError::ExpiredContext { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn verify_full_accepts_a_matching_dns_name_or_ip() {
    let ca = Ca::new("dbward test CA");
    let cert = ca.issue(&[HOST, "127.0.0.1"]);
    connect(&cert, TlsMode::VerifyFull, Some(&ca.pem()), HOST)
        .await
        .unwrap();
    connect(&cert, TlsMode::VerifyFull, Some(&ca.pem()), "127.0.0.1")
        .await
        .unwrap();
}

#[tokio::test]
async fn verify_full_rejects_a_host_name_mismatch() {
    let ca = Ca::new("dbward test CA");
    let cert = ca.issue(&[HOST, "127.0.0.1"]);
    let err = connect(
        &cert,
        TlsMode::VerifyFull,
        Some(&ca.pem()),
        "replica.example.test",
    )
    .await
    .unwrap_err();
    assert!(is_name_mismatch(certificate_error(&err)), "{err}");
    let err = connect(&cert, TlsMode::VerifyFull, Some(&ca.pem()), "127.0.0.2")
        .await
        .unwrap_err();
    assert!(is_name_mismatch(certificate_error(&err)), "{err}");
}

#[tokio::test]
async fn verify_full_rejects_a_certificate_from_another_ca() {
    let ca = Ca::new("dbward test CA");
    let cert = Ca::new("someone else's CA").issue(&[HOST]);
    let err = connect(&cert, TlsMode::VerifyFull, Some(&ca.pem()), HOST)
        .await
        .unwrap_err();
    assert_eq!(certificate_error(&err), &CertificateError::UnknownIssuer);
}

/// Without a CA bundle the system roots are used; they do not include our private test CA.
#[tokio::test]
async fn verify_without_ca_uses_system_roots() {
    let cert = Ca::new("dbward test CA").issue(&[HOST]);
    for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
        match upstream_client_config(mode, None) {
            Ok(config) => {
                let err = connect_with(&cert, config.unwrap(), HOST).await.unwrap_err();
                assert_eq!(certificate_error(&err), &CertificateError::UnknownIssuer);
            }
            // A machine without any system roots says so clearly.
            Err(err @ TlsError::NoSystemRoots { .. }) => {
                assert!(err.to_string().contains("provide the CA certificate"), "{err}")
            }
            Err(err) => panic!("{err}"),
        }
    }
}

#[tokio::test]
async fn client_facing_server_config_serves_rustls_clients() {
    let ca = Ca::new("dbward test CA");
    let cert = ca.issue(&["localhost", "127.0.0.1"]);

    // A client that checks everything and offers ALPN "postgresql" (like libpq 17+).
    let verified = upstream_client_config(TlsMode::VerifyFull, Some(ca.pem().as_bytes()))
        .unwrap()
        .unwrap();
    connect_with(&cert, verified.clone(), "127.0.0.1").await.unwrap();

    // A client that offers no ALPN at all (older libpq, most drivers) is served too.
    let mut no_alpn = (*verified).clone();
    no_alpn.alpn_protocols.clear();
    connect_with(&cert, Arc::new(no_alpn), "localhost").await.unwrap();

    // A client that offers only another protocol is refused, as PostgreSQL does.
    let mut http = (*verified).clone();
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    let err = connect_with(&cert, Arc::new(http), "localhost")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
}

#[test]
fn ca_bundle_errors_name_the_problem() {
    let err = upstream_client_config(TlsMode::VerifyFull, Some(b"")).unwrap_err();
    assert_eq!(err.to_string(), "CA bundle contains no certificate");

    // A PEM file with only a key in it is not a CA bundle.
    let (_, key) = self_signed(&[HOST]);
    let err = upstream_client_config(TlsMode::VerifyCa, Some(key.as_bytes())).unwrap_err();
    assert_eq!(err.to_string(), "CA bundle contains no certificate");

    let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = upstream_client_config(TlsMode::VerifyCa, Some(garbage)).unwrap_err();
    assert!(matches!(err, TlsError::CaCertificate { index: 1, .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("CA bundle: certificate #1 cannot be used as a trust anchor")
    );

    let truncated = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
    let err = upstream_client_config(TlsMode::VerifyFull, Some(truncated)).unwrap_err();
    assert!(err.to_string().starts_with("CA bundle is not valid PEM"), "{err}");
}

#[test]
fn server_certificate_errors_name_the_problem() {
    let (cert, key) = self_signed(&[HOST]);
    let (_, other_key) = self_signed(&[HOST]);

    let err = client_facing_server_config(b"", key.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "certificate chain: no PEM certificate found");
    let err = client_facing_server_config(key.as_bytes(), key.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "certificate chain: no PEM certificate found");

    let err = client_facing_server_config(cert.as_bytes(), b"").unwrap_err();
    assert!(
        err.to_string().starts_with("private key: no PEM key found"),
        "{err}"
    );
    let err = client_facing_server_config(cert.as_bytes(), cert.as_bytes()).unwrap_err();
    assert!(
        err.to_string().starts_with("private key: no PEM key found"),
        "{err}"
    );

    let err = client_facing_server_config(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsError::CertifiedKey(_)), "{err}");
}

#[test]
fn server_names() {
    assert!(matches!(
        server_name("db.example.test").unwrap(),
        ServerName::DnsName(_)
    ));
    assert!(matches!(
        server_name("10.0.0.7").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert!(matches!(server_name("::1").unwrap(), ServerName::IpAddress(_)));
    assert!(matches!(server_name("[::1]").unwrap(), ServerName::IpAddress(_)));
    let err = server_name("bad host!").unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"bad host!\" is neither an IP address nor a valid DNS name"
    );
    assert!(server_name("").is_err());
}

#[test]
fn sslmode_names() {
    for mode in [
        TlsMode::Disable,
        TlsMode::Require,
        TlsMode::VerifyCa,
        TlsMode::VerifyFull,
    ] {
        assert_eq!(mode.as_str().parse::<TlsMode>().unwrap(), mode);
    }
    let err = "prefer".parse::<TlsMode>().unwrap_err();
    assert!(err.to_string().contains("fall back to plaintext"), "{err}");
}
