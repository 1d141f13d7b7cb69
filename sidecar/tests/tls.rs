//! TLS on both legs against a real PostgreSQL and real clients: the sidecar's upstream connection in
//! each `tls.mode` (with certificates from a test CA made by rcgen), and TLS toward local clients (psql
//! with `sslmode=require`, `disable` and `verify-full`).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::LazyLock;

use common::*;
use dbward_sidecar::config::runtime::RunOptions;
use dbward_testkit::{AuthMethod, PgOptions, TestPostgres, TlsFiles, shared};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::AsyncReadExt;

/// Certificates made once per test binary.
struct Pki {
    ca_pem: String,
    /// A CA that signed nothing here.
    other_ca_pem: String,
    /// For `localhost` and `127.0.0.1`, signed by `ca_pem`.
    server: TlsFiles,
    /// For `db.internal` only, signed by `ca_pem`.
    misnamed: TlsFiles,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(names: &[&str], ca: &CertifiedIssuer<'static, KeyPair>) -> TlsFiles {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    TlsFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let authority = ca("dbward test CA");
    Pki {
        ca_pem: authority.pem(),
        other_ca_pem: ca("some other CA").pem(),
        server: leaf(&["localhost", "127.0.0.1"], &authority),
        misnamed: leaf(&["db.internal"], &authority),
    }
});

fn tls_server(files: &TlsFiles) -> TestPostgres {
    let opts = PgOptions {
        auth: AuthMethod::ScramSha256,
        tls: Some(files.clone()),
        load_schema: false,
    };
    TestPostgres::start(opts).unwrap()
}

/// A TLS server whose certificate names `localhost` and `127.0.0.1`.
static SERVER: LazyLock<TestPostgres> = LazyLock::new(|| tls_server(&PKI.server));
/// A TLS server whose certificate names only `db.internal`.
static MISNAMED: LazyLock<TestPostgres> = LazyLock::new(|| tls_server(&PKI.misnamed));

/// Config for connection `orders` to `host` and `pg`'s port with `tls`, and a Secret `ca` holding `ca_pem`.
fn tls_yaml(pg: &TestPostgres, host: &str, tls: &str, ca_pem: Option<&str>) -> String {
    let mut yaml = connection_yaml_to(
        host,
        pg.port(),
        pg.app_user(),
        pg.app_password(),
        &format!("  tls: {tls}"),
    );
    if let Some(pem) = ca_pem {
        let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca}}\nstringData:\n  ca.crt: |\n{indented}"
        ));
    }
    yaml
}

/// Whether the sidecar's upstream session is encrypted, as the server sees it.
async fn upstream_ssl(yaml: &str) -> Result<bool, tokio_postgres::Error> {
    let proxy = start_proxy_with(yaml, RunOptions::default(), None).await;
    let c = connect(&proxy.app()).await?;
    let row = c
        .query_one("select ssl from pg_stat_ssl where pid = pg_backend_pid()", &[])
        .await?;
    Ok(row.get(0))
}

/// The refusal a client gets for `yaml`: FATAL 08006 naming the connection; returns the message.
async fn refused(yaml: &str) -> String {
    let e = upstream_ssl(yaml).await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "08006", "{}", db.message());
    assert_eq!(db.severity(), "FATAL");
    assert!(db.message().contains("connection \"orders\""), "{}", db.message());
    db.message().to_owned()
}

#[tokio::test]
async fn verify_full_with_the_ca_encrypts_by_ip_and_by_name() {
    let ca = Some(PKI.ca_pem.as_str());
    for host in ["127.0.0.1", "localhost"] {
        let yaml = tls_yaml(&SERVER, host, "{mode: verify-full, caSecretRef: {name: ca}}", ca);
        assert!(upstream_ssl(&yaml).await.unwrap(), "host {host}");
    }
}

#[tokio::test]
async fn verify_full_refuses_an_unknown_ca_and_a_name_not_in_the_certificate() {
    let tls = "{mode: verify-full, caSecretRef: {name: ca}}";
    let message = refused(&tls_yaml(&SERVER, "127.0.0.1", tls, Some(&PKI.other_ca_pem))).await;
    assert!(
        message.contains("certificate") && message.contains("UnknownIssuer"),
        "{message}"
    );

    // Right CA, but the certificate is for db.internal, not the host dialled.
    let message = refused(&tls_yaml(&MISNAMED, "127.0.0.1", tls, Some(&PKI.ca_pem))).await;
    assert!(message.contains("certificate not valid for name"), "{message}");
    let message = refused(&tls_yaml(&MISNAMED, "localhost", tls, Some(&PKI.ca_pem))).await;
    assert!(
        message.contains("certificate not valid for name \"localhost\""),
        "{message}"
    );
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_name() {
    let tls = "{mode: verify-ca, caSecretRef: {name: ca}}";
    assert!(
        upstream_ssl(&tls_yaml(&SERVER, "127.0.0.1", tls, Some(&PKI.ca_pem)))
            .await
            .unwrap()
    );
    assert!(
        upstream_ssl(&tls_yaml(&MISNAMED, "127.0.0.1", tls, Some(&PKI.ca_pem)))
            .await
            .unwrap()
    );
    let message = refused(&tls_yaml(&MISNAMED, "127.0.0.1", tls, Some(&PKI.other_ca_pem))).await;
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test]
async fn require_encrypts_without_a_ca() {
    for pg in [&*SERVER, &*MISNAMED] {
        assert!(
            upstream_ssl(&tls_yaml(pg, "127.0.0.1", "{mode: require}", None))
                .await
                .unwrap()
        );
    }
    // And `disable` really is plaintext against the same server.
    assert!(
        !upstream_ssl(&tls_yaml(&SERVER, "127.0.0.1", "{mode: disable}", None))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_server_without_tls_is_refused_never_downgraded() {
    let pg = shared();
    let message = refused(&tls_yaml(pg, "127.0.0.1", "{mode: require}", None)).await;
    assert!(
        message.contains("does not accept TLS, but tls.mode is require"),
        "{message}"
    );
    let tls = "{mode: verify-full, caSecretRef: {name: ca}}";
    let message = refused(&tls_yaml(pg, "127.0.0.1", tls, Some(&PKI.ca_pem))).await;
    assert!(message.contains("tls.mode is verify-full"), "{message}");
}

/// A proxy to the TLS server (verify-full) that offers TLS to its clients with `PKI.server`.
async fn proxy_with_client_tls() -> TestProxy {
    let yaml = tls_yaml(
        &SERVER,
        "127.0.0.1",
        "{mode: verify-full, caSecretRef: {name: ca}}",
        Some(&PKI.ca_pem),
    );
    let tls = (
        PKI.server.cert_pem.clone().into_bytes(),
        PKI.server.key_pem.clone().into_bytes(),
    );
    start_proxy_with(
        &yaml,
        RunOptions {
            client_tls: Some(tls),
            ..RunOptions::default()
        },
        None,
    )
    .await
}

const UPSTREAM_SSL: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

#[tokio::test]
async fn psql_with_sslmode_require_gets_tls_from_the_sidecar() {
    let proxy = proxy_with_client_tls().await;
    let home = TempDir::new("tls-psql");
    let conninfo = format!("{} sslmode=require", proxy.app());
    let run = psql(
        &conninfo,
        &["select 1", UPSTREAM_SSL, "\\conninfo"],
        home.path(),
        &[],
        None,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[..2], ["1", "t"], "{}", run.stdout);
    assert!(
        lines[2..]
            .iter()
            .any(|l| l.starts_with("SSL connection (protocol: TLSv1.")),
        "{}",
        run.stdout
    );

    // A client that checks the sidecar's certificate against the CA and the host name.
    let root = home.write("root.crt", PKI.ca_pem.as_bytes());
    let conninfo = format!(
        "host=localhost port={} user=app dbname=shop sslmode=verify-full sslrootcert={}",
        proxy.port(),
        root.display()
    );
    let run = psql(&conninfo, &["select 2", "\\conninfo"], home.path(), &[], None).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("2\n") && run.stdout.contains("SSL connection"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn psql_with_sslmode_disable_still_works_when_tls_is_offered() {
    let proxy = proxy_with_client_tls().await;
    let home = TempDir::new("tls-psql");
    let conninfo = format!("{} sslmode=disable", proxy.app());
    let run = psql(&conninfo, &["select 1", "\\conninfo"], home.path(), &[], None).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.starts_with("1\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("SSL connection"), "{}", run.stdout);
}

#[tokio::test]
async fn without_client_tls_sslmode_require_fails_as_libpq_says() {
    let proxy = start_proxy().await;
    let home = TempDir::new("tls-psql");
    let run = psql(
        &format!("{} sslmode=require", proxy.app()),
        &["select 1"],
        home.path(),
        &[],
        None,
    )
    .await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("server does not support SSL, but SSL was required"),
        "{}",
        run.stderr
    );
    // sslmode=prefer falls back to plaintext, as against PostgreSQL without TLS.
    let run = psql(
        &format!("{} sslmode=prefer", proxy.app()),
        &["select 1"],
        home.path(),
        &[],
        None,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "1");
}

#[tokio::test]
async fn plaintext_pipelined_behind_ssl_request_never_becomes_a_session() {
    // A man in the middle may append plaintext to the client's SSLRequest; it must not be read as if it
    // had come over TLS.
    let proxy = proxy_with_client_tls().await;
    let mut raw = Raw::connect(proxy.addr).await;
    let mut bytes = SSL_REQUEST.to_vec();
    bytes.extend(startup_packet(196_608, &[("user", "app"), ("database", "shop")]));
    raw.send(&bytes).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        raw.stream.read_to_end(&mut got),
    );
    let _ = read.await.expect("the sidecar closes the connection");
    let auth_ok = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
    assert!(
        !got.windows(auth_ok.len()).any(|w| w == auth_ok),
        "a session started: {got:?}"
    );
}
