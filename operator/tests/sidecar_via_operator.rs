//! The whole path without a cluster: the real sidecar (`run --operator URL --connections orders`) takes
//! its configuration from the operator's control API (over HTTPS, with a real signed pod token checked
//! by TokenReview against the fake API server), serves a real PostgreSQL, reports its server version,
//! follows a policy edit, holds a statement until its ApprovalRequest is approved, and follows a
//! credential rotation.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use dbward_crds::{AccessPolicy, AccessPolicySpec, DatabaseConnection, DatabaseConnectionSpec};
use dbward_sidecar::cli::{Cli, Command};
use kube::runtime::watcher;
use support::bed::{NS, POD_UID, Setup, bed, meta, pod, secret};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn orders_policy(table: &str, allow_insert: bool) -> AccessPolicy {
    let mut ops = vec!["select", "set", "transaction"];
    if allow_insert {
        ops.push("insert");
    }
    let spec: AccessPolicySpec = serde_json::from_value(serde_json::json!({
        "connections": ["orders"],
        "subjects": [{"serviceAccount": {"name": "web"}}],
        "rules": [
            {"name": "read", "action": "allow", "operations": ops},
            {"name": "deletes", "action": "requireApproval", "operations": ["delete"]},
        ],
        "masking": [{"columns": [format!("public.{table}.email")], "strategy": "redact"}],
        "approval": {"mode": "wait", "timeout": "2m"},
    }))
    .unwrap();
    let mut p = AccessPolicy::new("orders-policy", spec);
    p.metadata = meta("orders-policy", NS);
    p
}

async fn connect(port: u16) -> tokio_postgres::Client {
    let conn = format!("host=127.0.0.1 port={port} user=web dbname=orders connect_timeout=5");
    for _ in 0..100 {
        if let Ok((client, connection)) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the sidecar did not start listening on {port}");
}

#[tokio::test]
async fn a_sidecar_configured_by_the_operator_enforces_follows_and_holds() {
    let pg = dbward_testkit::shared();
    let table = format!("via_operator_{}", std::process::id());
    pg.psql(&format!(
        "create table public.{table} (id int primary key, email text not null, note text);
         insert into public.{table} values (1, 'ann@example.com', 'a'), (2, 'bob@example.com', 'b');
         grant select, insert, delete on public.{table} to {};",
        pg.app_user()
    ))
    .unwrap();
    let local_port = free_port();
    let spec: DatabaseConnectionSpec = serde_json::from_value(serde_json::json!({
        "host": pg.host(), "port": pg.port(), "database": pg.database(),
        "credentialsSecretRef": {"name": "orders-db"},
        "tls": {"mode": "disable"},
        "localPort": local_port,
    }))
    .unwrap();
    let mut conn = DatabaseConnection::new("orders", spec);
    conn.metadata = meta("orders", NS);
    let mut bed = bed(Setup {
        connections: vec![conn],
        policies: vec![orders_policy(&table, false)],
        pods: vec![pod("web-1", POD_UID, "web", "orders")],
        secrets: vec![secret(
            "orders-db",
            &[("username", pg.app_user()), ("password", pg.app_password())],
        )],
    })
    .await;

    let token = bed
        .issuer
        .token(NS, "web", Some(("web-1", POD_UID)), "dbward.dev", 600);
    let token_file = bed.dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    let cli = <Cli as clap::Parser>::try_parse_from([
        "dbward-sidecar",
        "run",
        "--operator",
        &bed.url,
        "--connections",
        "orders",
        "--token-file",
        token_file.to_str().unwrap(),
        &format!("--operator-ca={}", bed.ca),
        "--listen",
        "127.0.0.1",
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        panic!("not run")
    };
    let sidecar = tokio::spawn(dbward_sidecar::cli::run(*args));

    let client = connect(local_port).await;
    // The operator's policy: reads allowed, the email masked, the pod's service account as identity.
    let rows = client
        .query(
            &format!("select id, email, note from public.{table} order by id"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let email: String = rows[0].get(1);
    assert_ne!(email, "ann@example.com");
    assert_eq!(rows[0].get::<_, String>(2), "a");
    // The sidecar told the operator which version the database announced at its login.
    let version = pg.psql("show server_version").unwrap();
    let mut reported = None;
    for _ in 0..100 {
        reported = bed
            .world
            .lock()
            .unwrap()
            .status_patches
            .iter()
            .find(|(at, _)| at.contains("/databaseconnections/orders/status"))
            .map(|(_, body)| body["status"]["serverVersion"].clone());
        if reported.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reported,
        Some(serde_json::json!(version)),
        "the server version reached the connection's status"
    );
    let insert = format!("insert into public.{table} values (3, 'cy@example.com', 'c')");
    let err = client.execute(&insert, &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err}");

    // A policy edit reaches the running sidecar through the long-poll.
    bed.pol_writer
        .apply_watcher_event(&watcher::Event::Apply(orders_policy(&table, true)));
    bed.state.config_changed();
    let mut inserted = false;
    for _ in 0..100 {
        if client.execute(&insert, &[]).await.is_ok() {
            inserted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(inserted, "the edited policy never reached the sidecar");

    // A delete waits for a person; its request is made from the verified pod.
    let delete = tokio::spawn({
        let client = client;
        let table = table.clone();
        async move {
            let n = client
                .execute(&format!("delete from public.{table} where id = 2"), &[])
                .await;
            (client, n)
        }
    });
    let mut name = None;
    for _ in 0..100 {
        name = bed
            .world
            .lock()
            .unwrap()
            .approvals
            .keys()
            .next()
            .map(|(_, n)| n.clone());
        if name.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = name.expect("an ApprovalRequest was created");
    {
        let w = bed.world.lock().unwrap();
        let obj = &w.approvals[&(NS.to_owned(), name.clone())];
        assert_eq!(obj["spec"]["requester"]["pod"], "web-1");
        assert_eq!(obj["spec"]["requester"]["serviceAccount"], "shop/web");
        assert_eq!(obj["spec"]["rule"], "shop/orders-policy/deletes");
    }
    assert!(!delete.is_finished(), "the delete ran without approval");
    bed.world.lock().unwrap().decide(NS, &name, "Approved", "alice");
    let (_client, n) = tokio::time::timeout(Duration::from_secs(60), delete)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.unwrap(), 1);
    assert_eq!(
        pg.psql(&format!("select count(*) from public.{table} where id = 2"))
            .unwrap(),
        "0"
    );

    // The credential is rotated in its Secret: sessions that start afterwards log in with the new one.
    let rotated = format!("via_operator_rotated_{}", std::process::id());
    pg.psql(&format!(
        "drop role if exists {rotated}; create role {rotated} login password 'rotated-pw'"
    ))
    .unwrap();
    let open = connect(local_port).await;
    bed.world.lock().unwrap().secrets.insert(
        (NS.into(), "orders-db".into()),
        secret("orders-db", &[("username", &rotated), ("password", "rotated-pw")]),
    );
    bed.state.config_changed();
    let mut user = String::new();
    for _ in 0..100 {
        let fresh = connect(local_port).await;
        user = fresh
            .query_one("select current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        if user == rotated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(user, rotated, "the rotated credential never reached the sidecar");
    let kept: String = open
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept,
        pg.app_user(),
        "an open session keeps the upstream it logged in with"
    );
    drop(open);

    sidecar.abort();
    pg.psql(&format!("drop table public.{table}; drop role {rotated}"))
        .unwrap();
}
