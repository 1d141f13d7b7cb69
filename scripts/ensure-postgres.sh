#!/usr/bin/env bash
# Make sure the PostgreSQL tools dbward's tests and benchmarks use are installed:
# a PostgreSQL server (initdb, postgres, pg_ctl under /usr/lib/postgresql/*/bin), psql, pgbench and
# pgbouncer, plus an unprivileged `postgres` OS user (the server refuses to run as root). Also iptables
# (its nft and legacy backends), which the egress-lock tests (sidecar/tests/egress_lock.rs) drive.
#
# Idempotent and quiet when everything is already there. Installs Debian's packages with apt-get
# when something is missing (needs root), and stops the default cluster Debian's package starts,
# so only the test harness's own throwaway servers run.
#
# Usage: scripts/ensure-postgres.sh [--print-bindir]
#   --print-bindir  print the server's bin directory (highest installed version) at the end
set -euo pipefail

print_bindir=false
for arg in "$@"; do
    case "$arg" in
        --print-bindir) print_bindir=true ;;
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "ensure-postgres.sh: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

# The server's bin directory: $DBWARD_PG_BINDIR if set, else the highest /usr/lib/postgresql/N/bin
# holding initdb, postgres and pg_ctl. Prints nothing when there is none.
find_bindir() {
    if [[ -n "${DBWARD_PG_BINDIR:-}" ]]; then
        if [[ -x "$DBWARD_PG_BINDIR/initdb" && -x "$DBWARD_PG_BINDIR/postgres" && -x "$DBWARD_PG_BINDIR/pg_ctl" ]]; then
            echo "$DBWARD_PG_BINDIR"
        fi
        return 0
    fi
    local dir best="" best_version=-1 version
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" && -x "$dir/postgres" && -x "$dir/pg_ctl" ]] || continue
        version="$(basename "$(dirname "$dir")")"
        version="${version%%.*}"
        [[ "$version" =~ ^[0-9]+$ ]] || continue
        if ((version > best_version)); then
            best_version=$version
            best=$dir
        fi
    done
    [[ -n "$best" ]] && echo "$best"
    return 0
}

if [[ -n "${DBWARD_PG_BINDIR:-}" && -z "$(find_bindir)" ]]; then
    echo "ensure-postgres.sh: DBWARD_PG_BINDIR=$DBWARD_PG_BINDIR has no initdb, postgres and pg_ctl;" \
        "point it at a PostgreSQL server's bin directory or unset it" >&2
    exit 1
fi

missing=()
[[ -n "$(find_bindir)" ]] || missing+=("postgresql server")
command -v psql >/dev/null 2>&1 || missing+=(psql)
command -v pgbench >/dev/null 2>&1 || missing+=(pgbench)
command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
# Debian's iptables package carries both backends, iptables-nft and iptables-legacy.
command -v iptables-legacy >/dev/null 2>&1 || [[ -x /usr/sbin/iptables-legacy ]] || missing+=(iptables)

if ((${#missing[@]} > 0)); then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "ensure-postgres.sh: missing ${missing[*]}; run this script as root (or with sudo) to install them" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-postgres.sh: missing ${missing[*]} and apt-get is not available;" \
            "install PostgreSQL (server, client, contrib), pgbouncer and iptables by hand, or set DBWARD_PG_BINDIR" >&2
        exit 1
    fi
    echo "ensure-postgres.sh: installing PostgreSQL, pgbouncer and iptables (missing: ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends \
        postgresql postgresql-contrib postgresql-client pgbouncer iptables >/dev/null

    # Debian's package creates and starts a default cluster (and pgbouncer's service); the tests
    # start their own servers, so stop these. Tolerate machines without systemd or clusters.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header 2>/dev/null | while read -r ver name _; do
            [[ -n "$ver" && -n "$name" ]] || continue
            pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
        done
    fi
    service postgresql stop >/dev/null 2>&1 || true
    service pgbouncer stop >/dev/null 2>&1 || true
fi

# The server refuses to run as root; the harness runs it as this user when tests run as root.
if ! id -u postgres >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "ensure-postgres.sh: no 'postgres' OS user; run this script as root to create it" >&2
        exit 1
    fi
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash \
        --comment "PostgreSQL administrator" postgres
fi

bindir="$(find_bindir)"
if [[ -z "$bindir" ]]; then
    echo "ensure-postgres.sh: PostgreSQL server still not found under /usr/lib/postgresql/*/bin after installing" >&2
    exit 1
fi
for tool in psql pgbench; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "ensure-postgres.sh: $tool still not found on PATH after installing" >&2
        exit 1
    fi
done

if $print_bindir; then
    echo "$bindir"
fi
