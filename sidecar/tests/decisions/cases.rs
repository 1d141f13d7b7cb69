//! The corpus: every statement with the decision the policy in `decisions.rs` gives it.
//!
//! Reminders of the policy (caller demo/agent, search_path `crm, public`):
//! - `read` allows select/copyOut on every relation (and on none), but `vault` denies everything on
//!   `vault.*`; deny beats requireApproval beats allow, per (operation, relation) item;
//! - insert/update only on crm.orders, crm.customers, crm.invoice_no; insert/copyIn on crm.imports;
//!   merge and delete only on crm.orders; insert/update/delete/ddl on `scratch.*`;
//! - `bulk` holds update/delete without WHERE for approval, `truncate` holds every truncation;
//! - ddl on crm/public/vault, grant/role and DO are denied with their messages; set, transaction and
//!   utility are allowed; call and unknown are allowed by no rule (denied);
//! - `*.customers.email` and `*.customers.ssn` are masked: copying them into a table or setting is refused.

use super::{Case, Expect, Expect::*, case};

const VAULT: Expect = Deny("the vault schema is off limits");
const SCHEMA: Expect = Deny("agents may not change the schema");
const PRIVILEGES: Expect = Deny("agents may not change privileges");
const CODE: Expect = Deny("anonymous code blocks are not allowed");
const UNKNOWN: Expect = Deny("no AccessPolicy rule allows unknown");
const NO_DDL_RULE: Expect = Deny("no AccessPolicy rule allows ddl");
/// Any refusal by the sidecar that is neither an approval hold nor a masked-copy refusal.
const ANY_DENY: Expect = Deny("dbward");

fn allow(sql: &'static str) -> Case {
    case(sql, Allow)
}

fn server(sql: &'static str, code: &'static str) -> Case {
    case(sql, ServerError(code))
}

fn approval(sql: &'static str) -> Case {
    case(sql, Approval)
}

fn masked(sql: &'static str) -> Case {
    case(sql, Masked)
}

const CURSOR: &[&str] = &["declare c cursor for select * from crm.customers order by id"];
const VIEW_OF_EMAILS: &[&str] = &["create view scratch.vv as select id, email from crm.customers"];
const PREPARED: &[&str] = &["prepare q(int) as select * from crm.orders where id = $1"];

pub fn cases() -> Vec<Case> {
    vec![
        // ---- Reads ----
        allow("select 1").shows(&["1"]),
        allow("select now() > '2000-01-01'::timestamptz").shows(&["t"]),
        allow("select name from crm.customers where id = 1").shows(&["Ada"]),
        allow("select * from crm.customers order by id").shows(&["Ada", "****@example.com"]),
        allow("select email, ssn from crm.customers where id = 2").shows(&["@example.com"]),
        allow("select c.name, o.amount from crm.customers c join crm.orders o on o.customer_id = c.id")
            .shows(&["Cyd\t40.00"]),
        allow("select * from crm.customers c left join crm.orders o on o.customer_id = c.id"),
        // Filters are not flows: which rows match may be learnt from a masked column.
        allow("select count(*) from crm.customers where email like 'a%'").shows(&["1"]),
        allow("select (select max(amount) from crm.orders) as top, count(*) from crm.customers")
            .shows(&["40.00\t3"]),
        allow("select * from crm.orders where customer_id in (select id from crm.customers where tier = 'gold')"),
        allow("select * from crm.customer_directory order by id").shows(&["Ada"]),
        allow("select * from crm.order_totals"),
        allow("select * from crm.order_stats"),
        allow("values (1, 'a'), (2, 'b')").shows(&["b"]),
        allow("table crm.orders").shows(&["cancelled"]),
        allow("select upper(email) from crm.customers"),
        allow("select row_to_json(c) from crm.customers c"),
        allow("select string_agg(ssn, ',') from crm.customers"),
        allow("select * from public.customers where id = 1").shows(&["@example.com"]),
        allow("select count(*) from billing.invoices").shows(&["600"]),
        allow("select * from generate_series(1, 3)").shows(&["3"]),
        // Not a known built-in: its result cannot be traced, so it gets the strongest mask (fail closed).
        allow("select crm.order_count(1)").shows(&["****"]),
        allow("select current_user").shows(&["app"]),
        // The catalog is not the vault: its name may be looked up.
        allow("select nspname from pg_catalog.pg_namespace where nspname = 'vault'").shows(&["vault"]),
        allow("select * from crm.customers where id = 3 for update"),
        // Allowed, then refused by PostgreSQL: the server's error (its masked value scrubbed) comes back.
        // (Simple protocol only: through the extended protocol the error text carries the email in clear,
        // a sidecar bug reported separately.)
        server("select email::int from crm.customers", "22P02").simple_only(),
        server("select 1/0", "22012"),
        server("select * from crm.no_such_table", "42P01"),
        server("select nosuchcolumn from crm.orders", "42703"),
        // ---- The vault, however it is reached ----
        case("select * from vault.api_keys", VAULT),
        case("select count(*) from vault.api_keys", VAULT),
        case("select c.name from crm.customers c join vault.api_keys k on k.id = c.id", VAULT),
        case("with k as (select * from vault.api_keys) select count(*) from k", VAULT),
        case("select (select key from vault.api_keys limit 1)", VAULT),
        case("select * from crm.orders o where exists (select 1 from vault.api_keys k where k.id = o.id)", VAULT),
        case("select id from crm.orders union select id from vault.api_keys", VAULT),
        case("table vault.api_keys", VAULT),
        case("select * from VAULT.API_KEYS", VAULT),
        case(r#"select * from "vault"."api_keys""#, VAULT),
        case("select * from crm.customers c, lateral (select key from vault.api_keys k where k.id = c.id) x", VAULT),
        // A quoted upper-case schema is another schema (none here): not the vault, and not found.
        server(r#"select * from "VAULT"."api_keys""#, "42P01"),
        // Not on the search path: resolves to nothing, and PostgreSQL says so.
        server("select * from api_keys", "42P01"),
        // ---- Quoted identifiers, unqualified names and the search path ----
        allow(r#"select "Value" from crm."Mixed Case""#).shows(&["7"]),
        allow(r#"select * from "Mixed Case""#).shows(&["7"]),
        allow("select * from customers where id = 2").shows(&["Brook"]),
        allow("select name from products where id = 1"),
        allow(r#"select * from "crm"."customers" where id = 1"#).shows(&["Ada"]),
        case("select * from api_keys", VAULT).setup(&["set search_path = vault"]),
        // Whichever path the server uses, customers is readable (and masked).
        allow("select * from customers where id = 1").setup(&["set search_path = public"]),
        // orders may now be public.orders, where this caller may not delete.
        case("delete from orders where id = 1", Deny("no AccessPolicy rule allows delete on public.orders"))
            .setup(&["set search_path = public"]),
        // orders is crm.orders under both paths the session may be using.
        allow("delete from orders where id = 1").setup(&["set search_path = scratch, crm"]),
        // After set_config a name stands for that name in every schema, the vault's included.
        case("select * from api_keys", VAULT).setup(&["select set_config('search_path', 'crm', false)"]),
        // ---- INSERT ----
        allow("insert into crm.orders (customer_id, amount) values (1, 5)"),
        allow("insert into crm.orders (customer_id, amount) values (2, 7) returning id, status").shows(&["new"]),
        allow("insert into crm.customers (id, name, email, ssn) values (10, 'Zed', 'zed@example.com', '999-99-9999')"),
        allow(
            "insert into crm.customers (id, name, email) values (1, 'Ada L', 'ada2@example.com') \
             on conflict (id) do update set name = excluded.name",
        ),
        allow("insert into crm.orders (customer_id, amount) select id, 1 from crm.customers"),
        allow("insert into scratch.notes select id, name from crm.customers"),
        allow("insert into crm.imports values (1, 'x')").check("select count(*) from crm.imports", "1"),
        allow("insert into orders (customer_id, amount) values (3, 9)"),
        case(
            "insert into public.products (name, price) values ('Widget', 1)",
            Deny("no AccessPolicy rule allows insert on public.products"),
        ),
        case(
            "insert into order_items (order_id, product_id, quantity, unit_price) values (1, 1, 1, 1)",
            Deny("no AccessPolicy rule allows insert on public.order_items"),
        ),
        case(
            r#"insert into crm."Mixed Case" values (1)"#,
            Deny("no AccessPolicy rule allows insert on crm.Mixed Case"),
        ),
        case("insert into vault.api_keys values (3, 'aws', 'AKIA')", VAULT),
        case("insert into scratch.notes select id, key from vault.api_keys", VAULT),
        masked("insert into crm.orders (customer_id, amount, note) select id, 1, email from crm.customers"),
        masked("insert into scratch.notes select id, ssn from crm.customers"),
        masked("insert into scratch.notes select 1, upper(email) from crm.customer_directory"),
        masked("insert into crm.customers (id, name, email) select id + 100, name, email from crm.customers"),
        server("insert into crm.orders (customer_id, amount) values (99, 1)", "23503"),
        server("insert into crm.customers (id, name, email) values (1, 'dup', 'dup@example.com')", "23505"),
        // ---- UPDATE ----
        allow("update crm.orders set status = 'paid' where id = 1")
            .check("select status from crm.orders where id = 1", "paid"),
        approval("update crm.orders set status = 'paid'")
            .check("select count(*) from crm.orders where status = 'paid'", "1"),
        allow("update crm.customers set tier = 'gold' where id = 2"),
        approval("update crm.customers set tier = 'gold'"),
        // Writing a literal into a masked column copies nothing masked.
        allow("update crm.customers set email = 'new@example.com' where id = 1"),
        allow("update crm.orders set amount = amount * 2 where customer_id in (select id from crm.customers where tier = 'gold')"),
        allow("update crm.orders o set note = c.name from crm.customers c where c.id = o.customer_id"),
        allow("update orders set status = 'shipped' where id = 3"),
        allow("update scratch.notes set body = 'x' where id = 1"),
        // The bulk rule holds every update without WHERE, whatever else allows it.
        approval("update scratch.notes set body = 'x'"),
        masked("update crm.orders o set note = c.email from crm.customers c where c.id = o.customer_id"),
        masked("update crm.orders set note = (select ssn from crm.customers where id = 1) where id = 1"),
        masked("update crm.customers set name = email where id = 1"),
        case(
            "update public.products set price = 0 where id = 1",
            Deny("no AccessPolicy rule allows update on public.products"),
        ),
        // No rule allows updating products, but a matching requireApproval rule holds rather than denies.
        approval("update public.products set price = 0"),
        case("update vault.api_keys set key = 'x' where id = 1", VAULT),
        // Deny beats requireApproval.
        case("update vault.api_keys set key = 'x'", VAULT),
        case("update crm.orders o set note = k.key from vault.api_keys k where k.id = o.id", VAULT),
        // ---- DELETE ----
        allow("delete from crm.orders where id = 2").check("select count(*) from crm.orders where id = 2", "0"),
        approval("delete from crm.orders").check("select count(*) from crm.orders", "4"),
        case("delete from crm.customers where id = 3", Deny("no AccessPolicy rule allows delete on crm.customers"))
            .check("select count(*) from crm.customers where id = 3", "1"),
        approval("delete from crm.customers"),
        case("delete from vault.api_keys where id = 1", VAULT),
        case("delete from vault.api_keys", VAULT).check("select count(*) from vault.api_keys", "2"),
        allow("delete from crm.orders where id in (select id from crm.orders where status = 'cancelled')"),
        allow("delete from crm.orders o using crm.customers c where c.id = o.customer_id and c.tier = 'bronze'"),
        case("delete from crm.orders o using vault.api_keys k where k.id = o.id", VAULT),
        allow("delete from crm.orders where id = 2 returning *").shows(&["20.00"]),
        allow("delete from orders where status = 'cancelled'"),
        case("delete from products where id = 50", Deny("no AccessPolicy rule allows delete on public.products")),
        // ---- Data-modifying CTEs ----
        allow("with d as (delete from crm.orders where id = 1 returning *) select count(*) from d").shows(&["1"]),
        approval("with d as (delete from crm.orders returning *) select count(*) from d")
            .check("select count(*) from crm.orders", "4"),
        case(
            "with d as (delete from crm.customers where id = 2 returning id) select * from d",
            Deny("no AccessPolicy rule allows delete on crm.customers"),
        ),
        allow("with u as (update crm.orders set status = 'paid' where id = 3 returning id) select * from u")
            .shows(&["3"]),
        approval("with u as (update crm.orders set status = 'x' returning id) select count(*) from u"),
        case("with i as (insert into vault.api_keys values (5, 'x', 'y') returning id) select * from i", VAULT),
        masked("with x as (select id, email from crm.customers) insert into scratch.notes select id, email from x"),
        allow(
            "with src as (select id from crm.customers where tier = 'gold') \
             insert into crm.orders (customer_id, amount) select id, 1 from src",
        ),
        // ---- MERGE ----
        allow("merge into crm.orders o using (select 1 as id) s on o.id = s.id when matched then update set status = 'paid'")
            .check("select status from crm.orders where id = 1", "paid"),
        allow(
            "merge into crm.orders o using crm.customers c on o.customer_id = c.id \
             when matched then update set note = c.name when not matched then do nothing",
        ),
        case(
            "merge into crm.customers c using (select 1 as id) s on c.id = s.id when matched then delete",
            Deny("no AccessPolicy rule allows merge on crm.customers"),
        ),
        case(
            "merge into crm.orders o using vault.api_keys k on o.id = k.id when matched then update set status = 'paid'",
            VAULT,
        ),
        masked("merge into crm.orders o using crm.customers c on o.customer_id = c.id when matched then update set note = c.email"),
        // ---- EXPLAIN: plain EXPLAIN only plans (utility); ANALYZE runs the statement ----
        allow("explain select * from crm.customers"),
        allow("explain select * from vault.api_keys"),
        allow("explain delete from crm.customers"),
        allow("explain (analyze false) delete from crm.customers"),
        allow("explain delete from crm.orders where id = 4").check("select count(*) from crm.orders where id = 4", "1"),
        allow("explain analyze delete from crm.orders where id = 4")
            .check("select count(*) from crm.orders where id = 4", "0"),
        case(
            "explain analyze delete from crm.customers where id = 1",
            Deny("no AccessPolicy rule allows delete on crm.customers"),
        ),
        approval("explain (analyze, costs off) delete from crm.orders"),
        case("explain analyze select * from vault.api_keys", VAULT),
        // ---- SELECT INTO, CREATE TABLE AS, views ----
        allow("select id, name into scratch.names from crm.customers"),
        masked("select id, email into scratch.emails from crm.customers"),
        allow("create table scratch.names2 as select id, name from crm.customers"),
        masked("create table scratch.dump as select * from crm.customers"),
        case("create table scratch.keys as select * from vault.api_keys", VAULT),
        case("create table crm.copy as select id from crm.orders", SCHEMA),
        // A temporary table lives in the session's temporary schema, which no rule names.
        case("select id into temp tmp_ids from crm.orders", NO_DDL_RULE),
        allow("create view scratch.v_names as select id, name from crm.customers"),
        // A view copies nothing: reading it is masked through its definition.
        allow("create view scratch.v_emails as select id, email from crm.customers"),
        case("create view scratch.kv as select * from vault.api_keys", VAULT),
        masked("create materialized view scratch.mv as select id, email from crm.customers"),
        // EXPLAIN ANALYZE runs the INSERT, which copies a masked column.
        masked("explain analyze insert into scratch.notes select id, email from crm.customers"),
        // Objects created earlier in the same (uncommitted) transaction are unknown to the sidecar's catalog:
        // what flows out of them cannot be traced, so copying from them is refused.
        masked("create table scratch.t3 as select * from scratch.vv").setup(VIEW_OF_EMAILS),
        masked("insert into scratch.notes select * from scratch.vv").setup(VIEW_OF_EMAILS),
        masked("create view scratch.vv as select id, email from crm.customers; create table scratch.t3 as select * from scratch.vv")
            .simple_only(),
        masked("create table scratch.t2 (e text); insert into scratch.t2 select email from crm.customers").simple_only(),
        // ---- COPY ----
        allow("copy crm.orders to stdout").shows(&["cancelled"]),
        allow("copy crm.customers to stdout").shows(&["Ada", "@example.com"]),
        allow("copy (select id, email from crm.customers) to stdout with (format csv, header)").shows(&["@example.com"]),
        allow("copy crm.orders to stdout with (format binary)").shows(&["PGCOPY"]),
        case("copy crm.customers to stdout with (format binary)", Deny("binary format")),
        case("copy vault.api_keys to stdout", VAULT),
        case("copy (select key from vault.api_keys) to stdout", VAULT),
        // Server files and programs are outside anything the analysis sees.
        case("copy crm.orders to '/tmp/dbward-decisions-orders.txt'", UNKNOWN),
        case("copy crm.orders to program 'cat > /dev/null'", UNKNOWN),
        case("copy crm.imports from '/etc/hostname'", UNKNOWN),
        case("copy crm.imports from program 'id'", UNKNOWN),
        allow("copy crm.imports from stdin")
            .data("1\talpha\n2\tbeta\n")
            .check("select string_agg(payload, ',' order by id) from crm.imports", "alpha,beta"),
        allow("copy crm.imports (id, payload) from stdin with (format csv)").data("3,gamma\n"),
        case("copy crm.customers from stdin", Deny("no AccessPolicy rule allows copyIn on crm.customers")),
        case("copy vault.api_keys from stdin", VAULT),
        case("copy scratch.notes from stdin", Deny("no AccessPolicy rule allows copyIn on scratch.notes")),
        // ---- Functions with effects beyond their result ----
        case("select pg_read_file('/etc/hostname')", UNKNOWN),
        case("select pg_catalog.pg_read_file('/etc/hostname', 0, 10)", UNKNOWN),
        case("select pg_ls_dir('.')", UNKNOWN),
        case("select lo_import('/etc/hostname')", UNKNOWN),
        case("select lo_export(12345, '/tmp/dbward-lo')", UNKNOWN),
        case("select dblink('dbname=shop', 'select 1')", UNKNOWN),
        case("select dblink_exec('dbname=shop', 'delete from crm.customers')", UNKNOWN),
        case("select query_to_xml('select * from vault.api_keys', true, false, '')", UNKNOWN),
        case("select table_to_xml('vault.api_keys', true, false, '')", UNKNOWN),
        case("select * from ts_stat('select to_tsvector(key) from vault.api_keys')", UNKNOWN),
        // Session administration is `utility`, which this policy allows; PostgreSQL finds no backend 0.
        allow("select pg_terminate_backend(0)"),
        allow("select pg_cancel_backend(0)"),
        // Utility too, so the sidecar lets them through; PostgreSQL's own privilege check refuses them.
        server("select pg_reload_conf()", "42501"),
        server("select pg_stat_reset()", "42501"),
        // nextval/setval update the sequence they name.
        allow("select nextval('crm.invoice_no')"),
        allow("select setval('crm.invoice_no', 2000)"),
        allow("select nextval('invoice_no')"),
        case("select nextval('crm.orders_id_seq')", Deny("no AccessPolicy rule allows update on crm.orders_id_seq")),
        case("select nextval(s) from (values ('crm.invoice_no')) v(s)", UNKNOWN),
        server("select currval('crm.invoice_no')", "55000"),
        allow("select pg_notify('jobs', 'hello')"),
        case("select pg_notify(c, 'x') from (values ('jobs')) v(c)", UNKNOWN),
        allow("select set_config('application_name', 'corpus', false)"),
        allow("select set_config('search_path', 'vault', false)"),
        case("select set_config('role', 'postgres', false)", PRIVILEGES),
        case("select set_config('session_authorization', 'postgres', false)", PRIVILEGES),
        case("select set_config(n, 'x', false) from (values ('dbward.x')) v(n)", UNKNOWN),
        masked("select set_config('dbward.leak', email, false) from crm.customers where id = 1"),
        case("select set_config('dbward.leak', key, false) from vault.api_keys", VAULT),
        allow("select pg_sleep(0)"),
        // ---- PREPARE / EXECUTE / DEALLOCATE: judged by what is prepared ----
        allow("execute q(1)").setup(PREPARED).shows(&["10.00"]),
        allow("prepare p as select name from crm.customers"),
        approval("prepare d as delete from crm.orders"),
        case("prepare v as select * from vault.api_keys", VAULT),
        allow("prepare u(int) as update crm.orders set status = 'paid' where id = $1"),
        allow("execute u(2)").setup(&["prepare u(int) as update crm.orders set status = 'paid' where id = $1"]),
        allow("execute e").setup(&["prepare e as select email, ssn from crm.customers"]).shows(&["@example.com"]),
        // Not prepared through this sidecar: nothing says what it runs.
        case("execute never_prepared", UNKNOWN),
        allow("deallocate q").setup(PREPARED),
        allow("deallocate all").setup(PREPARED),
        // ---- Cursors: FETCH and MOVE are judged by what DECLARE holds ----
        allow("fetch 2 from c").setup(CURSOR).shows(&["Ada", "Brook"]),
        allow("move forward 1 in c").setup(CURSOR),
        allow("close c").setup(CURSOR),
        allow("close all").setup(CURSOR),
        allow("declare c2 cursor for select id from crm.orders"),
        allow("declare h cursor with hold for select id from crm.orders"),
        case("declare k cursor for select * from vault.api_keys", VAULT),
        case("fetch 1 from no_such_cursor", UNKNOWN),
        // ---- LISTEN / NOTIFY ----
        allow("listen jobs"),
        allow("unlisten jobs"),
        allow("unlisten *"),
        allow("notify jobs, 'payload'"),
        allow("notify jobs"),
        // ---- Settings ----
        allow("set statement_timeout = '5s'"),
        allow("set local work_mem = '8MB'"),
        allow("show search_path"),
        allow("reset all"),
        allow("set search_path to vault"),
        allow("set search_path to default"),
        allow("reset search_path"),
        allow("set time zone 'UTC'"),
        allow("set application_name = 'corpus'"),
        allow("set transaction isolation level serializable"),
        allow("set session characteristics as transaction read only"),
        case("set role postgres", PRIVILEGES),
        case("set role none", PRIVILEGES),
        case("reset role", PRIVILEGES),
        case("set session authorization postgres", PRIVILEGES),
        case("set session authorization default", PRIVILEGES),
        case("reset session authorization", PRIVILEGES),
        // ---- GRANT / REVOKE / roles ----
        case("grant select on crm.customers to public", PRIVILEGES),
        case("grant all on schema vault to app", PRIVILEGES),
        case("revoke all on vault.api_keys from public", PRIVILEGES),
        case("grant pg_read_server_files to app", PRIVILEGES),
        case("create role intruder login password 'x'", PRIVILEGES),
        case("create user intruder2", PRIVILEGES),
        case("alter role app superuser", PRIVILEGES),
        case("alter user app with password 'changed'", PRIVILEGES),
        case("drop role if exists intruder", PRIVILEGES),
        case("create group auditors", PRIVILEGES),
        case("alter default privileges in schema crm grant select on tables to public", ANY_DENY),
        case("reassign owned by app to postgres", ANY_DENY),
        case("drop owned by app", ANY_DENY),
        // ---- DDL ----
        case("alter table crm.customers add column notes text", SCHEMA),
        case("alter table customers add column notes text", SCHEMA),
        case("drop table crm.orders", SCHEMA),
        case("create index on crm.orders (amount)", SCHEMA),
        case("create view crm.v2 as select 1 as x", SCHEMA),
        case("comment on table crm.customers is 'people'", SCHEMA),
        case("comment on column crm.customers.email is 'contact'", SCHEMA),
        // ALTER VIEW ... RENAME is not parsed, so it is `unknown`; refused either way.
        case("alter view crm.customer_directory rename to directory", ANY_DENY),
        case("drop view crm.customer_directory", SCHEMA),
        case("create sequence crm.seq2", SCHEMA),
        case(r#"alter table "crm"."Mixed Case" add column y int"#, SCHEMA),
        case("drop table public.products", SCHEMA),
        case("create table public.t (x int)", SCHEMA),
        case("create trigger t before insert on crm.orders for each row execute function crm.nothing()", SCHEMA),
        // The vault rule comes first among the matching denials.
        case("drop table vault.api_keys", VAULT),
        allow("create table scratch.t (x int primary key)"),
        allow("create index on scratch.notes (body)"),
        allow("alter table scratch.notes add column extra int"),
        allow("alter table scratch.notes rename to notes_old"),
        allow("drop table scratch.notes"),
        allow("comment on table scratch.notes is 'scratch'"),
        allow("create sequence scratch.s1"),
        // Objects that are not relations: only a rule without tables could allow them, and none does.
        case("create schema reports", NO_DDL_RULE),
        case("drop schema scratch cascade", NO_DDL_RULE),
        case("create function scratch.f() returns int language sql as 'select 1'", NO_DDL_RULE),
        case("create type scratch.mood as enum ('ok')", NO_DDL_RULE),
        case("create extension if not exists dblink", NO_DDL_RULE),
        case("drop function crm.order_count(int)", NO_DDL_RULE),
        case("create database other", NO_DDL_RULE).bare(),
        case("create temp table tmp1 (x int)", NO_DDL_RULE),
        // Would be created in crm, the first schema of the path; refused either way.
        case("create table newtab (x int)", ANY_DENY),
        case("alter sequence crm.invoice_no restart with 1", ANY_DENY),
        case("drop index crm.orders_status_idx", ANY_DENY),
        // Recomputing a materialized view is maintenance (utility), not a schema change.
        allow("refresh materialized view crm.order_stats"),
        // ---- TRUNCATE ----
        approval("truncate crm.orders").check("select count(*) from crm.orders", "4"),
        approval("truncate scratch.notes"),
        approval("truncate orders"),
        case("truncate vault.api_keys", VAULT),
        // ---- Utility ----
        allow("vacuum crm.orders").bare(),
        server("vacuum crm.orders", "25001"),
        allow("analyze crm.orders"),
        allow("cluster crm.orders using orders_pkey"),
        allow("reindex table crm.orders"),
        allow("lock table crm.orders in share mode"),
        allow("discard all").bare(),
        allow("discard temp"),
        server("checkpoint", "42501"),
        // ---- CALL and DO ----
        case("call crm.bump(1)", Deny("no AccessPolicy rule allows call")),
        case("do $$ begin perform 1; end $$", CODE),
        case("do language plpgsql $$ begin delete from crm.customers; end $$", CODE),
        // ---- Transactions ----
        allow("begin").bare(),
        allow("start transaction isolation level repeatable read").bare(),
        allow("commit").bare(),
        allow("rollback").bare(),
        allow("savepoint s1"),
        allow("release savepoint s1").setup(&["savepoint s1"]),
        allow("rollback to savepoint s1").setup(&["savepoint s1"]),
        server("prepare transaction 'dbward-x'", "55000"),
        server("commit prepared 'nothing'", "42704").bare(),
        allow("begin; update crm.orders set status = 'paid' where id = 1; commit")
            .simple_only()
            .check("select status from crm.orders where id = 1", "paid"),
        case(
            "begin; delete from crm.customers where id = 1; commit",
            Deny("no AccessPolicy rule allows delete on crm.customers"),
        )
        .simple_only()
        .check("select count(*) from crm.customers where id = 1", "1"),
        allow(
            "begin; savepoint a; insert into crm.orders (customer_id, amount) values (1, 1); \
             rollback to savepoint a; release savepoint a; commit",
        )
        .simple_only()
        .check("select count(*) from crm.orders", "4"),
        // ---- Multi-statement strings: one refused statement refuses the string ----
        allow("select 1; select 2").simple_only().shows(&["1", "2"]),
        allow("analyze crm.orders; select count(*) from crm.orders").simple_only(),
        allow(
            "insert into crm.orders (customer_id, amount) values (1, 1); \
             update crm.orders set status = 'paid' where id = 1; select count(*) from crm.orders",
        )
        .simple_only(),
        case("select 1; delete from crm.customers where id = 1", Deny("no AccessPolicy rule allows delete on crm.customers"))
            .simple_only()
            .check("select count(*) from crm.customers where id = 1", "1"),
        approval("update crm.orders set status = 'paid' where id = 1; delete from crm.orders")
            .simple_only()
            .check("select status from crm.orders where id = 1", "new"),
        case("insert into crm.orders (customer_id, amount) values (1, 1); select * from vault.api_keys", VAULT)
            .simple_only()
            .check("select count(*) from crm.orders", "4"),
        approval("delete from crm.orders where id = 2; truncate crm.orders")
            .simple_only()
            .check("select count(*) from crm.orders where id = 2", "1"),
        case("select 1; selec 2", UNKNOWN).simple_only(),
        case("set role postgres; select 1", PRIVILEGES).simple_only(),
        case("select 1; drop table crm.orders", SCHEMA).simple_only(),
        case("select 1; do $$ begin null; end $$", CODE).simple_only(),
        masked("select 1; insert into scratch.notes select id, email from crm.customers").simple_only(),
        case("declare k cursor for select key from vault.api_keys; fetch all from k", VAULT).simple_only(),
        // ---- Unparseable or unclassifiable text ----
        case("selec 1", UNKNOWN),
        case("select * from", UNKNOWN),
        case("hello world", UNKNOWN),
        case("select 'unterminated", UNKNOWN),
        case("select 1 +", UNKNOWN),
        case("security label on table crm.customers is 'x'", UNKNOWN),
        case("import foreign schema public from server s into scratch", UNKNOWN),
    ]
}
