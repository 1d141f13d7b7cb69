//! The relay against a real PostgreSQL: what clients get through the sidecar is what they get from the
//! server directly, byte for byte, across the simple and extended protocols, transactions, COPY,
//! notifications, cancellation and large rows.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use dbward_testkit::shared;
use tokio_postgres::SimpleQueryMessage;

fn direct_params(pg: &dbward_testkit::TestPostgres) -> String {
    pg.app_conn_string()
}

/// Raw bytes of a conversation after startup, directly and through the proxy.
async fn both_ways(exchange: &[Vec<u8>], ready: usize) -> (Vec<Msg>, Vec<Msg>) {
    let pg = shared();
    let proxy = start_proxy().await;
    let direct_addr = format!("127.0.0.1:{}", pg.port()).parse().unwrap();
    let params = [("user", "app"), ("database", "shop"), ("application_name", "raw")];
    let mut direct = Raw::startup(direct_addr, &params, Some(pg.app_password())).await;
    let mut via = Raw::startup(proxy.addr, &params, None).await;
    for bytes in exchange {
        direct.send(bytes).await;
        via.send(bytes).await;
    }
    (direct.until_ready(ready).await, via.until_ready(ready).await)
}

#[tokio::test]
async fn simple_query_results_are_byte_identical() {
    let (direct, via) = both_ways(
        &[query(
            "select * from customers order by id; select count(*), sum(total) from orders; select 1/0",
        )],
        1,
    )
    .await;
    assert_eq!(tags(&direct[..3]), "T D D");
    assert_eq!(direct, via);
}

#[tokio::test]
async fn pipelined_extended_queries_with_an_error_midway_are_byte_identical() {
    // Three batches sent at once; the second fails at Execute and the server skips to its Sync.
    let mut batch = Vec::new();
    for (i, sql) in [
        "select id, email from customers where id < $1",
        "select 1/($1::int - 5)",
        "select $1::text",
    ]
    .iter()
    .enumerate()
    {
        batch.extend(parse("", sql));
        batch.extend(bind("", "", &[Some("5")]));
        batch.extend(describe_portal(""));
        batch.extend(execute(""));
        if i == 1 {
            // Messages after the error up to Sync are discarded by the server.
            batch.extend(parse("never", "select 2"));
        }
        batch.extend(sync());
    }
    let (direct, via) = both_ways(&[batch], 3).await;
    assert!(direct.iter().any(|m| m.code().as_deref() == Some("22012")));
    assert_eq!(direct, via);
}

#[tokio::test]
async fn tokio_postgres_prepared_binary_and_transactions() {
    let proxy = start_proxy().await;
    let mut c = connect(&proxy.app()).await.unwrap();
    // Extended protocol with binary results and parameters.
    let stmt = c
        .prepare("select id, full_name, created_at, $1::int8 + 1 from customers where id = $1")
        .await
        .unwrap();
    let row = c.query_one(&stmt, &[&7i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 7);
    assert_eq!(row.get::<_, i64>(3), 8);
    // Named statements keep working after others come and go.
    for i in 1..20i64 {
        let s = c.prepare("select $1::int8 * 2").await.unwrap();
        assert_eq!(c.query_one(&s, &[&i]).await.unwrap().get::<_, i64>(0), i * 2);
    }
    assert_eq!(c.query_one(&stmt, &[&9i64]).await.unwrap().get::<_, i64>(0), 9);

    // A transaction that fails is rolled back; the session goes on.
    let tx = c.transaction().await.unwrap();
    tx.execute("create temp table t (x int primary key)", &[])
        .await
        .unwrap();
    tx.execute("insert into t values (1)", &[]).await.unwrap();
    let e = tx.execute("insert into t values (1)", &[]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("23505"));
    let e = tx.execute("select 1", &[]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("25P02"));
    tx.rollback().await.unwrap();
    assert_eq!(
        c.query_one("select 41 + 1", &[]).await.unwrap().get::<_, i32>(0),
        42
    );
}

#[tokio::test]
async fn copy_in_and_out() {
    use bytes::Bytes;
    let proxy = start_proxy().await;
    let c = connect(&proxy.app()).await.unwrap();
    c.batch_execute("create temp table items (id int, label text)")
        .await
        .unwrap();
    let sink = c.copy_in("copy items from stdin (format csv)").await.unwrap();
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i},label {i}\n"));
    }
    futures_send(sink, Bytes::from(data)).await;
    let n: i64 = c
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5000);

    let out = collect_copy_out(
        &c,
        "copy (select id, label from items where id < 3 order by id) to stdout",
    )
    .await;
    assert_eq!(out, "0\tlabel 0\n1\tlabel 1\n2\tlabel 2\n");

    // A COPY the client aborts fails cleanly and the session goes on.
    let mut raw = Raw::startup(proxy.addr, &[("user", "app"), ("database", "shop")], None).await;
    raw.send(&query("create temp table z (x int)")).await;
    raw.until_ready(1).await;
    raw.send(&query("copy z from stdin")).await;
    let m = raw.read().await.unwrap();
    assert_eq!(m.tag, b'G', "CopyInResponse");
    raw.send(&frame(b'd', b"1\n")).await;
    raw.send(&frame(b'f', &cstr("client changed its mind"))).await;
    let msgs = raw.until_ready(1).await;
    let err = msgs.iter().find(|m| m.tag == b'E').unwrap();
    assert_eq!(err.code().as_deref(), Some("57014"));
    raw.send(&query("select count(*) from z")).await;
    let msgs = raw.until_ready(1).await;
    assert_eq!(tags(&msgs), "T D C Z");
}

async fn futures_send(sink: tokio_postgres::CopyInSink<bytes::Bytes>, data: bytes::Bytes) {
    use futures_util::SinkExt;
    let mut sink = std::pin::pin!(sink);
    sink.send(data).await.unwrap();
    sink.finish().await.unwrap();
}

async fn collect_copy_out(c: &tokio_postgres::Client, sql: &str) -> String {
    use futures_util::StreamExt;
    let stream = c.copy_out(sql).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn rows_of_tens_of_megabytes() {
    let proxy = start_proxy().await;
    let c = connect(&proxy.app()).await.unwrap();
    let row = c
        .query_one("select repeat('x', 30 * 1024 * 1024) as big, 7 as after", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0).len(), 30 * 1024 * 1024);
    assert_eq!(row.get::<_, i32>(1), 7);
    // And a 20 MB statement on the way in.
    let big = "y".repeat(20 * 1024 * 1024);
    let n: i32 = c
        .query_one("select length($1::text)", &[&big])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20 * 1024 * 1024);
}

#[tokio::test]
async fn listen_notify_and_notices_pass_through() {
    let proxy = start_proxy().await;
    let mut listener = Raw::startup(proxy.addr, &[("user", "app"), ("database", "shop")], None).await;
    listener.send(&query("listen orders_changed")).await;
    listener.until_ready(1).await;
    let other = connect(&proxy.app()).await.unwrap();
    other
        .batch_execute("notify orders_changed, 'order 42'")
        .await
        .unwrap();
    let m = listener.read().await.unwrap();
    assert_eq!(m.tag, b'A', "NotificationResponse");
    assert!(String::from_utf8_lossy(&m.body).contains("order 42"));

    let msgs = other
        .simple_query("do $$ begin raise notice 'hello from the server'; end $$")
        .await
        .unwrap();
    assert!(matches!(
        msgs.last(),
        Some(SimpleQueryMessage::CommandComplete(_))
    ));
    let mut raw = Raw::startup(proxy.addr, &[("user", "app"), ("database", "shop")], None).await;
    raw.send(&query("do $$ begin raise notice 'hello from the server'; end $$"))
        .await;
    let msgs = raw.until_ready(1).await;
    let n = msgs.iter().find(|m| m.tag == b'N').unwrap();
    assert_eq!(n.field(b'M').as_deref(), Some("hello from the server"));
}

#[tokio::test]
async fn cancel_reaches_the_right_backend() {
    let proxy = start_proxy().await;
    let c = connect(&proxy.app()).await.unwrap();
    let bystander = connect(&proxy.app()).await.unwrap();
    let token = c.cancel_token();
    let slow = tokio::spawn(async move { c.simple_query("select pg_sleep(20)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = slow.await.unwrap().unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(10));
    // The other session was not touched.
    assert_eq!(
        bystander
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    // A cancel with an unknown key is ignored.
    let mut raw = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    raw.write_all(&[0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2])
        .await
        .unwrap();
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
async fn startup_parameters_reach_the_server() {
    let proxy = start_proxy().await;
    let conn = format!(
        "{} application_name=agent-7 options='-c search_path=billing,public'",
        proxy.app()
    );
    let c = connect(&conn).await.unwrap();
    let row = c
        .query_one(
            "select current_setting('application_name'), current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "agent-7");
    assert_eq!(row.get::<_, &str>(1), "billing,public");
    // The session runs as the sidecar's credential, whatever user the client named.
    let c = connect(&proxy.conn_string("somebody-else", "orders"))
        .await
        .unwrap();
    let row = c
        .query_one("select current_user, current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "app");
    assert_eq!(row.get::<_, &str>(1), "shop");
    let _ = direct_params(shared());
}

#[tokio::test]
async fn function_call_is_relayed_as_a_sync_point() {
    // FunctionCall int4pl(2, 3) (OID 177), text arguments and result, then a simple query.
    let mut body = 177u32.to_be_bytes().to_vec();
    body.extend(1i16.to_be_bytes());
    body.extend(0i16.to_be_bytes());
    body.extend(2i16.to_be_bytes());
    for arg in [b"2", b"3"] {
        body.extend(1i32.to_be_bytes());
        body.extend(arg);
    }
    body.extend(0i16.to_be_bytes());
    let (direct, via) = both_ways(&[frame(b'F', &body), query("select 'after'")], 2).await;
    assert_eq!(tags(&direct), "V Z T D C Z");
    assert_eq!(direct[0].body, [0, 0, 0, 1, b'5']);
    assert_eq!(direct, via);
}
