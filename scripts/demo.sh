#!/usr/bin/env bash
# The README's demo: a throwaway PostgreSQL with the sample shop, dbward-sidecar in front of it with
# examples/demo/dbward.yaml, and what to type to see it work.
#
# Usage: scripts/demo.sh            start everything, print what to type, run until Ctrl-C
#        scripts/demo.sh --smoke    start everything, run the demo's commands, check them, stop
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-interactive}"
case "$mode" in interactive | --smoke) ;; *) echo "usage: $0 [--smoke]" >&2; exit 2 ;; esac

"$here/scripts/ensure-postgres.sh"
bindir="$("$here/scripts/ensure-postgres.sh" --print-bindir)"

echo "building dbward-sidecar..." >&2
cargo build --quiet -p dbward-sidecar --manifest-path "$here/Cargo.toml"
sidecar="${CARGO_TARGET_DIR:-$here/target}/debug/dbward-sidecar"

work="$(mktemp -d /tmp/dbward-demo.XXXXXX)"
pg_pid="" sidecar_pid=""
cleanup() {
    [[ -n "$sidecar_pid" ]] && kill "$sidecar_pid" 2>/dev/null && wait "$sidecar_pid" 2>/dev/null
    if [[ -n "$pg_pid" ]]; then
        as_pg "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[[ "$(id -u)" == 0 ]] && chown postgres "$work"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pg_port="$(free_port)"
app_password="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

echo "starting a throwaway PostgreSQL on 127.0.0.1:$pg_port ($work)..." >&2
as_pg "$bindir/initdb" -D "$work/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work -c fsync=off" start >/dev/null
pg_pid=started
psql_admin() { as_pg psql -X -q -h "$work" -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
psql_admin -d postgres -c "create role app login password '$app_password'" -c "create database shop owner app"
PGPASSWORD="$app_password" psql -X -q -h 127.0.0.1 -p "$pg_port" -U app -d shop -v ON_ERROR_STOP=1 \
    -f "$here/examples/demo/schema.sql" >/dev/null

sed "s/port: 54329 /port: $pg_port /" "$here/examples/demo/dbward.yaml" >"$work/dbward.yaml"
export DBWARD_SECRET_SHOP_DB_USERNAME=app DBWARD_SECRET_SHOP_DB_PASSWORD="$app_password"
"$sidecar" run --config "$work/dbward.yaml" --identity demo/agent --pod demo-agent-0 2>"$work/sidecar.log" &
sidecar_pid=$!
for _ in $(seq 100); do
    grep -q '"ready"\|ready' "$work/sidecar.log" 2>/dev/null && break
    kill -0 "$sidecar_pid" 2>/dev/null || { cat "$work/sidecar.log" >&2; exit 1; }
    sleep 0.1
done
unset DBWARD_SECRET_SHOP_DB_USERNAME DBWARD_SECRET_SHOP_DB_PASSWORD

connect='host=127.0.0.1 port=15432 dbname=orders user=agent'

if [[ "$mode" == --smoke ]]; then
    out="$(psql -X -At "$connect" -c 'select current_user, count(*) from customers')"
    [[ "$out" == "app|300" ]] || { echo "demo smoke: unexpected answer: $out" >&2; exit 1; }
    # Masking: the e-mail keeps its domain, the card its last four digits, the SSN is redacted.
    out="$(psql -X -At "$connect" -c "select email, card_number, ssn from customers where id = 1")"
    [[ "$out" == "****@example.com|************0016|****" ]] || { echo "demo smoke: not masked: $out" >&2; exit 1; }
    out="$(psql -X -At "$connect" -c "select upper(email) from customer_contacts order by 1 limit 1")"
    [[ "$out" != *CUSTOMER* ]] || { echo "demo smoke: a derived column leaked: $out" >&2; exit 1; }
    # Blocking: DROP is refused with the policy's message, and the table is still there.
    if psql -X -At "$connect" -c "drop table customers" 2>"$work/err"; then
        echo "demo smoke: DROP TABLE was not refused" >&2; exit 1
    fi
    grep -q 'agents may not change the schema' "$work/err" || { cat "$work/err" >&2; exit 1; }
    # Approval: a DELETE without WHERE waits for a person; denied, it fails and nothing is deleted.
    held_request() {
        local name=""
        for _ in $(seq 100); do
            name="$(find "$work/approvals" -name '*.yaml' 2>/dev/null | head -1)"
            [[ -n "$name" ]] && { basename "$name" .yaml; return; }
            sleep 0.1
        done
        echo "demo smoke: no approval request appeared" >&2; exit 1
    }
    psql -X -At "$connect" -c "delete from orders" >"$work/out" 2>"$work/err" &
    psql_pid=$!
    name="$(held_request)"
    "$sidecar" deny "$name" --config "$work/dbward.yaml" --reason "not in the demo" >/dev/null
    if wait "$psql_pid"; then
        echo "demo smoke: DELETE without WHERE was not held" >&2; exit 1
    fi
    grep -q 'held for approval' "$work/err" || { cat "$work/err" >&2; exit 1; }
    grep -q 'not in the demo' "$work/err" || { cat "$work/err" >&2; exit 1; }
    # Approved, the held statement runs as if nothing happened.
    rm "$work/approvals/$name.yaml"
    psql -X -At "$connect" -c "update orders set id = id" >"$work/out" 2>"$work/err" &
    psql_pid=$!
    name="$(held_request)"
    "$sidecar" approve "$name" --config "$work/dbward.yaml" >/dev/null
    wait "$psql_pid" || { cat "$work/err" >&2; exit 1; }
    out="$(psql -X -At "$connect" -c 'select count(*) from orders')"
    [[ "$out" == "1000" ]] || { echo "demo smoke: orders changed: $out" >&2; exit 1; }
    if psql -X -At "host=127.0.0.1 port=15432 dbname=postgres user=agent" -c 'select 1' 2>"$work/err"; then
        echo "demo smoke: a wrong database name was accepted" >&2; exit 1
    fi
    grep -q 'is not served on this port' "$work/err" || { cat "$work/err" >&2; exit 1; }
    grep -q 'session started' "$work/sidecar.log" || { cat "$work/sidecar.log" >&2; exit 1; }
    if grep -q "$app_password" "$work/sidecar.log"; then
        echo "demo smoke: the password appears in the sidecar's log" >&2; exit 1
    fi
    # Recording: every session is in the journal; replay shows the refused DROP and the denied DELETE.
    "$sidecar" replay "$work/journal" >"$work/sessions" || { cat "$work/sessions" >&2; exit 1; }
    grep -q 'system:serviceaccount:demo:agent' "$work/sessions" || { cat "$work/sessions" >&2; exit 1; }
    session="$(grep -l 'drop table customers' "$work"/journal/*.jsonl >/dev/null && \
        grep -h '"text":"drop table customers"' "$work"/journal/*.jsonl | head -1 | sed 's/.*"session":"\([0-9a-f]*\)".*/\1/')"
    "$sidecar" replay "$work/journal" --session "$session" >"$work/transcript"
    grep -q 'DENY  drop table customers' "$work/transcript" || { cat "$work/transcript" >&2; exit 1; }
    grep -q '"stage":"denied"' "$work"/journal/*.jsonl || { echo "demo smoke: the denial is not on record" >&2; exit 1; }
    if grep -q "$app_password" "$work"/journal/*.jsonl; then
        echo "demo smoke: the password appears in the journal" >&2; exit 1
    fi
    echo "demo smoke: ok"
    exit 0
fi

cat <<TXT

  dbward demo is running.

  PostgreSQL (throwaway, sample shop data):  127.0.0.1:$pg_port  (only the sidecar knows the password)
  dbward-sidecar for connection "orders":    127.0.0.1:15432     (log: $work/sidecar.log)

  In another terminal:

    psql "$connect"

  No password: the sidecar holds the credential and the caller is the pod's identity (demo/agent).
  Then try:

    select current_user, count(*) from customers;   -- runs as the sidecar's credential ("app")
    select full_name, email, card_number, ssn from customers limit 3;      -- masked
    select upper(email), row_to_json(c) from customers c limit 1;         -- no way around it
    drop table customers;                            -- refused: agents may not change the schema
    delete from orders;                              -- held: waits for a person's approval
    \\c "host=127.0.0.1 port=15432 dbname=postgres user=agent"   -- refused: not this port's database

  The policy is $work/dbward.yaml (from examples/demo); edit it while the demo runs and the next statement follows
  the new version.

  The DELETE waits on its connection; psql shows the request's name. Decide it from a third terminal:

    $sidecar approvals --config $work/dbward.yaml
    $sidecar deny NAME --config $work/dbward.yaml --reason "not today"     # or: approve NAME

  Every session is recorded (statements, decisions, approvals, results; never parameters or row values):

    $sidecar replay $work/journal                       # the sessions
    $sidecar replay $work/journal --session ID          # one, as a transcript

  Ctrl-C stops everything and removes the throwaway database.
TXT
wait "$sidecar_pid"
