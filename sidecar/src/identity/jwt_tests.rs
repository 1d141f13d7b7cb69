#![allow(clippy::unwrap_used)]

use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::identity::{
    IdentityKind,
    testutil::{JwksServer, TestKey, claims, forge, jwks, now},
};

const ISS: &str = "https://kubernetes.default.svc.cluster.local";
const AUD: &str = "dbward.dev";

fn issuer(source: JwksSource) -> IssuerConfig {
    IssuerConfig {
        issuer: ISS.into(),
        audiences: vec![AUD.into(), "other".into()],
        jwks: source,
    }
}

fn static_verifier(keys: &[&TestKey]) -> TokenVerifier {
    TokenVerifier::new(vec![issuer(JwksSource::Static(jwks(keys)))]).unwrap()
}

/// Verifies that `token` is refused, and that neither the log text nor the client text echoes it.
async fn refused(verifier: &TokenVerifier, token: &str) -> IdentityError {
    let err = verifier.verify(token).await.unwrap_err();
    if token.len() > 8 {
        assert!(!err.to_string().contains(token), "error echoes the token: {err}");
        assert!(
            !err.client_message().contains(token),
            "client message echoes the token"
        );
    }
    err
}

/// A JWKS file in the temp dir, removed on drop.
struct TempJwks(PathBuf);

impl TempJwks {
    fn new(doc: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dbward-jwks-{}-{}.json",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let file = Self(std::env::temp_dir().join(name));
        file.replace(doc);
        file
    }

    /// Replaces the file by renaming a new one over it, as kubelet's atomic writer does.
    fn replace(&self, doc: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, doc).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for TempJwks {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn valid_rs256_service_account_token() {
    let key = TestKey::rsa("k1");
    let verifier = static_verifier(&[&key, &TestKey::ec("k2")]);
    let id = verifier.verify(&key.sign(&claims(ISS, AUD, 600))).await.unwrap();
    assert_eq!(id.kind, IdentityKind::Token);
    assert_eq!(id.subject, "system:serviceaccount:orders:api");
    assert_eq!(id.issuer.as_deref(), Some(ISS));
    assert_eq!(id.service_account.unwrap().to_string(), "orders/api");
    assert_eq!(id.pod.as_deref(), Some("api-0"));
    assert_eq!(id.claims["aud"], json!([AUD]));
}

#[tokio::test]
async fn valid_es256_token_with_groups() {
    let key = TestKey::ec("e1");
    let verifier = static_verifier(&[&TestKey::rsa("k1"), &key]);
    let mut c = claims(ISS, "other", 600);
    c["sub"] = json!("alice");
    c["groups"] = json!(["dba"]);
    c.as_object_mut().unwrap().remove("kubernetes.io");
    let id = verifier.verify(&key.sign(&c)).await.unwrap();
    assert_eq!(
        (id.subject.as_str(), id.groups.as_slice()),
        ("alice", &["dba".to_owned()][..])
    );
    assert_eq!(id.service_account, None);
}

#[tokio::test]
async fn token_without_kid_is_tried_against_every_key_of_its_algorithm() {
    let signer = TestKey::rsa_other("b");
    let verifier = static_verifier(&[&TestKey::rsa("a"), &signer, &TestKey::ec("c")]);
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(ISS, AUD, 60),
        &signer.encoding,
    )
    .unwrap();
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn expiry_with_at_most_60s_leeway() {
    let key = TestKey::rsa("k1");
    let verifier = static_verifier(&[&key]);
    assert!(
        verifier.verify(&key.sign(&claims(ISS, AUD, -10))).await.is_ok(),
        "within leeway"
    );
    let err = refused(&verifier, &key.sign(&claims(ISS, AUD, -120))).await;
    assert!(matches!(err, IdentityError::Expired { .. }), "{err}");
    assert_eq!(
        (err.sqlstate(), err.client_message().as_str()),
        ("28P01", "dbward: token has expired")
    );

    let mut no_exp = claims(ISS, AUD, 0);
    no_exp.as_object_mut().unwrap().remove("exp");
    let err = refused(&verifier, &key.sign(&no_exp)).await;
    assert!(
        matches!(err, IdentityError::MissingClaim { claim: "exp" }),
        "{err}"
    );
}

#[tokio::test]
async fn not_yet_valid() {
    let key = TestKey::ec("e1");
    let verifier = static_verifier(&[&key]);
    let mut c = claims(ISS, AUD, 7200);
    c["nbf"] = json!(now() + 3600);
    let err = refused(&verifier, &key.sign(&c)).await;
    assert!(matches!(err, IdentityError::NotYetValid { .. }), "{err}");
    assert_eq!(err.sqlstate(), "28P01");
}

#[tokio::test]
async fn wrong_or_missing_issuer() {
    let key = TestKey::rsa("k1");
    let verifier = static_verifier(&[&key]);
    for iss in [
        "https://evil.example.com",
        "https://kubernetes.default.svc.cluster.local/",
    ] {
        let err = refused(&verifier, &key.sign(&claims(iss, AUD, 600))).await;
        assert!(
            matches!(&err, IdentityError::UnknownIssuer { issuer } if issuer == iss),
            "{err}"
        );
        assert_eq!(err.sqlstate(), "28P01");
    }
    let mut c = claims(ISS, AUD, 600);
    c.as_object_mut().unwrap().remove("iss");
    let err = refused(&verifier, &key.sign(&c)).await;
    assert!(
        matches!(err, IdentityError::MissingClaim { claim: "iss" }),
        "{err}"
    );
}

#[tokio::test]
async fn audience_must_intersect() {
    let key = TestKey::rsa("k1");
    let verifier = static_verifier(&[&key]);
    let err = refused(
        &verifier,
        &key.sign(&claims(ISS, "https://kubernetes.default.svc", 600)),
    )
    .await;
    assert!(matches!(err, IdentityError::WrongAudience { .. }), "{err}");
    assert!(
        err.client_message().contains("dbward.dev"),
        "{}",
        err.client_message()
    );

    let mut c = claims(ISS, AUD, 600);
    c["aud"] = json!(["api", AUD]);
    assert!(
        verifier.verify(&key.sign(&c)).await.is_ok(),
        "one of several audiences"
    );
    c["aud"] = json!(AUD);
    assert!(
        verifier.verify(&key.sign(&c)).await.is_ok(),
        "a single string audience"
    );
    c.as_object_mut().unwrap().remove("aud");
    let err = refused(&verifier, &key.sign(&c)).await;
    assert!(
        matches!(err, IdentityError::MissingClaim { claim: "aud" }),
        "{err}"
    );
}

#[tokio::test]
async fn bad_signatures() {
    let key = TestKey::rsa("k1");
    let verifier = static_verifier(&[&key, &TestKey::ec("e1")]);
    // Another key pair under the published kid.
    let forged = TestKey::rsa_other("k1").sign(&claims(ISS, AUD, 600));
    let err = refused(&verifier, &forged).await;
    assert!(matches!(err, IdentityError::BadSignature { .. }), "{err}");
    let forged = TestKey::ec("e1").sign(&claims(ISS, AUD, 600));
    assert!(matches!(
        refused(&verifier, &forged).await,
        IdentityError::BadSignature { .. }
    ));

    // A genuine signature over different claims.
    let good = key.sign(&claims(ISS, AUD, 600));
    let mut other = claims(ISS, AUD, 600);
    other["sub"] = json!("system:serviceaccount:kube-system:admin");
    let evil = key.sign(&other);
    let (g, e): (Vec<_>, Vec<_>) = (good.split('.').collect(), evil.split('.').collect());
    let spliced = format!("{}.{}.{}", g[0], e[1], g[2]);
    let err = refused(&verifier, &spliced).await;
    assert!(matches!(err, IdentityError::BadSignature { .. }), "{err}");
    assert_eq!(err.sqlstate(), "28P01");
}

#[tokio::test]
async fn alg_none_and_hmac_are_refused() {
    let key = TestKey::rsa("k1");
    let verifier = static_verifier(&[&key]);
    let c = claims(ISS, AUD, 600);
    for alg in ["none", "None", "HS256", "RS512", "PS256", "EdDSA"] {
        let token = forge(&json!({"alg": alg, "kid": "k1"}), &c, b"");
        let err = refused(&verifier, &token).await;
        assert!(
            matches!(err, IdentityError::UnsupportedAlgorithm { .. }),
            "{alg}: {err}"
        );
    }
    // HS256 keyed with the public key material an attacker can read from the JWKS.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    for secret in [jwks(&[&key]), key.jwk["n"].as_str().unwrap().to_owned()] {
        let token = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret.as_bytes())).unwrap();
        let err = refused(&verifier, &token).await;
        assert!(matches!(err, IdentityError::UnsupportedAlgorithm { .. }), "{err}");
    }
}

#[tokio::test]
async fn algorithm_must_match_the_key_type() {
    let rsa = TestKey::rsa("r1");
    let ec = TestKey::ec("e1");
    let verifier = static_verifier(&[&rsa, &ec]);
    // An RS256 token naming the EC key, and an ES256 token naming the RSA key.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("e1".into());
    let token = jsonwebtoken::encode(&header, &claims(ISS, AUD, 600), &rsa.encoding).unwrap();
    let err = refused(&verifier, &token).await;
    assert!(matches!(err, IdentityError::KeyAlgorithmMismatch { .. }), "{err}");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("r1".into());
    let token = jsonwebtoken::encode(&header, &claims(ISS, AUD, 600), &ec.encoding).unwrap();
    assert!(matches!(
        refused(&verifier, &token).await,
        IdentityError::KeyAlgorithmMismatch { .. }
    ));
}

#[tokio::test]
async fn garbage_is_malformed() {
    let verifier = static_verifier(&[&TestKey::rsa("k1")]);
    let long = "a".repeat(20_000);
    let not_json = forge(&json!("x"), &json!({}), b"sig");
    let not_object = format!("{}.W10.c2ln", URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#));
    let crit = forge(
        &json!({"alg": "RS256", "crit": ["exp"]}),
        &claims(ISS, AUD, 60),
        b"sig",
    );
    let unsigned = forge(&json!({"alg": "RS256"}), &claims(ISS, AUD, 60), b"");
    for token in [
        "",
        "hunter2",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        &long,
        &not_json,
        &not_object,
        &crit,
        &unsigned,
    ] {
        let err = refused(&verifier, token).await;
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
        assert_eq!(err.sqlstate(), "28P01");
        assert_eq!(err.client_message(), "dbward: the password is not a valid JWT");
    }
}

#[tokio::test]
async fn jwks_file_unknown_kid_then_rotation() {
    let (k1, k2) = (TestKey::rsa("k1"), TestKey::ec("k2"));
    let file = TempJwks::new(&jwks(&[&k1]));
    let source = JwksSource::parse(&format!("file://{}", file.0.display())).unwrap();
    let verifier = TokenVerifier::new(vec![issuer(source)]).unwrap();
    assert!(verifier.verify(&k1.sign(&claims(ISS, AUD, 600))).await.is_ok());

    let new_token = k2.sign(&claims(ISS, AUD, 600));
    let err = refused(&verifier, &new_token).await;
    assert!(
        matches!(&err, IdentityError::UnknownKey { kid: Some(kid), .. } if kid == "k2"),
        "{err}"
    );
    assert_eq!(err.sqlstate(), "28P01");

    // The issuer rotates: the projected file now has both keys, then only the new one.
    file.replace(&jwks(&[&k1, &k2]));
    assert!(verifier.verify(&new_token).await.is_ok());
    file.replace(&jwks(&[&k2]));
    let err = refused(&verifier, &k1.sign(&claims(ISS, AUD, 600))).await;
    assert!(matches!(err, IdentityError::UnknownKey { .. }), "{err}");
    assert!(verifier.verify(&new_token).await.is_ok());
}

#[tokio::test]
async fn missing_or_broken_jwks_file_is_unavailable() {
    let key = TestKey::rsa("k1");
    let path = std::env::temp_dir().join(format!("dbward-no-such-jwks-{}.json", std::process::id()));
    let verifier = TokenVerifier::new(vec![issuer(JwksSource::File(path))]).unwrap();
    let err = refused(&verifier, &key.sign(&claims(ISS, AUD, 600))).await;
    assert!(matches!(err, IdentityError::JwksUnavailable { .. }), "{err}");
    assert_eq!(err.sqlstate(), "28000");

    let file = TempJwks::new("{\"keys\": [");
    let verifier = TokenVerifier::new(vec![issuer(JwksSource::File(file.0.clone()))]).unwrap();
    let err = refused(&verifier, &key.sign(&claims(ISS, AUD, 600))).await;
    assert!(matches!(err, IdentityError::JwksUnavailable { .. }), "{err}");
}

fn https_verifier(server: &JwksServer, refetch_interval: Duration) -> TokenVerifier {
    let config = HttpClientConfig {
        system_roots: false,
        extra_roots_pem: Some(server.ca_pem.clone().into_bytes()),
        ..Default::default()
    };
    let http = Arc::new(HttpClient::new(config).unwrap());
    let options = VerifierOptions {
        refetch_interval,
        ..Default::default()
    };
    TokenVerifier::with_options(vec![issuer(JwksSource::Url(server.url()))], options, Some(http)).unwrap()
}

#[tokio::test]
async fn jwks_over_https_is_cached_and_refetched_for_an_unknown_kid() {
    let (k1, k2) = (TestKey::rsa("k1"), TestKey::ec("k2"));
    let server = JwksServer::start(jwks(&[&k1])).await;
    let token1 = k1.sign(&claims(ISS, AUD, 600));
    let token2 = k2.sign(&claims(ISS, AUD, 600));

    // Default options: one fetch, then the cache; an unknown kid right after is not refetched.
    let verifier = https_verifier(&server, Duration::from_secs(30));
    assert_eq!(server.hits(), 0, "fetched lazily");
    assert!(verifier.verify(&token1).await.is_ok());
    assert!(verifier.verify(&token1).await.is_ok());
    assert_eq!(server.hits(), 1);
    server.set_body(jwks(&[&k1, &k2]));
    let err = refused(&verifier, &token2).await;
    assert!(matches!(err, IdentityError::UnknownKey { .. }), "{err}");
    assert_eq!(server.hits(), 1, "refetch is rate limited");

    // Once the refetch interval has passed, the unknown kid triggers one refetch and then verifies.
    let verifier = https_verifier(&server, Duration::ZERO);
    server.set_body(jwks(&[&k1]));
    assert!(verifier.verify(&token1).await.is_ok());
    assert_eq!(server.hits(), 2);
    server.set_body(jwks(&[&k1, &k2]));
    assert!(verifier.verify(&token2).await.is_ok());
    assert_eq!(server.hits(), 3);
    assert!(verifier.verify(&token2).await.is_ok());
    assert_eq!(server.hits(), 3, "known kids are served from the cache");
}

#[tokio::test]
async fn jwks_found_by_openid_discovery() {
    let key = TestKey::ec("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let iss = format!("https://{}", server.addr);
    let config = HttpClientConfig {
        system_roots: false,
        extra_roots_pem: Some(server.ca_pem.clone().into_bytes()),
        ..Default::default()
    };
    let http = Arc::new(HttpClient::new(config).unwrap());
    let discovered = IssuerConfig {
        issuer: iss.clone(),
        audiences: vec![AUD.to_owned()],
        jwks: JwksSource::Discover(iss.clone()),
    };
    let verifier =
        TokenVerifier::with_options(vec![discovered], VerifierOptions::default(), Some(http)).unwrap();
    let identity = verifier.verify(&key.sign(&claims(&iss, AUD, 600))).await.unwrap();
    assert_eq!(identity.issuer.as_deref(), Some(iss.as_str()));
    assert_eq!(server.hits(), 2, "the discovery document, then the JWKS");
}

#[tokio::test]
async fn jwks_server_not_trusted_is_unavailable() {
    let key = TestKey::rsa("k1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let other_ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()]).unwrap();
    let config = HttpClientConfig {
        system_roots: false,
        extra_roots_pem: Some(other_ca.cert.pem().into_bytes()),
        ..Default::default()
    };
    let http = Arc::new(HttpClient::new(config).unwrap());
    let verifier = TokenVerifier::with_options(
        vec![issuer(JwksSource::Url(server.url()))],
        VerifierOptions::default(),
        Some(http),
    )
    .unwrap();
    let err = refused(&verifier, &key.sign(&claims(ISS, AUD, 600))).await;
    assert!(matches!(err, IdentityError::JwksUnavailable { .. }), "{err}");
    assert_eq!(err.sqlstate(), "28000");
}

#[test]
fn configuration_is_validated() {
    let source = || JwksSource::Static(jwks(&[&TestKey::ec("e")]));
    let dup = vec![issuer(source()), issuer(source())];
    assert!(matches!(
        TokenVerifier::new(dup),
        Err(IdentityError::InvalidConfig { .. })
    ));
    let no_aud = IssuerConfig {
        audiences: vec![],
        ..issuer(source())
    };
    assert!(matches!(
        TokenVerifier::new(vec![no_aud]),
        Err(IdentityError::InvalidConfig { .. })
    ));
    let bad_jwks = issuer(JwksSource::Static("{\"keys\": []}".into()));
    assert!(matches!(
        TokenVerifier::new(vec![bad_jwks]),
        Err(IdentityError::InvalidConfig { .. })
    ));
    let plain = issuer(JwksSource::Url("http://idp.example.com/jwks".into()));
    assert!(matches!(
        TokenVerifier::with_options(vec![plain], VerifierOptions::default(), None),
        Err(IdentityError::InvalidConfig { .. })
    ));
    let verifier = TokenVerifier::new(vec![issuer(source())]).unwrap();
    assert_eq!(verifier.issuers().collect::<Vec<_>>(), [ISS]);
}
