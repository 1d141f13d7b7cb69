//! Client startup through the sidecar against a real PostgreSQL: which database names a listener
//! accepts, the SSL/GSS negotiation libpq does, protocol versions, refused startups, bad frames after
//! startup, and the upstream login with the credential only the sidecar holds.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use dbward_sidecar::config::runtime::RunOptions;
use dbward_testkit::{AuthMethod, PgOptions, TestPostgres, shared};
use tokio_postgres::SimpleQueryMessage;

const APP: [(&str, &str); 2] = [("user", "app"), ("database", "shop")];

/// `select 1` on a raw session answers one row.
async fn select_one(raw: &mut Raw) {
    raw.send(&query("select 1")).await;
    let msgs = raw.until_ready(1).await;
    assert_eq!(tags(&msgs), "T D C Z");
}

/// Sends `bytes` on a new connection before startup and returns what comes back until the close.
async fn opening(proxy: &TestProxy, bytes: &[u8]) -> Vec<Msg> {
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(bytes).await;
    raw.read_to_end().await
}

/// A FATAL 08P01 whose message contains `fragment`, then the end of the connection.
fn assert_protocol_violation(msgs: &[Msg], fragment: &str) {
    assert_eq!(tags(msgs), "E", "one ErrorResponse, then the connection closes");
    assert_eq!(msgs[0].field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(msgs[0].code().as_deref(), Some("08P01"));
    let message = msgs[0].field(b'M').unwrap();
    assert!(message.contains(fragment), "{message}");
}

#[tokio::test]
async fn database_must_be_the_connection_or_its_upstream_database() {
    let proxy = start_proxy().await;
    let e = connect(&proxy.conn_string("app", "postgres")).await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "3D000");
    assert_eq!(db.message(), "database \"postgres\" is not served on this port");
    let hint = db.hint().unwrap();
    assert!(
        hint.contains("connection \"orders\"") && hint.contains("dbname=orders"),
        "{hint}"
    );

    for dbname in ["orders", "shop"] {
        let c = connect(&proxy.conn_string("app", dbname)).await.unwrap();
        let row = c.query_one("select current_database()", &[]).await.unwrap();
        assert_eq!(row.get::<_, &str>(0), "shop", "dbname={dbname}");
    }
}

#[tokio::test]
async fn without_a_database_parameter_the_user_name_is_the_database() {
    let proxy = start_proxy().await;
    for user in ["orders", "shop"] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.login(&[("user", user)], None)
            .await
            .unwrap_or_else(|m| panic!("user {user}: {m:?}"));
        select_one(&mut raw).await;
    }
    let mut raw = Raw::connect(proxy.addr).await;
    let msgs = raw.login(&[("user", "app")], None).await.unwrap_err();
    let e = first_error(&msgs);
    assert_eq!(e.code().as_deref(), Some("3D000"));
    assert_eq!(
        e.field(b'M').as_deref(),
        Some("database \"app\" is not served on this port")
    );
}

#[tokio::test]
async fn ssl_request_is_answered_n_and_startup_goes_on_in_plaintext() {
    let proxy = start_proxy().await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&SSL_REQUEST).await;
    assert_eq!(raw.answer_byte().await, b'N');
    raw.login(&APP, None).await.unwrap();
    select_one(&mut raw).await;
}

#[tokio::test]
async fn gssenc_then_ssl_then_startup_as_libpq_does() {
    let proxy = start_proxy().await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&GSSENC_REQUEST).await;
    assert_eq!(raw.answer_byte().await, b'N');
    raw.send(&SSL_REQUEST).await;
    assert_eq!(raw.answer_byte().await, b'N');
    raw.login(&APP, None).await.unwrap();
    select_one(&mut raw).await;
}

#[tokio::test]
async fn a_second_encryption_request_is_refused() {
    let proxy = start_proxy().await;
    for first in [SSL_REQUEST, GSSENC_REQUEST] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.send(&first).await;
        assert_eq!(raw.answer_byte().await, b'N');
        raw.send(&first).await;
        assert_protocol_violation(&raw.read_to_end().await, "unexpected encryption request");
    }
}

#[tokio::test]

async fn data_sent_before_the_ssl_answer_is_refused() {
    // Bytes after SSLRequest that the client sent before reading the answer may have been injected by
    // a man in the middle (CVE-2021-23214); PostgreSQL refuses them, and so must the sidecar.
    let proxy = start_proxy().await;
    let mut bytes = SSL_REQUEST.to_vec();
    bytes.extend(startup_packet(196_608, &APP));
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&bytes).await;
    // PostgreSQL answers 'N' first, then the error; the sidecar may skip the 'N'.
    let first = raw.answer_byte().await;
    if first != b'N' {
        raw.buf.extend_from_slice(&[first]);
    }
    let msgs = raw.until_closed_or_ready().await;
    assert_protocol_violation(&msgs, "unencrypted data after SSL request");
}

#[tokio::test]
async fn protocol_3_2_and_protocol_options_are_negotiated_down_to_3_0() {
    let proxy = start_proxy().await;
    for (version, extra) in [
        (196_610, None),
        (196_608, Some("_pq_.compression")),
        (196_610, Some("_pq_.x")),
    ] {
        let mut params = APP.to_vec();
        if let Some(option) = extra {
            params.push((option, "on"));
        }
        let mut raw = Raw::connect(proxy.addr).await;
        raw.send(&startup_packet(version, &params)).await;
        let msgs = raw.finish_login(None).await.unwrap();
        // NegotiateProtocolVersion(newest minor we support = 0, the options we do not know).
        let mut expected = 0i32.to_be_bytes().to_vec();
        expected.extend(i32::from(extra.is_some()).to_be_bytes());
        if let Some(option) = extra {
            expected.extend(cstr(option));
        }
        assert_eq!(
            msgs[0],
            Msg {
                tag: b'v',
                body: expected
            },
            "version {version:#x}, option {extra:?}"
        );
        assert_eq!(msgs.iter().filter(|m| m.tag == b'v').count(), 1);
        select_one(&mut raw).await;
    }
}

#[tokio::test]
async fn replication_connections_are_refused() {
    let proxy = start_proxy().await;
    for mode in ["database", "true"] {
        let mut params = APP.to_vec();
        params.push(("replication", mode));
        let msgs = Raw::connect(proxy.addr)
            .await
            .login(&params, None)
            .await
            .unwrap_err();
        let e = first_error(&msgs);
        assert_eq!(e.code().as_deref(), Some("0A000"), "replication={mode}");
        assert!(
            e.field(b'M')
                .unwrap()
                .contains("replication connections are not supported")
        );
    }
    // replication=false is an ordinary session.
    let mut params = APP.to_vec();
    params.push(("replication", "false"));
    let mut raw = Raw::connect(proxy.addr).await;
    raw.login(&params, None).await.unwrap();
    select_one(&mut raw).await;
}

#[tokio::test]
async fn bad_startup_packets_close_that_connection_only() {
    let proxy = start_proxy().await;
    let mut survivor = Raw::connect(proxy.addr).await;
    survivor.login(&APP, None).await.unwrap();

    // Above PostgreSQL's 10000-byte limit: refused from the length word alone.
    let msgs = opening(&proxy, &10_001u32.to_be_bytes()).await;
    assert_protocol_violation(&msgs, "length 10001");
    // The whole packet sent, as a client would: the sidecar must not read it to refuse it.
    let big = startup_packet(196_608, &[("user", "app"), ("options", &"x".repeat(10_000))]);
    let length = format!("startup packet declares length {}", big.len());
    assert_protocol_violation(&opening(&proxy, &big).await, &length);
    for length in [0u32, 3, 7, u32::MAX] {
        assert_protocol_violation(
            &opening(&proxy, &length.to_be_bytes()).await,
            &format!("length {length}"),
        );
    }
    // A parameter list without its terminator, and protocol 2.0.
    let mut unterminated = startup_packet(196_608, &APP);
    let n = unterminated.len();
    unterminated.truncate(n - 2);
    let len = u32::try_from(unterminated.len()).unwrap();
    unterminated[..4].copy_from_slice(&len.to_be_bytes());
    assert_protocol_violation(&opening(&proxy, &unterminated).await, "StartupMessage");
    assert_protocol_violation(
        &opening(&proxy, &startup_packet(131_072, &APP)).await,
        "protocol version",
    );

    // The proxy still serves new sessions, and the one that was open before.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.login(&APP, None).await.unwrap();
    select_one(&mut raw).await;
    select_one(&mut survivor).await;
}

#[tokio::test]

async fn startup_length_refusals_state_the_bounds_checked() {
    let proxy = start_proxy().await;
    assert_protocol_violation(
        &opening(&proxy, &7u32.to_be_bytes()).await,
        "length 7, outside 8..=10000",
    );
}

#[tokio::test]
async fn bad_frames_after_startup_end_only_that_session() {
    let proxy = start_proxy().await;
    let bystander = connect(&proxy.app()).await.unwrap();
    let mut truncated_bind = cstr("");
    truncated_bind.extend(cstr(""));
    truncated_bind.extend(0i16.to_be_bytes());
    truncated_bind.extend(2i16.to_be_bytes()); // two parameters announced, none sent
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("length below 4", vec![b'Q', 0, 0, 0, 3], "impossible length 3"),
        (
            "garbage tag, absurd length",
            vec![0xfe, 0x7f, 0xff, 0xff, 0xff],
            "impossible length 2147483647",
        ),
        (
            "malformed Bind",
            frame(b'B', &truncated_bind),
            "malformed Bind message",
        ),
        (
            "Query without terminator",
            frame(b'Q', b"select 1"),
            "malformed Query message",
        ),
    ];
    for (what, bytes, fragment) in cases {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.login(&APP, None).await.unwrap();
        raw.send(&bytes).await;
        let msgs = raw.read_to_end().await;
        assert_eq!(tags(&msgs), "E", "{what}");
        assert_eq!(msgs[0].field(b'S').as_deref(), Some("FATAL"), "{what}");
        assert_eq!(msgs[0].code().as_deref(), Some("08P01"), "{what}");
        let message = msgs[0].field(b'M').unwrap();
        assert!(message.contains(fragment), "{what}: {message}");
        let n: i64 = bystander
            .query_one("select count(*) from customers", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 300, "{what}: the other session goes on");
    }
}

#[tokio::test]
async fn a_query_over_max_message_is_refused_with_54000() {
    let opts = RunOptions {
        max_message: 1024,
        ..RunOptions::default()
    };
    let yaml = connection_yaml(shared(), "  tls: {mode: disable}");
    let proxy = start_proxy_with(&yaml, opts, None).await;
    let bystander = connect(&proxy.app()).await.unwrap();
    let c = connect(&proxy.app()).await.unwrap();
    let small = format!("select length('{}')", "y".repeat(900));
    let rows = c.simple_query(&small).await.unwrap();
    assert!(matches!(&rows[1], SimpleQueryMessage::Row(r) if r.get(0) == Some("900")));

    let big = format!("select length('{}')", "y".repeat(2000));
    let e = c.simple_query(&big).await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "54000");
    assert_eq!(db.severity(), "FATAL");
    assert!(db.message().contains("1024-byte limit"), "{}", db.message());
    assert!(c.simple_query("select 1").await.is_err(), "that session is over");
    assert!(c.is_closed());
    assert_eq!(
        bystander
            .query_one("select 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test]
async fn upstream_down_names_the_connection_and_address() {
    let port = dead_port();
    let pg = shared();
    let yaml = connection_yaml_to(
        "127.0.0.1",
        port,
        pg.app_user(),
        pg.app_password(),
        "  tls: {mode: disable}",
    );
    let proxy = start_proxy_with(&yaml, RunOptions::default(), None).await;
    let e = connect(&proxy.app()).await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "08006");
    assert_eq!(db.severity(), "FATAL");
    let message = db.message();
    assert!(message.contains("connection \"orders\""), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(
        db.hint().is_some_and(|h| h.contains("unreachable")),
        "{:?}",
        db.hint()
    );
}

#[tokio::test]
async fn upstream_wrong_password_is_28p01_and_no_password_reaches_the_client() {
    let pg = shared();
    let wrong = "not-the-app-password-7f3a";
    let yaml = connection_yaml_to(
        "127.0.0.1",
        pg.port(),
        pg.app_user(),
        wrong,
        "  tls: {mode: disable}",
    );
    let proxy = start_proxy_with(&yaml, RunOptions::default(), None).await;
    let e = connect(&proxy.app()).await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "28P01");
    assert!(db.message().contains("connection \"orders\""), "{}", db.message());
    assert!(
        db.message()
            .contains("password authentication failed for user \"app\""),
        "{}",
        db.message()
    );

    let msgs = Raw::connect(proxy.addr)
        .await
        .login(&APP, None)
        .await
        .unwrap_err();
    assert_eq!(first_error(&msgs).code().as_deref(), Some("28P01"));
    assert!(
        !msgs.iter().any(|m| m.tag == b'R'),
        "the client is never asked for a password"
    );
    assert!(!any_message_contains(&msgs, wrong));
    assert!(!any_message_contains(&msgs, pg.app_password()));
}

#[tokio::test]
async fn upstreams_with_md5_and_cleartext_password_auth() {
    let start = |auth| {
        tokio::task::spawn_blocking(move || {
            TestPostgres::start(PgOptions {
                auth,
                tls: None,
                load_schema: false,
            })
        })
    };
    let (md5, cleartext) = (start(AuthMethod::Md5), start(AuthMethod::Password));
    for (method, pg) in [
        ("md5", md5.await.unwrap().unwrap()),
        ("password", cleartext.await.unwrap().unwrap()),
    ] {
        let proxy = start_proxy_with(
            &connection_yaml(&pg, "  tls: {mode: disable}"),
            RunOptions::default(),
            None,
        )
        .await;
        let c = connect(&proxy.app())
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let row = c
            .query_one("select current_user, current_database()", &[])
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, &str>(0), row.get::<_, &str>(1)),
            ("app", "shop"),
            "{method}"
        );
        let hba = pg
            .psql("select auth_method from pg_hba_file_rules where type = 'host' limit 1")
            .unwrap();
        assert_eq!(hba, method);

        // A wrong password is the server's 28P01, passed on.
        let wrong = connection_yaml_to(
            "127.0.0.1",
            pg.port(),
            "app",
            "wrong-secret-9c1e",
            "  tls: {mode: disable}",
        );
        let proxy = start_proxy_with(&wrong, RunOptions::default(), None).await;
        let msgs = Raw::connect(proxy.addr)
            .await
            .login(&APP, None)
            .await
            .unwrap_err();
        assert_eq!(first_error(&msgs).code().as_deref(), Some("28P01"), "{method}");
        assert!(!any_message_contains(&msgs, "wrong-secret-9c1e"), "{method}");
    }
}

#[tokio::test]
async fn the_client_needs_no_password_and_runs_as_the_credentials_user() {
    let proxy = start_proxy().await;
    // Whatever user the client names, even the superuser's, the session is the credential's.
    for user in ["postgres", "mallory", "jwt-not"] {
        let mut raw = Raw::connect(proxy.addr).await;
        let msgs = raw
            .login(&[("user", user), ("database", "orders")], None)
            .await
            .unwrap();
        assert!(
            !msgs.iter().any(|m| m.tag == b'R' && m.body[..4] != [0, 0, 0, 0]),
            "{user}: asked for a password"
        );
        assert!(!any_message_contains(&msgs, shared().app_password()));
        raw.send(&query("select current_user || ',' || session_user"))
            .await;
        let rows = raw.until_ready(1).await;
        let row = rows.iter().find(|m| m.tag == b'D').unwrap();
        assert!(
            row.body.ends_with(b"app,app"),
            "{user}: {:?}",
            String::from_utf8_lossy(&row.body)
        );
    }
    let home = TempDir::new("startup-psql");
    let run = psql(
        &proxy.conn_string("postgres", "orders"),
        &["select current_user"],
        home.path(),
        &[],
        None,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "app");
}

#[tokio::test]

async fn pipelined_messages_before_a_refused_one_are_answered_first() {
    let opts = RunOptions {
        max_message: 1024,
        ..RunOptions::default()
    };
    let proxy = start_proxy_with(&connection_yaml(shared(), "  tls: {mode: disable}"), opts, None).await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.login(&APP, None).await.unwrap();
    let big = query(&format!("select length('{}')", "y".repeat(2000)));
    raw.send(&[query("select 1"), big].concat()).await;
    let msgs = raw.until_closed_or_ready().await;
    assert_eq!(tags(&msgs), "T D C Z", "select 1 is answered first");
    let msgs = raw.read_to_end().await;
    assert_eq!(first_error(&msgs).code().as_deref(), Some("54000"));

    let c = connect(&proxy.app()).await.unwrap();
    let n: i32 = c.query_one("select 900", &[]).await.unwrap().get(0);
    assert_eq!(n, 900);
    let e = c
        .simple_query(&format!("select length('{}')", "y".repeat(2000)))
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("54000"), "{e:?}");
}

#[tokio::test]
async fn sessions_over_the_limit_are_refused_with_53300() {
    let pg = shared();
    let opts = RunOptions {
        max_sessions: 2,
        ..RunOptions::default()
    };
    let proxy = start_proxy_with(&connection_yaml(pg, "  tls: {mode: disable}"), opts, None).await;
    let first = connect(&proxy.app()).await.unwrap();
    let second = connect(&proxy.app()).await.unwrap();
    let e = connect(&proxy.app()).await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "53300");
    assert!(db.message().contains("too many clients"), "{}", db.message());
    // The sessions that got in work, and a slot frees up when one ends.
    assert_eq!(
        second.query_one("select 2", &[]).await.unwrap().get::<_, i32>(0),
        2
    );
    drop(first);
    let mut third = None;
    for _ in 0..100 {
        if let Ok(c) = connect(&proxy.app()).await {
            third = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let third = third.expect("a slot frees up when a session ends");
    assert_eq!(
        third.query_one("select 3", &[]).await.unwrap().get::<_, i32>(0),
        3
    );
}
