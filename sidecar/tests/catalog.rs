//! The catalog cache against a real PostgreSQL: what a snapshot says about relations, columns, views
//! and search paths is what the server says, refreshes see DDL, and failures read well.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use dbward_sidecar::{
    catalog::{Catalog, CatalogError, CatalogSnapshot, DEFAULT_LOAD_TIMEOUT, RelationKind},
    proxy::upstream::{Password, UpstreamTarget},
    tls::TlsMode,
};
use dbward_testkit::{PgOptions, TestPostgres};
use tokio_postgres::{Client, NoTls};

/// One server for this test binary, without the demo schema; every test works in a database of its
/// own, so tests run in parallel without seeing each other's DDL.
fn server() -> &'static TestPostgres {
    static PG: OnceLock<TestPostgres> = OnceLock::new();
    PG.get_or_init(|| {
        TestPostgres::start(PgOptions {
            load_schema: false,
            ..PgOptions::default()
        })
        .expect("start a test PostgreSQL")
    })
}

const SETUP: &str = "
    CREATE SCHEMA a;
    CREATE SCHEMA b;
    CREATE SCHEMA empty_one;
    CREATE TABLE a.t (id int, gone text, secret text);
    ALTER TABLE a.t DROP COLUMN gone;
    CREATE TABLE b.t (x int);
    CREATE VIEW public.v AS SELECT id, secret AS s FROM a.t;
    CREATE MATERIALIZED VIEW b.mv AS SELECT x FROM b.t;
    CREATE SEQUENCE a.seq;
    CREATE TABLE public.pg_class (x int);
";

fn target(db: &str, password: &str) -> UpstreamTarget {
    let pg = server();
    UpstreamTarget {
        connection: "orders".into(),
        host: "127.0.0.1".into(),
        port: pg.port(),
        database: db.into(),
        user: pg.app_user().into(),
        password: Password::new(password),
        tls_mode: TlsMode::Disable,
        tls: None,
        server_name: None,
        connect_timeout: Duration::from_secs(10),
        scram_cache: Default::default(),
    }
}

/// A fresh database `db` owned by `app` with [`SETUP`] in it, a client on it, and a catalog for it.
async fn database(db: &str) -> (Client, Arc<Catalog>) {
    let pg = server();
    pg.psql_db("postgres", &format!("CREATE DATABASE {db} OWNER app"))
        .unwrap();
    let client = connect(db).await;
    client.batch_execute(SETUP).await.unwrap();
    let catalog = Catalog::new(Arc::new(target(db, pg.app_password())), DEFAULT_LOAD_TIMEOUT);
    (client, catalog)
}

async fn connect(db: &str) -> Client {
    let pg = server();
    let (client, conn) =
        tokio_postgres::connect(&pg.conn_string(pg.app_user(), pg.app_password(), db), NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    client
}

async fn oid(client: &Client, regclass: &str) -> u32 {
    client
        .query_one("SELECT $1::text::regclass::oid", &[&regclass])
        .await
        .unwrap()
        .get(0)
}

/// `schema.table.column` of every result column of `sql`, through the snapshot.
async fn result_columns(client: &Client, snap: &CatalogSnapshot, sql: &str) -> Vec<String> {
    let stmt = client.prepare(sql).await.unwrap();
    stmt.columns()
        .iter()
        .map(|c| {
            let (oid, attnum) = (c.table_oid().unwrap(), c.column_id().unwrap());
            let (rel, col) = snap.column(oid, attnum).unwrap();
            format!("{}.{}.{}", rel.schema, rel.name, col.name)
        })
        .collect()
}

/// How many catalog sessions are open on `db`.
async fn catalog_sessions(client: &Client, db: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'dbward-catalog'",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn maps_result_columns_and_views_to_their_tables() {
    let (client, catalog) = database("cat_columns").await;
    // A temporary table makes this session's pg_temp_N schema, which the snapshot must include.
    client
        .batch_execute("CREATE TEMP TABLE scratch (k int)")
        .await
        .unwrap();
    assert!(catalog.current().is_none());
    let snap = catalog.refresh(0).await.unwrap();
    assert_eq!(snap.version(), 1);
    assert!(Arc::ptr_eq(&snap, &catalog.current().unwrap()));

    assert_eq!(
        result_columns(&client, &snap, "SELECT secret, id FROM a.t").await,
        ["a.t.secret", "a.t.id"]
    );
    assert_eq!(
        result_columns(&client, &snap, "SELECT x FROM b.t").await,
        ["b.t.x"]
    );
    assert_eq!(
        result_columns(&client, &snap, "SELECT s, id FROM v").await,
        ["public.v.s", "public.v.id"]
    );

    // Columns as pg_attribute lists them: the dropped one is gone, attnums keep their gap.
    let at = oid(&client, "a.t").await;
    let rel = snap.relation(at).unwrap();
    assert_eq!(
        (rel.schema.as_str(), rel.name.as_str(), rel.kind),
        ("a", "t", RelationKind::Table)
    );
    let server_columns: Vec<(i16, String, u32)> = client
        .query(
            "SELECT attnum, attname::text, atttypid::oid FROM pg_attribute \
             WHERE attrelid = 'a.t'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let ours: Vec<_> = rel
        .columns
        .iter()
        .map(|c| (c.attnum, c.name.clone(), c.type_oid))
        .collect();
    assert_eq!(ours, server_columns);
    assert_eq!(ours, [(1, "id".into(), 23), (3, "secret".into(), 25)]);
    assert!(snap.column(at, 2).is_none(), "the dropped column");

    // The view and the materialized view know which base columns they read.
    let v = snap.lookup("public", "v").unwrap();
    assert_eq!(v.kind, RelationKind::View);
    assert_eq!(v.depends_on, [(at, 1), (at, 3)]);
    assert!(v.definition.as_deref().unwrap().contains("secret"));
    let mv = snap.lookup("b", "mv").unwrap();
    assert_eq!(mv.kind, RelationKind::MaterializedView);
    assert_eq!(mv.depends_on, [(oid(&client, "b.t").await, 1)]);
    assert!(snap.relation(at).unwrap().depends_on.is_empty());

    assert_eq!(snap.lookup("a", "seq").unwrap().kind, RelationKind::Sequence);
    assert_eq!(snap.lookup("pg_catalog", "pg_class").unwrap().oid, 1259);
    assert!(snap.has_schema("empty_one"));
    assert!(!snap.has_schema("nope"));
    let mut ts = vec![at, oid(&client, "b.t").await];
    ts.sort_unstable();
    assert_eq!(snap.schemas_with("t"), ts);

    let scratch = snap.relation(oid(&client, "pg_temp.scratch").await).unwrap();
    assert!(scratch.schema.starts_with("pg_temp_"), "{}", scratch.schema);
    assert!(snap.has_schema(&scratch.schema));
    assert!(snap.has_schema(&scratch.schema.replace("pg_temp_", "pg_toast_temp_")));
}

#[tokio::test]
async fn resolves_names_as_the_server_does() {
    let (client, catalog) = database("cat_resolve").await;
    let snap = catalog.refresh(0).await.unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("t", &["a", "b"]),
        ("t", &["b", "a"]),
        ("t", &["nope", "a"]),
        ("t", &["$user", "b"]),
        ("t", &["\"$user\"", "public", "a"]),
        ("v", &["a", "public"]),
        ("mv", &["a", "b"]),
        ("pg_class", &["public"]),
        ("pg_class", &["public", "pg_catalog"]),
        ("pg_class", &["pg_catalog", "public"]),
        ("seq", &["empty_one", "a"]),
    ];
    for &(name, path) in cases {
        let entries: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let ours = snap.resolve(name, &entries, "app").map(|r| r.oid);
        let set = path
            .iter()
            .map(|s| {
                if s.starts_with('"') {
                    s.to_string()
                } else {
                    format!("\"{s}\"")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        client
            .batch_execute(&format!("SET search_path = {set}"))
            .await
            .unwrap();
        let theirs: Option<u32> = client
            .query_one("SELECT to_regclass($1)::oid", &[&name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(ours, theirs, "{name} via {set}");
        assert!(ours.is_some(), "{name} via {set}");
    }
    let entries = vec!["public".to_string()];
    assert!(snap.resolve("t", &entries, "app").is_none());
    // A user's own schema stands in for $user.
    client
        .batch_execute("CREATE SCHEMA app; CREATE TABLE app.t (y int)")
        .await
        .unwrap();
    let snap = catalog.refresh(snap.version()).await.unwrap();
    let entries = vec!["$user".to_string(), "a".to_string()];
    assert_eq!(
        snap.resolve("t", &entries, "app").map(|r| r.schema.as_str()),
        Some("app")
    );
    assert_eq!(
        snap.resolve("t", &entries, "other").map(|r| r.schema.as_str()),
        Some("a")
    );
}

#[tokio::test]
async fn refresh_after_ddl_sees_the_new_table_over_the_same_session() {
    let (client, catalog) = database("cat_refresh").await;
    let first = catalog.refresh(0).await.unwrap();
    assert!(first.lookup("a", "fresh").is_none());
    // The current snapshot is new enough: no load.
    assert!(Arc::ptr_eq(&catalog.refresh(0).await.unwrap(), &first));

    client
        .batch_execute("CREATE TABLE a.fresh (n bigint, label text)")
        .await
        .unwrap();
    let second = catalog.refresh(first.version()).await.unwrap();
    assert_eq!(second.version(), first.version() + 1);
    let fresh = second.lookup("a", "fresh").unwrap();
    assert_eq!(fresh.oid, oid(&client, "a.fresh").await);
    assert_eq!(
        fresh.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["n", "label"]
    );
    assert!(Arc::ptr_eq(&catalog.current().unwrap(), &second));
    // The old snapshot is unchanged for whoever still holds it.
    assert!(first.lookup("a", "fresh").is_none());
    assert_eq!(catalog_sessions(&client, "cat_refresh").await, 1);
}

#[tokio::test]
async fn concurrent_refreshes_share_one_load() {
    let (client, catalog) = database("cat_concurrent").await;
    let v = catalog.refresh(0).await.unwrap().version();
    let (x, y, z) = tokio::join!(catalog.refresh(v), catalog.refresh(v), catalog.refresh(v));
    let (x, y, z) = (x.unwrap(), y.unwrap(), z.unwrap());
    assert_eq!(x.version(), v + 1);
    assert!(Arc::ptr_eq(&x, &y) && Arc::ptr_eq(&y, &z));

    // Sessions of the same connection on other tasks too.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let c = catalog.clone();
            tokio::spawn(async move { c.refresh(v + 1).await.unwrap().version() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), v + 2);
    }
    assert_eq!(catalog.current().unwrap().version(), v + 2);
    assert_eq!(catalog_sessions(&client, "cat_concurrent").await, 1);
}

#[tokio::test]
async fn a_server_error_is_reported_and_the_next_load_succeeds() {
    let (client, catalog) = database("cat_denied").await;
    let pg = server();
    pg.psql_db("cat_denied", "REVOKE SELECT ON pg_catalog.pg_depend FROM PUBLIC")
        .unwrap();
    let err = catalog.refresh(0).await.unwrap_err();
    assert!(
        matches!(&err, CatalogError::Server { code, message } if code == "42501" && message.contains("pg_depend")),
        "{err:?}"
    );
    assert_eq!(err.sqlstate(), "42501");
    assert!(catalog.current().is_none());

    pg.psql_db("cat_denied", "GRANT SELECT ON pg_catalog.pg_depend TO PUBLIC")
        .unwrap();
    assert_eq!(catalog.refresh(0).await.unwrap().version(), 1);
    // The session survived the failed transaction.
    assert_eq!(catalog_sessions(&client, "cat_denied").await, 1);
}

#[tokio::test]
async fn a_wrong_password_gives_an_error_without_the_password() {
    let secret = "not-the-password-Zq81";
    let catalog = Catalog::new(Arc::new(target("postgres", secret)), DEFAULT_LOAD_TIMEOUT);
    let (x, y) = tokio::join!(catalog.refresh(0), catalog.refresh(0));
    let err = x.unwrap_err();
    assert_eq!(y.unwrap_err(), err, "the waiting caller shares the failed load");
    assert!(matches!(err, CatalogError::Connect(_)), "{err:?}");
    let text = err.client_message("orders");
    assert!(
        text.starts_with("dbward could not read the catalog of connection \"orders\": cannot open a session"),
        "{text}"
    );
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains(secret) && !format!("{err:?}").contains(secret));
    assert!(catalog.current().is_none());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut t = target("postgres", "x");
    t.port = port;
    let catalog = Catalog::new(Arc::new(t), Duration::from_millis(300));
    let err = catalog.refresh(0).await.unwrap_err();
    assert_eq!(err, CatalogError::Timeout(Duration::from_millis(300)));
    assert!(err.to_string().contains("took longer than 0.3 s"), "{err}");
    hold.abort();
}

#[tokio::test]
async fn a_session_the_server_ended_is_replaced() {
    let (client, catalog) = database("cat_reconnect").await;
    let first = catalog.refresh(0).await.unwrap();
    let ended: bool = client
        .query_one(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE datname = 'cat_reconnect' AND application_name = 'dbward-catalog'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended);
    let second = catalog.refresh(first.version()).await.unwrap();
    assert_eq!(second.version(), first.version() + 1);
    assert_eq!(catalog_sessions(&client, "cat_reconnect").await, 1);
}
