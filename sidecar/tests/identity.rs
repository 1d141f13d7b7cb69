//! Caller identity end to end: JWTs signed at test time (ES256 and RS256) given as the Postgres password
//! by tokio-postgres, psql and a raw client, checked against a JWKS file, and the identity — or the pod's
//! own when there is no token — handed to the session hooks with the caller's Unix uid.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, LazyLock, Mutex};

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
use common::*;
use dbward_sidecar::{
    config::{self, runtime::RunOptions},
    identity::{CallerIdentity, IdentityKind},
    proxy::hook::{Hooks, SessionHooks, SessionInfo},
};
use dbward_testkit::shared;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const AMBIENT: &str = "team-a/agent";

/// A signing key and its public JWK.
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn ec(kid: &'static str) -> Self {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        // The uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            kid,
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    fn rsa(kid: &'static str) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
        let b64 = STANDARD.encode(pair.as_der().unwrap().as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
        });
        Self {
            kid,
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The issuer's keys (published in its JWKS) and a stranger's (not published).
struct Keys {
    ec: TestKey,
    rsa: TestKey,
    stranger: TestKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    ec: TestKey::ec("ec-1"),
    rsa: TestKey::rsa("rsa-1"),
    stranger: TestKey::ec("stranger"),
});

fn now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// Claims for `sub` from the test issuer for audience dbward.dev, valid for ten minutes.
fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": ["dbward.dev"], "sub": sub, "iat": now(), "nbf": now() - 5, "exp": now() + 600})
}

/// Records the identity of every session the proxy opens.
#[derive(Default)]
struct Recorder(Mutex<Vec<CallerIdentity>>);

impl SessionHooks for Recorder {
    fn open(&self, session: &SessionInfo) -> Hooks {
        self.0.lock().unwrap().push(session.identity.clone());
        Hooks {
            statements: None,
            results: None,
            describe_portals: false,
        }
    }
}

impl Recorder {
    fn take(&self) -> Vec<CallerIdentity> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A proxy trusting the test issuer (its JWKS in a temp dir), with ambient identity `AMBIENT`.
struct Setup {
    proxy: TestProxy,
    sessions: Arc<Recorder>,
    dir: TempDir,
}

async fn setup(allow_ambient: bool) -> Setup {
    let dir = TempDir::new("identity");
    let jwks = json!({"keys": [KEYS.ec.jwk, KEYS.rsa.jwk]}).to_string();
    let path = dir.write("jwks.json", jwks.as_bytes());
    let identity = format!(
        "  identity:\n    allowAmbient: {allow_ambient}\n    issuers:\n    - issuer: {ISSUER}\n      \
         audiences: [dbward.dev]\n      jwksUri: {}",
        path.display()
    );
    let yaml = connection_yaml(shared(), &format!("  tls: {{mode: disable}}\n{identity}"));
    let sessions = Arc::new(Recorder::default());
    let opts = RunOptions {
        identity: AMBIENT.into(),
        ..RunOptions::default()
    };
    let proxy = start_proxy_with(&yaml, opts, Some(sessions.clone() as Arc<dyn SessionHooks>)).await;
    Setup { proxy, sessions, dir }
}

impl Setup {
    fn with_password(&self, user: &str, password: &str) -> String {
        format!("{} password={password}", self.proxy.conn_string(user, "shop"))
    }
}

/// The effective uid of this process, from /proc/self/status.
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Runs `select current_user` on a client and checks the session is the credential's.
async fn runs_as_app(c: &tokio_postgres::Client) {
    let row = c.query_one("select current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "app");
}

#[tokio::test]
async fn es256_and_rs256_tokens_identify_the_caller() {
    let s = setup(true).await;
    let mut groups = claims("alice@example.com");
    groups["groups"] = json!(["dba", "oncall"]);
    for token in [KEYS.ec.sign(&groups), KEYS.rsa.sign(&claims("bob@example.com"))] {
        let c = connect(&s.with_password("jwt", &token)).await.unwrap();
        runs_as_app(&c).await;
    }
    let seen = s.sessions.take();
    assert_eq!(seen.len(), 2);
    for (id, subject) in seen.iter().zip(["alice@example.com", "bob@example.com"]) {
        assert_eq!(id.kind, IdentityKind::Token);
        assert_eq!(id.subject, subject);
        assert_eq!(id.issuer.as_deref(), Some(ISSUER));
        assert_eq!(
            id.uid,
            Some(euid()),
            "the uid comes from the kernel's socket table"
        );
    }
    assert_eq!(seen[0].groups, ["dba", "oncall"]);
}

#[tokio::test]
async fn psql_presents_a_token_in_pgpassword() {
    let s = setup(true).await;
    let token = KEYS.rsa.sign(&claims("carol@example.com"));
    let conninfo = s.proxy.conn_string("jwt", "orders");
    let run = psql(
        &conninfo,
        &["select current_user"],
        s.dir.path(),
        &[("PGPASSWORD", &token)],
        None,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "app");
    let seen = s.sessions.take();
    assert_eq!(
        (seen[0].kind, seen[0].subject.as_str()),
        (IdentityKind::Token, "carol@example.com")
    );
}

#[tokio::test]
async fn without_a_token_the_caller_is_the_pod() {
    let s = setup(true).await;
    let c = connect(&s.proxy.app()).await.unwrap();
    runs_as_app(&c).await;
    let seen = s.sessions.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].kind, IdentityKind::Ambient);
    assert_eq!(seen[0].subject, "system:serviceaccount:team-a:agent");
    assert_eq!(seen[0].issuer, None);
    assert_eq!(seen[0].uid, Some(euid()));

    // A nested process running as another Unix user is told apart by its uid.
    let other = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    if euid() == 0 && other.status.success() {
        let uid: u32 = String::from_utf8(other.stdout).unwrap().trim().parse().unwrap();
        let run = psql(
            &s.proxy.app(),
            &["select current_user"],
            s.dir.path(),
            &[],
            Some(uid),
        )
        .await;
        assert!(run.ok, "{}", run.stderr);
        assert_eq!(run.stdout.trim(), "app");
        assert_eq!(s.sessions.take()[0].uid, Some(uid));
    }
}

#[tokio::test]
async fn refused_tokens_say_why_and_never_echo_the_token() {
    let s = setup(true).await;
    let mut expired = claims("eve");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    expired["nbf"] = json!(now() - 7200);
    let mut wrong_audience = claims("eve");
    wrong_audience["aud"] = json!(["someone-else"]);
    let mut other_issuer = claims("eve");
    other_issuer["iss"] = json!("https://evil.test");
    let mut no_subject = claims("eve");
    no_subject.as_object_mut().unwrap().remove("sub");
    let mut forged_kid = Header::new(Algorithm::ES256);
    forged_kid.kid = Some("ec-1".into());
    let hs256 = jsonwebtoken::encode(
        &Header::default(),
        &claims("eve"),
        &EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    let cases = [
        ("expired", KEYS.ec.sign(&expired), "token has expired"),
        (
            "wrong audience",
            KEYS.rsa.sign(&wrong_audience),
            "token audience is not accepted (expected one of: dbward.dev)",
        ),
        (
            "unknown key",
            KEYS.stranger.sign(&claims("eve")),
            "token is signed with a key its issuer does not publish",
        ),
        (
            "another key under a published kid",
            jsonwebtoken::encode(&forged_kid, &claims("eve"), &KEYS.stranger.encoding).unwrap(),
            "token signature is invalid",
        ),
        (
            "untrusted issuer",
            KEYS.ec.sign(&other_issuer),
            "token issuer is not trusted for this connection",
        ),
        (
            "HS256",
            hs256,
            "token signing algorithm is not accepted (use RS256 or ES256)",
        ),
        (
            "garbage",
            "hunter2-not-a-jwt".to_owned(),
            "the password is not a valid JWT",
        ),
    ];
    for (what, token, message) in &cases {
        let msgs = Raw::connect(s.proxy.addr)
            .await
            .login(&[("user", "jwt"), ("database", "shop")], Some(token))
            .await;
        let msgs = msgs.unwrap_err();
        let e = first_error(&msgs);
        assert_eq!(e.code().as_deref(), Some("28P01"), "{what}");
        let m = e.field(b'M').unwrap();
        assert!(m.ends_with(message), "{what}: {m}");
        assert!(!any_message_contains(&msgs, token), "{what}: the token came back");
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !any_message_contains(&msgs, signature),
            "{what}: part of the token came back"
        );
    }
    // What a real client shows.
    let e = connect(&s.with_password("jwt", &cases[0].1)).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("28P01"));
    assert!(!e.to_string().contains(&cases[0].1));
    assert!(s.sessions.take().is_empty(), "no session was opened");
}

#[tokio::test]
async fn without_ambient_identity_every_caller_needs_a_token() {
    let s = setup(false).await;
    // libpq and tokio-postgres are asked for a password and have none.
    let run = psql(&s.proxy.app(), &["select 1"], s.dir.path(), &[], None).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("no password supplied"), "{}", run.stderr);
    let e = connect(&s.proxy.app()).await.unwrap_err();
    let cause = std::error::Error::source(&e)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(cause.contains("password missing"), "{e:?}");
    // A raw client is asked for a cleartext password (the token), and closing instead is refused.
    let msgs = Raw::connect(s.proxy.addr)
        .await
        .login(&[("user", "app"), ("database", "shop")], None)
        .await;
    let msgs = msgs.unwrap_err();
    assert_eq!(
        msgs.last().unwrap(),
        &Msg {
            tag: b'R',
            body: 3i32.to_be_bytes().to_vec()
        }
    );

    // With a token, whatever the user name.
    for user in ["app", "jwt"] {
        let c = connect(&s.with_password(user, &KEYS.ec.sign(&claims("dave"))))
            .await
            .unwrap();
        runs_as_app(&c).await;
    }
    let seen = s.sessions.take();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|id| id.kind == IdentityKind::Token && id.subject == "dave")
    );
}

#[tokio::test]
async fn no_issuers_and_no_ambient_identity_is_refused_with_a_hint() {
    let pg = shared();
    let yaml = connection_yaml(pg, "  tls: {mode: disable}\n  identity: {allowAmbient: false}");
    let e = config::parse_str(&yaml).unwrap_err().to_string();
    assert!(
        e.contains("spec.identity.issuers") && e.contains("no caller could ever connect"),
        "{e}"
    );

    // The same settings reached at run time (e.g. pushed by the operator): callers are told why.
    let yaml = connection_yaml(pg, "  tls: {mode: disable}");
    let proxy = start_proxy_edited(&yaml, RunOptions::default(), |pc| {
        let conn = Arc::get_mut(&mut pc.connections[0].0).unwrap();
        conn.allow_ambient = false;
        conn.verifier = None;
    })
    .await;
    let e = connect(&proxy.app()).await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "28000");
    assert!(
        db.message()
            .contains("connection \"orders\" trusts no token issuer"),
        "{}",
        db.message()
    );
    assert!(
        db.hint().is_some_and(|h| h.contains("spec.identity.issuers")),
        "{:?}",
        db.hint()
    );
}

#[tokio::test]

async fn the_token_user_without_issuers_is_told_the_truth() {
    let proxy = start_proxy().await;
    let e = connect(&format!("{} password=x", proxy.conn_string("jwt", "shop")))
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "28000");
    assert!(
        !db.message().contains("does not allow the pod's own identity"),
        "{}",
        db.message()
    );
    assert!(
        !db.hint().unwrap_or_default().contains("allowAmbient"),
        "{:?}",
        db.hint()
    );
}

#[tokio::test]

async fn every_token_refusal_says_it_comes_from_dbward() {
    let s = setup(true).await;
    let mut wrong_audience = claims("eve");
    wrong_audience["aud"] = json!(["someone-else"]);
    let mut no_subject = claims("eve");
    no_subject.as_object_mut().unwrap().remove("sub");
    for token in [KEYS.ec.sign(&wrong_audience), KEYS.ec.sign(&no_subject)] {
        let e = connect(&s.with_password("jwt", &token)).await.unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
        assert!(db.message().starts_with("dbward: "), "{}", db.message());
    }
}
