//! Test helpers: real RSA/EC keys made at test time, JWKS documents built from their public parts,
//! signed tokens, and a local HTTPS server for JWKS with a CA made by rcgen.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeySize, PublicKeyComponents},
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair as CertKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

/// A generated RSA key: its PKCS#8 PEM and public modulus and exponent.
struct RsaMaterial {
    pem: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// RSA 2048 keys are slow to make, so the test binary makes two, once.
static RSA_KEYS: LazyLock<Vec<RsaMaterial>> = LazyLock::new(|| {
    (0..2)
        .map(|_| {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
            let pkcs8 = pair.as_der().unwrap();
            let body = STANDARD.encode(pkcs8.as_ref());
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                lines.join("\n")
            );
            let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            RsaMaterial {
                pem,
                n: public.n,
                e: public.e,
            }
        })
        .collect()
});

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    /// The first cached RSA key under `kid`.
    pub fn rsa(kid: &str) -> Self {
        Self::rsa_n(0, kid)
    }

    /// The second cached RSA key (a different key pair) under `kid`.
    pub fn rsa_other(kid: &str) -> Self {
        Self::rsa_n(1, kid)
    }

    fn rsa_n(i: usize, kid: &str) -> Self {
        let RsaMaterial { pem, n, e } = &RSA_KEYS[i];
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
            }),
        }
    }

    /// A fresh EC P-256 key under `kid`.
    pub fn ec(kid: &str) -> Self {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65);
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            }),
        }
    }

    /// A token with this key's alg and kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWKS document with the keys' public parts.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Claims of a projected service-account token for `orders/api` in pod `api-0`, expiring in `exp_in` s.
pub fn claims(iss: &str, aud: &str, exp_in: i64) -> Value {
    json!({
        "iss": iss, "aud": [aud], "sub": "system:serviceaccount:orders:api",
        "iat": now(), "nbf": now() - 5, "exp": now() + exp_in,
        "kubernetes.io": {
            "namespace": "orders",
            "pod": {"name": "api-0", "uid": "c0ffee"},
            "serviceaccount": {"name": "api", "uid": "5a"}
        }
    })
}

/// A token assembled by hand: any header, any signature bytes.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An HTTPS server on 127.0.0.1:0 serving `body` at any path, with a certificate from a test CA.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub body: Arc<Mutex<String>>,
    pub hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(body: String) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, CertKey::generate().unwrap()).unwrap();
        let leaf_key = CertKey::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (task_body, task_hits) = (body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, body, hits) = (acceptor.clone(), task_body.clone(), task_hits.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let request_line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let body = if request_line.contains("/.well-known/openid-configuration") {
                        // OpenID discovery: point at this server's JWKS path.
                        format!(r#"{{"issuer":"https://{addr}","jwks_uri":"https://{addr}/openid/v1/jwks"}}"#)
                    } else {
                        body.lock().unwrap().clone()
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            addr,
            ca_pem: ca.pem(),
            body,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/openid/v1/jwks", self.addr)
    }

    pub fn set_body(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
