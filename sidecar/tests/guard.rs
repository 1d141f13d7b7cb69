//! AccessPolicy enforced end to end: a real PostgreSQL with the demo data, the sidecar with the policy
//! engine in front of it, and real clients. No way of asking for a masked column returns it in clear;
//! what the policy forbids never runs; everything else comes back exactly as from the database.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, sync::Arc};

use common::*;
use dbward_sidecar::{
    config::{self, runtime::RunOptions},
    guard::PolicyStore,
    mask::MaskKey,
};
use tokio_postgres::SimpleQueryMessage;

/// The demo policy for the caller `demo/agent`, with tests' additions.
const POLICY: &str = r#"
apiVersion: dbward.dev/v1alpha1
kind: AccessPolicy
metadata: {name: agent}
spec:
  connections: [orders]
  subjects: [{serviceAccount: {name: agent, namespace: demo}}]
  rules:
    - {name: read, action: allow, operations: [select, copyOut, set, transaction, utility]}
    - {name: scratch, action: allow, operations: [insert, update, delete, ddl], tables: ["scratch_*", "guard_*.*"]}
    - {name: no-ddl, action: deny, operations: [ddl, truncate, grant, role], tables: ["public.*", "billing.*"], message: "agents may not change the schema"}
    - {name: no-roles, action: deny, operations: [grant, role]}
    - {name: bulk, action: requireApproval, operations: [update, delete], when: {missingWhere: true}}
  masking:
    - {columns: ["public.customers.email"], strategy: email}
    - {columns: ["public.customers.card_number"], strategy: partial, keepLast: 4}
    - {columns: ["public.customers.ssn", "public.customers.phone"], strategy: redact}
"#;

struct Guarded {
    proxy: TestProxy,
    store: Arc<PolicyStore>,
}

fn config_yaml(policy: &str) -> String {
    let pg = dbward_testkit::shared();
    format!("{}\n---\n{policy}", connection_yaml(pg, "  tls: {mode: disable}"))
}

async fn guarded_as(policy: &str, identity: &str) -> Guarded {
    let yaml = config_yaml(policy);
    let cfg = config::parse_str(&yaml).unwrap();
    let store = Arc::new(PolicyStore::new(config::runtime::policies(&cfg).unwrap()));
    let opts = RunOptions {
        identity: identity.into(),
        ..RunOptions::default()
    };
    let s = store.clone();
    let proxy = start_proxy_edited(&yaml, opts, move |pc| {
        config::runtime::install_guard(pc, s, MaskKey::random().unwrap())
    })
    .await;
    Guarded { proxy, store }
}

async fn guarded() -> Guarded {
    guarded_as(POLICY, "demo/agent").await
}

/// A direct connection to the test database (no sidecar).
async fn direct() -> tokio_postgres::Client {
    let pg = dbward_testkit::shared();
    connect(&pg.conn_string(pg.app_user(), pg.app_password(), "shop"))
        .await
        .unwrap()
}

/// Every clear-text personal value of the first customers (emails, card numbers, SSNs, phones).
async fn secrets() -> BTreeSet<String> {
    let c = direct().await;
    let rows = c
        .query(
            "select email, card_number, ssn, coalesce(phone, email) from customers where id <= 20",
            &[],
        )
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    for r in rows {
        for i in 0..4 {
            out.insert(r.get::<_, String>(i));
        }
    }
    out
}

/// Every value a simple query returns, as text.
async fn simple_values(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
        if let SimpleQueryMessage::Row(r) = m {
            for i in 0..r.len() {
                out.push(r.get(i).unwrap_or("NULL").to_owned());
            }
        }
    }
    out
}

fn assert_no_secret(sql: &str, values: &[String], secrets: &BTreeSet<String>) {
    for v in values {
        for s in secrets {
            assert!(
                !v.contains(s.as_str()),
                "{sql}: returned {s:?} in clear (value {v:?})"
            );
        }
    }
}

#[tokio::test]
async fn direct_columns_are_masked_by_their_strategy() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let sql = "select id, full_name, email, card_number, ssn, phone from customers where id = 1";
    let v = simple_values(&c, sql).await;
    assert_eq!(v[0], "1");
    assert_eq!(v[2], "****@example.com");
    assert!(v[3].ends_with("0016") && !v[3].contains("4111"), "{}", v[3]);
    assert_eq!(v[4], "****");
    assert_eq!(v[5], "****");
    let d = direct().await;
    let name: String = d
        .query_one("select full_name from customers where id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v[1], name, "unmasked columns come back as they are");
    // Extended protocol, binary results.
    let row = c.query_one(sql, &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(2), "****@example.com");
    assert_eq!(row.get::<_, &str>(4), "****");
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn no_query_shape_returns_a_masked_value_in_clear() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let secrets = secrets().await;
    let queries = [
        "select email as contact from customers where id <= 20",
        "select lower(email), upper(ssn) from customers where id <= 20",
        "select email || '' from customers where id <= 20",
        "select concat(card_number, '!') from customers where id <= 20",
        "select substr(card_number, 1, 16) from customers where id <= 20",
        "select string_agg(email, ',') from customers where id <= 20",
        "select max(ssn), min(phone) from customers where id <= 20",
        "select (select email from customers c2 where c2.id = c.id) from customers c where id <= 20",
        "with x as (select email e from customers where id <= 20) select e from x",
        "with x(a) as (select ssn from customers where id <= 20) select * from x",
        "select * from (select card_number k from customers where id <= 20) s",
        "select email from customers where id <= 10 union select email from customers where id <= 20",
        "select full_name from customers where id <= 20 union all select ssn from customers where id <= 20",
        "select c from customers c where id <= 20",
        "select row_to_json(c) from customers c where id <= 20",
        "select to_jsonb(c.*) from customers c where id <= 20",
        "select json_build_object('e', email) from customers where id <= 20",
        "select array_agg(email) from customers where id <= 20",
        "select first_value(email) over (order by id) from customers where id <= 20",
        "select case when id > 0 then email end from customers where id <= 20",
        "select coalesce(phone, email) from customers where id <= 20",
        "select email::varchar(200) from customers where id <= 20",
        "select cast(ssn as text) from customers where id <= 20",
        "select o.id, c.email from orders o join customers c on c.id = o.customer_id where c.id <= 20",
        "select * from customers natural join (select id, email from customers where id <= 20) x",
        "select x.* from customers c, lateral (select c.email) x where c.id <= 20",
        "select email from customer_contacts limit 20",
        "select upper(email) from customer_contacts limit 20",
        "select * from customer_contacts limit 20",
        "select customer_email(id) from customers where id <= 20",
        "select * from customers where id <= 20",
        "select customers from customers where id <= 20",
        "values ((select email from customers where id = 1))",
        "table customers",
        "select t.* from (values (1)) v, customers t where t.id <= 20",
    ];
    for sql in queries {
        let v = simple_values(&c, sql).await;
        assert!(!v.is_empty(), "{sql}: no rows");
        assert_no_secret(sql, &v, &secrets);
        // The extended protocol (binary where the client asks for it) too.
        let rows = c.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        for r in rows {
            for i in 0..r.len() {
                if let Ok(Some(s)) = r.try_get::<_, Option<String>>(i) {
                    assert_no_secret(sql, &[s], &secrets);
                }
            }
        }
    }
}

#[tokio::test]
async fn ordinary_results_are_exactly_the_databases() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let d = direct().await;
    for sql in [
        "select id, full_name, country from customers order by id limit 50",
        "select count(*), sum(total) from orders",
        "select o.id, o.total, i.quantity from orders o join order_items i on i.order_id = o.id order by 1, 3 limit 100",
        "select now() > '2000-01-01', 1 + 2, 'text'",
        "select full_name from customer_contacts order by 1 limit 5",
        "select count(email) from customers",
    ] {
        assert_eq!(
            simple_values(&c, sql).await,
            simple_values(&d, sql).await,
            "{sql}"
        );
    }
}

#[tokio::test]
async fn forbidden_statements_never_run() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let e = c.simple_query("drop table customers").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("agents may not change the schema")
    );
    let e = c.batch_execute("delete from orders").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    assert!(
        e.as_db_error().unwrap().message().contains("requires approval"),
        "{e}"
    );
    let e = c.execute("delete from orders", &[]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    // Writes the policy does not allow, and what cannot be classified.
    for sql in [
        "insert into products (name, price) values ('x', 1)",
        "do $$ begin perform 1; end $$",
        "select pg_read_file('/etc/passwd')",
        "set role postgres",
        "select 1; drop table orders",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    let d = direct().await;
    let n: i64 = d
        .query_one("select count(*) from orders", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1000, "the orders are all still there");
    // The session is fine afterwards.
    assert_eq!(simple_values(&c, "select 42").await, vec!["42"]);
}

#[tokio::test]
async fn a_caller_no_policy_names_is_refused_everything() {
    let g = guarded_as(POLICY, "other/someone").await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let e = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("no AccessPolicy grants")
    );
}

#[tokio::test]
async fn prepared_statements_and_cursors_are_judged_and_masked() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let secrets = secrets().await;
    c.batch_execute("prepare p as select email, ssn from customers where id <= 20")
        .await
        .unwrap();
    let v = simple_values(&c, "execute p").await;
    assert_eq!(v.len(), 40);
    assert_no_secret("execute p", &v, &secrets);
    c.batch_execute("prepare d as delete from orders")
        .await
        .unwrap_err();
    c.batch_execute("begin; declare cur cursor for select card_number from customers where id <= 20")
        .await
        .unwrap();
    let v = simple_values(&c, "fetch 5 from cur").await;
    assert_eq!(v.len(), 5);
    assert_no_secret("fetch", &v, &secrets);
    c.batch_execute("commit").await.unwrap();
}

#[tokio::test]
async fn copy_out_is_masked_in_text_and_csv_and_refused_in_binary() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let secrets = secrets().await;
    use futures_util::TryStreamExt;
    for sql in [
        "copy (select id, email, ssn from customers where id <= 20) to stdout",
        "copy (select id, email from customers where id <= 20) to stdout with (format csv, header)",
        "copy customers to stdout",
        "copy customers (email, card_number) to stdout csv",
    ] {
        let stream = c.copy_out(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        let text = String::from_utf8(chunks.concat()).unwrap();
        assert!(text.lines().count() >= 20, "{sql}: {text}");
        assert_no_secret(sql, &[text], &secrets);
    }
    let e = c
        .copy_out("copy customers to stdout with (format binary)")
        .await
        .err()
        .expect("binary COPY of masked columns is refused");
    assert_eq!(code(&e).as_deref(), Some("42501"));
    // Unmasked data copies as it is.
    let stream = c
        .copy_out("copy (select id from customers where id <= 3 order by id) to stdout")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"1\n2\n3\n".to_vec());
}

#[tokio::test]
async fn errors_and_copies_do_not_leak_masked_values() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let e = c
        .simple_query("select email::int from customers where id = 1")
        .await
        .unwrap_err();
    let text = format!("{:?}", e.as_db_error().unwrap());
    assert!(!text.contains("customer1@example.com"), "{text}");
    // Copying masked data into a table would let it be read back unmasked.
    for sql in [
        "create table scratch_copy as select email from customers",
        "select email into scratch_copy2 from customers",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e).as_deref(), Some("42501"), "{sql}");
        assert!(
            e.as_db_error().unwrap().message().contains("masked"),
            "{sql}: {e}"
        );
    }
    // Unmasked columns may be copied.
    c.batch_execute("create temp table scratch_names as select full_name from customers where id <= 3")
        .await
        .unwrap();
}

#[tokio::test]
async fn policy_changes_apply_to_the_next_statement() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    assert_eq!(simple_values(&c, "select 1").await, vec!["1"]);
    let stricter = POLICY.replace(
        "operations: [select, copyOut, set, transaction, utility]",
        "operations: [set]",
    );
    let cfg = config::parse_str(&config_yaml(&stricter)).unwrap();
    g.store.replace(config::runtime::policies(&cfg).unwrap());
    let e = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
}

#[tokio::test]
async fn limits_end_a_result_that_is_too_large() {
    let policy = format!("{POLICY}  limits: {{maxRows: 100}}\n");
    let g = guarded_as(&policy, "demo/agent").await;
    let c = connect(&g.proxy.app()).await.unwrap();
    assert_eq!(
        simple_values(&c, "select id from orders limit 100").await.len(),
        100
    );
    let e = c.simple_query("select id from orders").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("54000"), "{e}");
    assert!(e.as_db_error().unwrap().message().contains("maxRows"));
    let e = c.query("select id from orders", &[]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("54000"), "{e}");
    // The session goes on.
    assert_eq!(simple_values(&c, "select 7").await, vec!["7"]);
}

#[tokio::test]
async fn unqualified_names_resolve_through_the_search_path() {
    let d = direct().await;
    d.batch_execute(
        "drop schema if exists guard_a cascade; drop schema if exists guard_b cascade;
         create schema guard_a; create schema guard_b;
         create table guard_a.t (x int); create table guard_b.t (secret text);
         insert into guard_a.t values (1); insert into guard_b.t values ('s')",
    )
    .await
    .unwrap();
    let policy = r#"
apiVersion: dbward.dev/v1alpha1
kind: AccessPolicy
metadata: {name: paths}
spec:
  connections: [orders]
  subjects: [{serviceAccount: {name: agent, namespace: demo}}]
  rules:
    - {action: allow, operations: [set, transaction]}
    - {action: allow, operations: [select], tables: ["guard_a.*"]}
"#;
    let g = guarded_as(policy, "demo/agent").await;
    let c = connect(&g.proxy.app()).await.unwrap();
    c.batch_execute("set search_path to guard_a").await.unwrap();
    assert_eq!(simple_values(&c, "select x from t").await, vec!["1"]);
    let e = c.simple_query("select * from guard_b.t").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    // A SET earlier in the same string counts for the statements after it.
    for sql in [
        "set search_path = guard_b; select * from t",
        "select set_config('search_path', 'guard_b', false); select * from t",
        "begin; set local search_path = guard_b; select * from t; commit",
    ] {
        let fresh = connect(&g.proxy.app()).await.unwrap();
        fresh.batch_execute("set search_path to guard_a").await.unwrap();
        let e = fresh.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // After a SET the server may or may not have applied, both paths count: refused.
    c.batch_execute("set search_path to guard_b").await.unwrap();
    let e = c.simple_query("select * from t").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
}

/// An error can quote a masked value even when the statement's rows need no masking.
#[tokio::test]
async fn errors_of_statements_without_masked_rows_are_scrubbed_too() {
    let g = guarded().await;
    let secrets = secrets().await;
    for sql in [
        "select id from customers where email::int = 1",
        "select count(*) from customers where ssn::int > 0",
    ] {
        // A fresh session: nothing masked has been described on it yet.
        let c = connect(&g.proxy.app()).await.unwrap();
        let e = c.simple_query(sql).await.unwrap_err();
        let text = format!("{e:?}");
        assert!(
            !secrets.iter().any(|s| text.contains(s.as_str())),
            "{sql}: {text}"
        );
        let c = connect(&g.proxy.app()).await.unwrap();
        let e = c.query(sql, &[]).await.unwrap_err();
        let text = format!("{e:?}");
        assert!(
            !secrets.iter().any(|s| text.contains(s.as_str())),
            "{sql}: {text}"
        );
    }
}

/// A table created in the client's open transaction is invisible to the catalog's own session: its
/// rows still come back (masked as untraceable), instead of the sidecar reloading forever.
#[tokio::test]
async fn a_table_created_in_the_open_transaction_can_be_read() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    c.batch_execute("begin; create table scratch_in_tx (x int); insert into scratch_in_tx values (1)")
        .await
        .unwrap();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        c.simple_query("select x from scratch_in_tx"),
    )
    .await
    .expect("an answer, not an endless catalog reload");
    assert!(r.is_ok(), "{r:?}");
    c.batch_execute("rollback").await.unwrap();
}

#[tokio::test]
async fn startup_settings_that_bypass_policy_are_refused() {
    let g = guarded().await;
    let e = connect(&format!("{} options='-c role=postgres'", g.proxy.app()))
        .await
        .expect_err("refused");
    assert_eq!(code(&e).as_deref(), Some("42501"));
    connect(&format!("{} options='-c search_path=public'", g.proxy.app()))
        .await
        .unwrap();
}

#[tokio::test]
async fn settings_that_change_how_statements_read_are_held_at_safe_values() {
    let g = guarded().await;
    let e = connect(&format!(
        "{} options='-c standard_conforming_strings=off'",
        g.proxy.app()
    ))
    .await
    .expect_err("refused");
    assert_eq!(code(&e).as_deref(), Some("42501"), "{e}");
    let c = connect(&g.proxy.app()).await.unwrap();
    for sql in [
        "set standard_conforming_strings = off",
        "select set_config('standard_conforming_strings', 'off', false)",
        "set client_encoding = 'SJIS'",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    c.batch_execute("set standard_conforming_strings = on; set client_encoding = 'UTF8'")
        .await
        .unwrap();
    // With conforming strings, a backslash is an ordinary character to the server and to the sidecar.
    assert_eq!(simple_values(&c, r"select 'a\'").await, vec![r"a\"]);
}

#[tokio::test]
async fn statement_timeout_is_the_policys_limit() {
    // No masking here: SHOW's output cannot be traced to a column, so a masking caller sees it masked.
    let unmasked = &POLICY[..POLICY.find("  masking:").unwrap()];
    let policy = format!("{unmasked}  limits: {{statementTimeout: 1s}}\n");
    let g = guarded_as(&policy, "demo/agent").await;
    // Even a client asking for no timeout at startup gets the limit.
    let c = connect(&format!("{} options='-c statement_timeout=0'", g.proxy.app()))
        .await
        .unwrap();
    assert_eq!(simple_values(&c, "show statement_timeout").await, vec!["1s"]);
    let e = c.simple_query("select pg_sleep(3)").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("57014"), "{e}");
    // Lowering is allowed; raising or removing it is not, whatever the spelling.
    c.batch_execute("set statement_timeout = '500ms'").await.unwrap();
    assert_eq!(simple_values(&c, "show statement_timeout").await, vec!["500ms"]);
    for sql in [
        "set statement_timeout = 0",
        "set statement_timeout to '2s'",
        "set local statement_timeout = 5000",
        "select set_config('statement_timeout', '1h', false)",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e).as_deref(), Some("42501"), "{sql}: {e}");
        assert!(
            e.as_db_error().unwrap().message().contains("statement_timeout"),
            "{sql}: {e}"
        );
    }
    // A value the sidecar cannot read is an unknown statement.
    let sql = "select set_config('statement_timeout', current_setting('work_mem'), false)";
    let e = c.simple_query(sql).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"), "{sql}: {e}");
    // RESET and DISCARD ALL return to the session's starting value: the limit.
    c.batch_execute("reset statement_timeout").await.unwrap();
    assert_eq!(simple_values(&c, "show statement_timeout").await, vec!["1s"]);
    c.batch_execute("set statement_timeout = 200").await.unwrap();
    c.batch_execute("discard all").await.unwrap();
    assert_eq!(simple_values(&c, "show statement_timeout").await, vec!["1s"]);
    // The extended protocol is held to it too.
    let e = c.query("select pg_sleep(3)", &[]).await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("57014"), "{e}");

    // A policy that shortens the limit mid-session: the session cannot go on under the longer one.
    let shorter = format!("{unmasked}  limits: {{statementTimeout: 200ms}}\n");
    let cfg = config::parse_str(&config_yaml(&shorter)).unwrap();
    g.store.replace(config::runtime::policies(&cfg).unwrap());
    let e = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("55000"), "{e}");
    assert!(e.as_db_error().unwrap().message().contains("reconnect"), "{e}");
    let fresh = connect(&g.proxy.app()).await.unwrap();
    assert_eq!(
        simple_values(&fresh, "show statement_timeout").await,
        vec!["200ms"]
    );
}

/// Statements that differ only in literals share one judgment (no parse per value); the judgment
/// still masks, refuses and resolves for each of them as for the first.
#[tokio::test]
async fn statements_differing_in_literals_are_judged_alike() {
    let g = guarded().await;
    let c = connect(&g.proxy.app()).await.unwrap();
    let d = direct().await;
    let secrets = secrets().await;
    for id in 1..=5 {
        let sql = format!("select id, email, full_name from customers where id = {id}");
        let values = simple_values(&c, &sql).await;
        assert_no_secret(&sql, &values, &secrets);
        let clear = d.simple_query(&sql).await.unwrap();
        let Some(SimpleQueryMessage::Row(r)) = clear.iter().find(|m| matches!(m, SimpleQueryMessage::Row(_)))
        else {
            panic!("customer {id} is missing")
        };
        assert_eq!(values[0], r.get(0).unwrap());
        assert_eq!(values[2], r.get(2).unwrap());
        assert_ne!(values[1], r.get(1).unwrap());
        let sql = format!("select id, 'note {id}' as n from customers where id = {id}");
        assert_eq!(
            simple_values(&c, &sql).await,
            vec![id.to_string(), format!("note {id}")]
        );
        let sql = format!("delete from customers where id = {id}");
        let e = c.simple_query(&sql).await.unwrap_err();
        assert_eq!(code(&e).as_deref(), Some("42501"), "{sql}");
    }
}

/// The server's answers, pipelined: each Execute's rows are masked whether or not the client described
/// the portal, the relay's own Describe never reaches the client, and an error midway ends its batch
/// as the server would.
#[tokio::test]
async fn pipelined_results_are_paired_with_their_statements() {
    let g = guarded().await;
    let mut raw = Raw::startup(g.proxy.addr, &[("user", "app"), ("database", "shop")], None).await;
    let mut p = Vec::new();
    p.extend(parse("s", "select email, id from customers where id = $1"));
    // Described by the client.
    p.extend(bind("", "s", &[Some("1")]));
    p.extend(describe_portal(""));
    p.extend(execute(""));
    // Not described: the relay asks the server.
    p.extend(bind("", "s", &[Some("2")]));
    p.extend(execute(""));
    p.extend(sync());
    // An error (1/0 is folded when the statement is planned, at Bind), then what the server skips
    // up to Sync.
    p.extend(parse("", "select 1/0"));
    p.extend(bind("", "", &[]));
    p.extend(execute(""));
    p.extend(bind("", "s", &[Some("3")]));
    p.extend(execute(""));
    p.extend(sync());
    // After the error: a fresh batch.
    p.extend(bind("", "s", &[Some("4")]));
    p.extend(execute(""));
    p.extend(sync());
    raw.send(&p).await;
    let msgs = raw.until_ready(3).await;
    let tags: String = msgs.iter().map(|m| m.tag as char).collect();
    assert_eq!(
        tags, "12TDC2DCZ1EZ2DCZ",
        "the client sees exactly the server's answers to its own messages"
    );
    let rows: Vec<String> = msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(rows.len(), 3);
    for (r, n) in rows.iter().zip(["1", "2", "4"]) {
        assert!(r.contains("****@example.com") && !r.contains("customer"), "{r}");
        assert!(r.ends_with(n), "{r}");
    }
    assert_eq!(
        msgs.iter().find(|m| m.tag == b'E').unwrap().code().as_deref(),
        Some("22012")
    );
}
