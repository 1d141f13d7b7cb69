//! The hook points: a statement the hook refuses fails exactly where and how a server error would,
//! and a result hook sees and may rewrite rows. The hooks here are test policies; the real policy
//! engine plugs into the same points.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use common::*;
use dbward_sidecar::proxy::hook::{
    Context, Hooks, ResultHook, RowAction, Rows, SessionHooks, SessionInfo, Statement, StatementHook, Verdict,
};

/// Refuses any statement whose text contains "forbidden", and any Bind with a parameter "secret".
struct TestPolicy;

struct Checker;

impl StatementHook for Checker {
    fn check(&mut self, s: &Statement<'_>) -> Verdict {
        let deny = |why: &str| Verdict::Deny {
            code: "42501".into(),
            message: format!("test policy: {why}"),
        };
        match s {
            Statement::Simple { sql } | Statement::Parse { sql, .. } if sql.contains("forbidden") => {
                deny("forbidden text")
            }
            Statement::Bind { bind, .. } if bind.params().any(|p| p == Some(&b"secret"[..])) => {
                deny("secret parameter")
            }
            _ => Verdict::Allow,
        }
    }
}

/// Replaces every value of the first column of results whose first column is named "masked".
struct Masker {
    active: bool,
}

impl ResultHook for Masker {
    fn row_description(&mut self, body: &[u8], _: Option<&Context>) -> Rows {
        // Field count (2 bytes) then the first field's name.
        self.active = body.len() > 2 && body[2..].starts_with(b"masked\0");
        if self.active { Rows::Inspect } else { Rows::Pass }
    }

    fn data_row(&mut self, body: &[u8], out: &mut BytesMut) -> RowAction {
        let n = u16::from_be_bytes([body[0], body[1]]);
        let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
        let rest_at = 6 + usize::try_from(len.max(0)).unwrap();
        out.put_u16(n);
        out.put_i32(3);
        out.extend_from_slice(b"***");
        out.extend_from_slice(&body[rest_at..]);
        RowAction::Replaced
    }
}

impl SessionHooks for TestPolicy {
    fn open(&self, _: &SessionInfo) -> Hooks {
        Hooks {
            statements: Some(Box::new(Checker)),
            results: Some(Box::new(Masker { active: false })),
            describe_portals: true,
        }
    }
}

async fn proxy() -> TestProxy {
    start_hooked_proxy(Arc::new(TestPolicy)).await
}

#[tokio::test]
async fn simple_query_denial_and_the_session_goes_on() {
    let p = proxy().await;
    let c = connect(&p.app()).await.unwrap();
    let e = c.simple_query("select 'forbidden'").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    assert_eq!(e.as_db_error().unwrap().message(), "test policy: forbidden text");
    assert_eq!(c.query_one("select 5", &[]).await.unwrap().get::<_, i32>(0), 5);
}

#[tokio::test]
async fn denial_inside_a_transaction_aborts_it_as_a_server_error_would() {
    let p = proxy().await;
    let mut c = connect(&p.app()).await.unwrap();
    c.batch_execute("create temp table t (x int)").await.unwrap();
    let tx = c.transaction().await.unwrap();
    tx.execute("insert into t values (1)", &[]).await.unwrap();
    let e = tx.simple_query("select 'forbidden'").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    let e = tx.execute("insert into t values (2)", &[]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("25P02"), "the transaction is failed");
    // COMMIT of a failed transaction is answered ROLLBACK by the server.
    tx.commit().await.unwrap();
    let n: i64 = c.query_one("select count(*) from t", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "nothing of the failed transaction was committed");
}

#[tokio::test]
async fn denial_in_a_pipeline_lands_in_place_and_rolls_back_its_batch() {
    let p = proxy().await;
    let mut raw = Raw::startup(p.addr, &[("user", "app"), ("database", "shop")], None).await;
    raw.send(&query("create temp table t (x int)")).await;
    raw.until_ready(1).await;
    let mut pipeline = Vec::new();
    // Batch 1: fine.
    pipeline.extend(parse("", "select 1"));
    pipeline.extend(bind("", "", &[]));
    pipeline.extend(execute(""));
    pipeline.extend(sync());
    // Batch 2: an insert, then a denied statement: the insert must not survive.
    pipeline.extend(parse("", "insert into t values (1)"));
    pipeline.extend(bind("", "", &[]));
    pipeline.extend(execute(""));
    pipeline.extend(parse("s2", "select 'forbidden'"));
    pipeline.extend(bind("", "s2", &[]));
    pipeline.extend(execute(""));
    pipeline.extend(sync());
    // Batch 3: fine again.
    pipeline.extend(parse("", "select count(*) from t"));
    pipeline.extend(bind("", "", &[]));
    pipeline.extend(execute(""));
    pipeline.extend(sync());
    raw.send(&pipeline).await;
    let msgs = raw.until_ready(3).await;
    assert_eq!(tags(&msgs), "1 2 D C Z 1 2 C E Z 1 2 D C Z");
    let err = msgs.iter().find(|m| m.tag == b'E').unwrap();
    assert_eq!(err.code().as_deref(), Some("42501"));
    assert_eq!(err.field(b'M').as_deref(), Some("test policy: forbidden text"));
    let count = &msgs[msgs.len() - 3];
    assert_eq!(
        count.body[6..],
        *b"0",
        "the insert of the denied batch was rolled back"
    );
    // The denied statement was never created.
    raw.send(&[bind("", "s2", &[]), sync()].concat()).await;
    let msgs = raw.until_ready(1).await;
    assert_eq!(msgs[0].code().as_deref(), Some("26000"));
}

#[tokio::test]
async fn bind_time_denial_by_parameter() {
    let p = proxy().await;
    let c = connect(&p.app()).await.unwrap();
    let s = c.prepare("select $1::text").await.unwrap();
    assert_eq!(
        c.query_one(&s, &[&"fine"]).await.unwrap().get::<_, &str>(0),
        "fine"
    );
    let e = c.query_one(&s, &[&"secret"]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    // The prepared statement itself is intact.
    assert_eq!(
        c.query_one(&s, &[&"again"]).await.unwrap().get::<_, &str>(0),
        "again"
    );
}

#[tokio::test]
async fn an_earlier_error_in_the_batch_wins_as_on_the_server() {
    let p = proxy().await;
    let mut raw = Raw::startup(p.addr, &[("user", "app"), ("database", "shop")], None).await;
    let mut b = Vec::new();
    b.extend(parse("", "select 1/0"));
    b.extend(bind("", "", &[]));
    b.extend(execute(""));
    b.extend(parse("", "select 'forbidden'"));
    b.extend(sync());
    raw.send(&b).await;
    let msgs = raw.until_ready(1).await;
    // The division is folded at Bind, so the server fails there and skips the rest.
    assert_eq!(tags(&msgs), "1 E Z");
    assert_eq!(msgs[1].code().as_deref(), Some("22012"));
    // The leftover denial does not leak into later errors.
    raw.send(&query("select 1/0")).await;
    let msgs = raw.until_ready(1).await;
    assert_eq!(msgs[0].code().as_deref(), Some("22012"));
}

#[tokio::test]
async fn reserved_statement_names_are_refused() {
    let p = proxy().await;
    let mut raw = Raw::startup(p.addr, &[("user", "app"), ("database", "shop")], None).await;
    raw.send(&[parse("dbward-denied-guess-1", "select 1"), sync()].concat())
        .await;
    let msgs = raw.until_ready(1).await;
    assert_eq!(msgs[0].code().as_deref(), Some("42501"));
}

#[tokio::test]
async fn result_hook_rewrites_rows_and_leaves_others_untouched() {
    let p = proxy().await;
    let c = connect(&p.app()).await.unwrap();
    let rows = c
        .query(
            "select email as masked, id from customers where id <= 3 order by id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, &str>(0), "***");
        assert_eq!(r.get::<_, i64>(1), i as i64 + 1);
    }
    let row = c
        .query_one("select email from customers where id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "customer1@example.com");
}
