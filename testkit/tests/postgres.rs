//! The harness against real PostgreSQL servers: the shared one, each auth method, and TLS.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use dbward_testkit::{AuthMethod, HarnessError, PgOptions, TestPostgres, TlsFiles, shared};

/// Runs `sql` with psql over TCP as `user`, the password passed the usual way (PGPASSWORD).
fn psql_tcp(pg: &TestPostgres, user: &str, password: &str, sql: &str) -> Result<String> {
    let output = Command::new(pg.psql_path())
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.host(), "-p"])
        .arg(pg.port().to_string())
        .args(["-U", user, "-d", pg.database(), "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .output()
        .context("running psql")?;
    ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

#[test]
fn shared_server_serves_the_demo_schema_to_app_over_tcp() -> Result<()> {
    let pg = shared();
    assert_eq!(
        psql_tcp(
            pg,
            pg.app_user(),
            pg.app_password(),
            "select count(*) from customers"
        )?,
        "300"
    );
    assert_eq!(
        psql_tcp(pg, pg.app_user(), pg.app_password(), "select customer_email(42)")?,
        "customer42@example.com"
    );
    assert_eq!(
        psql_tcp(
            pg,
            pg.app_user(),
            pg.app_password(),
            "select count(*) from billing.invoices"
        )?,
        "600"
    );
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port())).exists());
    Ok(())
}

#[test]
fn shared_server_is_one_instance_with_scram() -> Result<()> {
    assert!(std::ptr::eq(shared(), shared()));
    let pg = shared();
    assert_eq!(pg.psql("show password_encryption")?, "scram-sha-256");
    assert_eq!(pg.psql("show max_connections")?, "200");
    assert_eq!(pg.psql("show fsync")?, "off");
    assert_eq!(
        pg.psql("select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'app'")?,
        "t"
    );
    assert_eq!(
        psql_tcp(pg, pg.superuser(), pg.superuser_password(), "select current_user")?,
        "postgres"
    );
    let wrong = psql_tcp(pg, pg.app_user(), "wrong", "select 1").expect_err("a wrong password must fail");
    assert!(
        wrong.to_string().contains("password authentication failed"),
        "{wrong}"
    );
    Ok(())
}

#[test]
fn demo_rows_look_like_personal_data() -> Result<()> {
    let pg = shared();
    let row = pg.psql("select full_name, email, card_number, ssn from customers where id = 1")?;
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(
        fields[1..],
        ["customer1@example.com", "4111000000000016", "123-45-6789"]
    );
    assert!(!fields[0].is_empty());
    assert_eq!(
        pg.psql("select count(*) from customers where phone is null")?,
        "30"
    );
    let cards = pg.psql("select card_number from customers")?;
    for card in cards.lines() {
        assert!(luhn_valid(card), "card number {card} fails the Luhn check");
    }
    assert_eq!(pg.psql("select count(*) from customer_contacts")?, "300");
    assert_eq!(
        pg.psql("select count(*) from orders o where total <> (select sum(quantity * unit_price) from order_items where order_id = o.id)")?,
        "0"
    );
    Ok(())
}

fn luhn_valid(number: &str) -> bool {
    let digits: Option<Vec<u32>> = number.chars().rev().map(|c| c.to_digit(10)).collect();
    let Some(digits) = digits else { return false };
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    digits.len() >= 12 && sum.is_multiple_of(10)
}

#[test]
fn md5_server_stores_and_checks_md5_passwords() -> Result<()> {
    let pg = TestPostgres::start(PgOptions {
        auth: AuthMethod::Md5,
        load_schema: false,
        ..PgOptions::default()
    })?;
    assert_eq!(pg.psql("show password_encryption")?, "md5");
    assert_eq!(
        pg.psql("select rolpassword like 'md5%' from pg_authid where rolname = 'app'")?,
        "t"
    );
    assert_eq!(
        pg.psql("select count(*) from pg_hba_file_rules where auth_method = 'md5'")?,
        "2"
    );
    assert_eq!(
        psql_tcp(&pg, pg.app_user(), pg.app_password(), "select current_user")?,
        "app"
    );
    let wrong = psql_tcp(&pg, pg.app_user(), "wrong", "select 1").expect_err("a wrong password must fail");
    assert!(
        wrong.to_string().contains("password authentication failed"),
        "{wrong}"
    );
    Ok(())
}

#[test]
fn password_server_checks_cleartext_passwords() -> Result<()> {
    let pg = TestPostgres::start(PgOptions {
        auth: AuthMethod::Password,
        load_schema: false,
        ..PgOptions::default()
    })?;
    assert_eq!(pg.psql("show password_encryption")?, "scram-sha-256");
    assert_eq!(
        pg.psql("select count(*) from pg_hba_file_rules where auth_method = 'password'")?,
        "2"
    );
    assert!(
        pg.psql("select count(*) from customers").is_err(),
        "no schema was asked for"
    );
    let superuser = psql_tcp(
        &pg,
        pg.superuser(),
        pg.superuser_password(),
        "select current_user",
    )?;
    assert_eq!(superuser, "postgres");
    let wrong = psql_tcp(&pg, pg.superuser(), "wrong", "select 1").expect_err("a wrong password must fail");
    assert!(
        wrong.to_string().contains("password authentication failed"),
        "{wrong}"
    );
    Ok(())
}

#[test]
fn trust_server_needs_no_password() -> Result<()> {
    let pg = TestPostgres::start(PgOptions {
        auth: AuthMethod::Trust,
        load_schema: false,
        ..PgOptions::default()
    })?;
    assert_eq!(
        psql_tcp(&pg, pg.app_user(), "anything", "select current_user")?,
        "app"
    );
    Ok(())
}

#[test]
fn tls_server_encrypts_connections() -> Result<()> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let tls = TlsFiles {
        cert_pem: cert.cert.pem(),
        key_pem: cert.signing_key.serialize_pem(),
    };
    let pg = TestPostgres::start(PgOptions {
        tls: Some(tls),
        ..PgOptions::default()
    })?;
    let conninfo = pg.app_conn_string() + " sslmode=require";
    let ssl = pg.psql_conninfo(
        &conninfo,
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    )?;
    assert_eq!(ssl, "t");
    assert_eq!(
        pg.psql_conninfo(&conninfo, "select count(*) from orders")?,
        "1000"
    );
    Ok(())
}

#[test]
fn dropping_a_server_stops_it_and_deletes_its_directory() -> Result<()> {
    let pg = TestPostgres::start(PgOptions {
        auth: AuthMethod::Trust,
        load_schema: false,
        ..PgOptions::default()
    })?;
    let dir = pg.socket_dir().to_owned();
    let port = pg.port();
    assert!(pg.data_dir().join("postmaster.pid").exists());
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections"
    );
    Ok(())
}

#[test]
fn psql_errors_carry_the_server_message() {
    let err = shared()
        .psql("select * from no_such_table")
        .expect_err("the table does not exist");
    assert!(matches!(err, HarnessError::CommandFailed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("relation \"no_such_table\" does not exist"),
        "{err}"
    );
}

#[test]
fn a_server_that_cannot_start_reports_its_log() {
    let tls = TlsFiles {
        cert_pem: "not a certificate".to_owned(),
        key_pem: "not a key".to_owned(),
    };
    let err = TestPostgres::start(PgOptions {
        tls: Some(tls),
        load_schema: false,
        ..PgOptions::default()
    })
    .expect_err("a server with a broken certificate cannot start");
    let message = err.to_string();
    assert!(matches!(err, HarnessError::StartFailed { .. }), "{err:?}");
    assert!(
        message.contains("server.crt"),
        "the log tail names the bad file: {message}"
    );
}
