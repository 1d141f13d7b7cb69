#!/usr/bin/env python3
"""dbward-sidecar's benchmark: the sidecar against PostgreSQL directly and against PgBouncer.

Starts a throwaway PostgreSQL, a dbward-sidecar and a PgBouncer (session pooling) in front of it, and
measures, all in one run:

* pgbench select-only (-S) at 1, 8 and 32 clients in the simple, extended and prepared protocols, the
  three targets interleaved with their order rotating each round: median TPS, p50/p99 latency from
  pgbench's per-transaction logs, and the CPU each proxy process spent per transaction;
* the time to stream 1M rows of ~100 bytes with COPY TO STDOUT and with a plain SELECT (psql);
* the sidecar's RSS per idle connection, with 500 connections open;
* the sidecar's time from spawn to accepting connections.

Prints tables with the targets from the issue marked (informational only) and writes the same data to
target/bench/results.json. Benchmarks are not tests: nothing fails on a missed target.

Environment: BENCH_SECONDS (per pgbench run, default 8), BENCH_ROUNDS (default 3), BENCH_SCALE
(pgbench scale, default 10), BENCH_QUICK=1 (2 s, 1 round), BENCH_SIDECAR_ARGS (more `run` options, e.g. "--journal none"
to measure the journal's cost), BENCH_SIDECAR (binary; default
target/release/dbward-sidecar), DBWARD_PG_BINDIR (PostgreSQL's server binaries).
Python 3.11, standard library only; run as root (servers then run as the `postgres` OS user) or as an
ordinary user.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("direct", "sidecar", "pgbouncer")
PROXIES = ("sidecar", "pgbouncer")
MODES = ("simple", "extended", "prepared")
CLIENTS = (1, 8, 32)
PGBOUNCER = "/usr/sbin/pgbouncer"
USER = "bench"
DATABASE = "bench"


@dataclass
class Settings:
    """What to run, from the environment."""

    seconds: int
    rounds: int
    scale: int
    quick: bool
    stream_rounds: int
    startup_repeats: int
    stream_rows: int = 1_000_000
    idle_connections: int = 500

    @staticmethod
    def from_env() -> Settings:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        rounds = int(os.environ.get("BENCH_ROUNDS", 1 if quick else 3))
        return Settings(
            seconds=int(os.environ.get("BENCH_SECONDS", 2 if quick else 8)),
            rounds=rounds,
            scale=int(os.environ.get("BENCH_SCALE", 10)),
            quick=quick,
            stream_rounds=rounds if quick else max(rounds, 5),
            startup_repeats=3 if quick else 7,
        )


@dataclass
class Endpoint:
    """One way to reach the database: its port, the process to measure, and the client's env."""

    name: str
    port: int
    pid: int | None
    password: str | None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=USER, PGDATABASE=DATABASE,
                   PGSSLMODE="disable", PGGSSENCMODE="disable", PGCONNECT_TIMEOUT="10")
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


@dataclass
class Stack:
    """The processes and directory this run made; `close` ends them all, whatever state they are in."""

    tmp: Path
    account: str | None
    procs: list[tuple[subprocess.Popen, int]] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], as_server: bool = False,
              stop_signal: int = signal.SIGTERM) -> subprocess.Popen:
        """Starts `argv` in its own session (Ctrl-C reaches only us), stderr+stdout to tmp/NAME.log."""
        log = open(self.tmp / f"{name}.log", "ab")
        user = self.account if as_server else None
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, user=user, group=user,
                                extra_groups=[] if user else None)
        log.close()
        self.procs.append((proc, stop_signal))
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        """Stops one process and waits for it (SIGKILL after 10 s)."""
        for i, (p, sig) in enumerate(self.procs):
            if p is proc:
                del self.procs[i]
                terminate(p, sig)
                return

    def close(self) -> None:
        for proc, sig in reversed(self.procs):
            terminate(proc, sig)
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def terminate(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(stack: Stack, name: str, lines: int = 20) -> str:
    path = stack.tmp / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Runs a command to completion; on failure raises with its output and what we were doing."""
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(argv[:3])} ... exit {res.returncode}):\n"
                           f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res


# --- /proc ---------------------------------------------------------------------------------------

def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- the servers ---------------------------------------------------------------------------------

def start_postgres(stack: Stack, bindir: Path, password: str) -> int:
    """initdb, start with fsync off and 600 connections, create role and database `bench`."""
    data = stack.tmp / "data"
    acct = stack.account
    run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-N", "-E", "UTF8",
         "--auth-local=trust", "--auth-host=scram-sha-256"], "initdb", user=acct, group=acct,
        extra_groups=[] if acct else None)
    port = free_port()
    settings = {"port": port, "listen_addresses": "127.0.0.1", "unix_socket_directories": stack.tmp,
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "max_connections": 600, "shared_buffers": "256MB", "logging_collector": "off"}
    argv = [str(bindir / "postgres"), "-D", str(data)]
    for k, v in settings.items():
        argv += ["-c", f"{k}={v}"]
    proc = stack.spawn("postgres", argv, as_server=True, stop_signal=signal.SIGINT)
    deadline = time.monotonic() + 60
    while subprocess.run(psql_admin(stack, port, "select 1"), capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start:\n{log_tail(stack, 'postgres')}")
        time.sleep(0.1)
    run(psql_admin(stack, port, f"create role {USER} login password '{password}'"), "create role")
    run(psql_admin(stack, port, f"create database {DATABASE} owner {USER}"), "create database")
    return port


def psql_admin(stack: Stack, port: int, *sql: str, db: str = "postgres", user: str = "postgres") -> list[str]:
    """A psql command over the unix socket (trusted) running each of `sql` (one transaction each)."""
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(stack.tmp), "-p", str(port),
            "-U", user, "-d", db]
    for stmt in sql:
        argv += ["-c", stmt]
    return argv


def load_data(stack: Stack, port: int, s: Settings) -> None:
    """pgbench's tables at scale s.scale and a `stream` table of s.stream_rows rows of ~100 bytes."""
    run(["pgbench", "-i", "-q", "-s", str(s.scale), "-h", str(stack.tmp), "-p", str(port), "-U", USER,
         DATABASE], "pgbench -i")
    create = (f"create table stream as select g as id, repeat(md5(g::text), 2) as payload, "
              f"'user' || g || '@example.com' as email, md5((g * 7)::text) as note "
              f"from generate_series(1, {s.stream_rows}) g")
    run(psql_admin(stack, port, create, "vacuum (freeze, analyze) stream", db=DATABASE, user=USER),
        "creating the stream table")


def sidecar_binary() -> Path:
    if os.environ.get("BENCH_SIDECAR"):
        return Path(os.environ["BENCH_SIDECAR"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "dbward-sidecar"


def write_sidecar_config(stack: Stack, pg_port: int, password: str, local_port: int) -> Path:
    path = stack.tmp / f"sidecar-{local_port}.yaml"
    path.write_text(f"""apiVersion: dbward.dev/v1alpha1
kind: DatabaseConnection
metadata: {{name: {DATABASE}}}
spec:
  host: 127.0.0.1
  port: {pg_port}
  database: {DATABASE}
  localPort: {local_port}
  credentialsSecretRef: {{name: bench-db}}
  tls: {{mode: disable}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bench-db}}
stringData: {{username: {USER}, password: "{password}"}}
---
{POLICY}
""")
    return path


# A realistic policy for the caller the benchmark runs as: ten rules, five masked columns (one of them
# in the stream table, none in the columns pgbench reads). Every statement is judged by it.
POLICY = f"""apiVersion: dbward.dev/v1alpha1
kind: AccessPolicy
metadata: {{name: bench}}
spec:
  connections: [{DATABASE}]
  subjects: [{{serviceAccount: {{name: runner, namespace: bench}}}}]
  rules:
    - {{name: reads, action: allow, operations: [select, copyOut]}}
    - {{name: writes, action: allow, operations: [insert, update, delete], tables: ["pgbench_*"]}}
    - {{name: sessions, action: allow, operations: [set, transaction]}}
    - {{name: utility, action: allow, operations: [utility]}}
    - {{name: no-ddl, action: deny, operations: [ddl], message: "no schema changes"}}
    - {{name: no-truncate, action: deny, operations: [truncate]}}
    - {{name: no-roles, action: deny, operations: [grant, role]}}
    - {{name: no-code, action: deny, operations: [do, call]}}
    - {{name: bulk, action: requireApproval, operations: [update, delete], when: {{missingWhere: true}}}}
    - {{name: no-secrets, action: deny, operations: [select], tables: ["pg_authid", "pg_shadow"]}}
  masking:
    - {{columns: ["public.stream.email"], strategy: email}}
    - {{columns: ["public.pgbench_accounts.filler"], strategy: redact}}
    - {{columns: ["public.pgbench_history.filler"], strategy: redact}}
    - {{columns: ["public.pgbench_tellers.filler"], strategy: hash}}
    - {{columns: ["public.pgbench_branches.filler"], strategy: partial, keepLast: 2}}
"""


def sidecar_argv(config: Path) -> list[str]:
    extra = os.environ.get("BENCH_SIDECAR_ARGS", "").split()
    return [str(sidecar_binary()), "run", "--config", str(config), "--listen", "127.0.0.1",
            "--shutdown-grace", "1s", "--identity", "bench/runner", *extra]


def wait_accepting(port: int, proc: subprocess.Popen, timeout: float = 10) -> float:
    """Polls until a TCP connect to `port` succeeds; returns when (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return time.perf_counter()
        except OSError:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"nothing accepts connections on port {port}") from None
            time.sleep(0.0005)


def start_sidecar(stack: Stack, pg_port: int, password: str,
                  name: str = "sidecar") -> tuple[subprocess.Popen, int]:
    """Starts dbward-sidecar for database `bench` and waits until it logs "ready" and accepts."""
    port = free_port()
    proc = stack.spawn(name, sidecar_argv(write_sidecar_config(stack, pg_port, password, port)))
    deadline = time.monotonic() + 30
    while "ready" not in log_tail(stack, name, 200):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dbward-sidecar did not get ready:\n{log_tail(stack, name)}")
        time.sleep(0.02)
    wait_accepting(port, proc)
    return proc, port


def start_pgbouncer(stack: Stack, pg_port: int, password: str) -> tuple[subprocess.Popen, int]:
    """PgBouncer in session pooling, SCRAM from its clients, enough server connections for everyone."""
    port = free_port()
    (stack.tmp / "userlist.txt").write_text(f'"{USER}" "{password}"\n')
    ini = stack.tmp / "pgbouncer.ini"
    ini.write_text(f"""[databases]
{DATABASE} = host=127.0.0.1 port={pg_port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {stack.tmp / "userlist.txt"}
pool_mode = session
default_pool_size = 64
max_client_conn = 1000
max_db_connections = 0
server_tls_sslmode = disable
client_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
""")
    proc = stack.spawn("pgbouncer", [PGBOUNCER, str(ini)], as_server=True)
    wait_accepting(port, proc)
    return proc, port


# --- pgbench -------------------------------------------------------------------------------------

def percentile(sorted_values: list[int], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    return float(sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)])


def pgbench(ep: Endpoint, clients: int, mode: str, seconds: int, logdir: Path) -> dict:
    """One pgbench -S run: TPS, p50/p99 latency (µs, from the -l log) and proxy CPU µs per txn."""
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    argv = ["pgbench", "-n", "-S", "-M", mode, "-c", str(clients), "-j", str(1 if clients == 1 else 2),
            "-T", str(seconds), "-l", f"--log-prefix={logdir}/txn"]
    cpu0 = cpu_seconds(ep.pid)
    out = run(argv, f"pgbench against {ep.name} ({clients} clients, {mode})", env=ep.env()).stdout
    cpu = cpu_seconds(ep.pid) - cpu0
    fields = {}
    for line in out.splitlines():
        if line.startswith("number of transactions actually processed:"):
            fields["txns"] = int(line.split(":")[1].split("/")[0])
        elif line.startswith("tps ="):
            fields["tps"] = float(line.split()[2])
    latencies = []
    for path in logdir.iterdir():
        with open(path) as f:
            for line in f:
                col = line.split(maxsplit=3)[2]
                if col.isdigit():
                    latencies.append(int(col))
    shutil.rmtree(logdir, ignore_errors=True)
    latencies.sort()
    return {"tps": fields["tps"], "txns": fields["txns"], "p50_us": percentile(latencies, 0.5),
            "p99_us": percentile(latencies, 0.99),
            "cpu_us_per_txn": cpu * 1e6 / fields["txns"] if ep.pid else None}


def bench_pgbench(s: Settings, eps: dict[str, Endpoint], tmp: Path) -> list[dict]:
    """All cells, all rounds; the order of the targets rotates each round. Returns every run."""
    runs = []
    total = s.rounds * len(CLIENTS) * len(MODES) * len(TARGETS)
    for ep in eps.values():  # warm up: server connections, caches
        pgbench(ep, 32, "simple", 1, tmp / "pgbench")
    for rnd in range(s.rounds):
        order = TARGETS[rnd % 3:] + TARGETS[:rnd % 3]
        for clients in CLIENTS:
            for mode in MODES:
                for name in order:
                    r = pgbench(eps[name], clients, mode, s.seconds, tmp / "pgbench")
                    runs.append({"round": rnd, "clients": clients, "mode": mode, "target": name, **r})
                    progress(f"pgbench {len(runs)}/{total}: round {rnd + 1} {clients:>2} clients "
                             f"{mode:<8} {name:<9} {r['tps']:>9.0f} tps")
    return runs


def summarize_pgbench(runs: list[dict]) -> list[dict]:
    """Per (clients, mode, target): medians over the rounds."""
    cells = []
    for clients in CLIENTS:
        for mode in MODES:
            for name in TARGETS:
                rs = [r for r in runs if (r["clients"], r["mode"], r["target"]) == (clients, mode, name)]
                cell = {"clients": clients, "mode": mode, "target": name, "rounds": len(rs)}
                for k in ("tps", "p50_us", "p99_us", "cpu_us_per_txn"):
                    vals = [r[k] for r in rs if r[k] is not None]
                    cell[k] = statistics.median(vals) if vals else None
                cells.append(cell)
    return cells


# --- streaming, idle connections, startup --------------------------------------------------------

STREAM_QUERIES = {
    "copy": ["-c", "COPY (SELECT id, payload FROM stream) TO STDOUT"],
    "select": ["-A", "-t", "-o", "/dev/null", "-c", "SELECT id, payload FROM stream"],
    # Four columns, one masked by the sidecar's policy (the others pass as they are).
    "masked": ["-A", "-t", "-o", "/dev/null", "-c", "SELECT id, payload, email, note FROM stream"],
}


def bench_stream(s: Settings, eps: dict[str, Endpoint]) -> dict:
    """Wall time (and proxy CPU) of psql streaming the stream table, median over rounds."""
    times: dict[str, dict[str, list]] = {k: {t: [] for t in TARGETS} for k in STREAM_QUERIES}
    cpus: dict[str, dict[str, list]] = {k: {t: [] for t in TARGETS} for k in STREAM_QUERIES}
    for rnd in range(s.stream_rounds):
        order = TARGETS[rnd % 3:] + TARGETS[:rnd % 3]
        for kind, args in STREAM_QUERIES.items():
            for name in order:
                ep = eps[name]
                cpu0, t0 = cpu_seconds(ep.pid), time.perf_counter()
                subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args], env=ep.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
                times[kind][name].append(time.perf_counter() - t0)
                cpus[kind][name].append(cpu_seconds(ep.pid) - cpu0)
                progress(f"stream {kind:<6} {name:<9} {times[kind][name][-1]:.2f} s")
    return {kind: {name: {"seconds": statistics.median(times[kind][name]),
                          "proxy_cpu_seconds": statistics.median(cpus[kind][name]) if eps[name].pid else None,
                          "all_seconds": times[kind][name]}
                   for name in TARGETS} for kind in STREAM_QUERIES}


def startup_message() -> bytes:
    """Protocol 3.0 StartupMessage for user/database `bench`."""
    body = struct.pack("!i", 196608)
    for k, v in (("user", USER), ("database", DATABASE), ("application_name", "idle")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def open_idle(port: int) -> socket.socket:
    """Connects without a password and reads until ReadyForQuery; the connection then sits idle."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(startup_message())
    buf = b""
    while True:
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!i", buf[1:5])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed during startup")
            buf += chunk
        n = 1 + struct.unpack("!i", buf[1:5])[0]
        tag, body, buf = buf[0:1], buf[5:n], buf[n:]
        if tag == b"E":
            raise RuntimeError(f"startup refused: {body!r}")
        if tag == b"R" and body[:4] != b"\0\0\0\0":
            raise RuntimeError("the proxy asked for a password")
        if tag == b"Z":
            return sock


def bench_idle_rss(s: Settings, stack: Stack, pg_port: int, password: str) -> dict:
    """A fresh sidecar's RSS growth with s.idle_connections idle sessions open, per connection."""
    proc, port = start_sidecar(stack, pg_port, password, name="sidecar-idle")
    open_idle(port).close()  # warm up: runtime threads, first allocations
    time.sleep(0.5)
    before = rss_kib(proc.pid)
    socks = []
    try:
        for _ in range(s.idle_connections):
            socks.append(open_idle(port))
        time.sleep(1)
        after = rss_kib(proc.pid)
    finally:
        for sock in socks:
            sock.close()
        stack.stop(proc)
    return {"connections": len(socks), "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": (after - before) / len(socks)}


def bench_startup(s: Settings, stack: Stack, pg_port: int, password: str) -> dict:
    """Milliseconds from spawning the sidecar to a TCP connect succeeding on its port; median."""
    times = []
    for i in range(s.startup_repeats):
        port = free_port()
        argv = sidecar_argv(write_sidecar_config(stack, pg_port, password, port))
        t0 = time.perf_counter()
        proc = stack.spawn(f"sidecar-start-{i}", argv)
        times.append((wait_accepting(port, proc) - t0) * 1000)
        stack.stop(proc)
    return {"median_ms": statistics.median(times), "all_ms": times}


# --- report --------------------------------------------------------------------------------------

def mark(ok: bool | None) -> str:
    return "-" if ok is None else ("✓" if ok else "✗")


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def compare(cells: list[dict]) -> list[dict]:
    """Per (clients, mode): the sidecar against direct and PgBouncer, with the issue's targets."""
    rows = []
    for clients in CLIENTS:
        for mode in MODES:
            c = {t: next(x for x in cells if (x["clients"], x["mode"], x["target"]) == (clients, mode, t))
                 for t in TARGETS}
            d, sc, pb = c["direct"], c["sidecar"], c["pgbouncer"]
            row = {"clients": clients, "mode": mode,
                   "tps_sidecar_vs_direct": ratio(sc["tps"], d["tps"]),
                   "tps_sidecar_vs_pgbouncer": ratio(sc["tps"], pb["tps"]),
                   "cpu_sidecar_vs_pgbouncer": ratio(sc["cpu_us_per_txn"], pb["cpu_us_per_txn"]),
                   "p99_sidecar_vs_direct": ratio(sc["p99_us"], d["p99_us"]),
                   "added_p50_us_sidecar": sc["p50_us"] - d["p50_us"],
                   "added_p50_us_pgbouncer": pb["p50_us"] - d["p50_us"]}
            row["target_cpu"] = sc["cpu_us_per_txn"] <= pb["cpu_us_per_txn"]
            row["target_tps"] = row["tps_sidecar_vs_pgbouncer"] >= 1.15 if clients > 1 else None
            row["target_added_p50"] = (row["added_p50_us_sidecar"] <= row["added_p50_us_pgbouncer"]
                                       if clients == 1 else None)
            row["target_p99"] = row["p99_sidecar_vs_direct"] <= 1.5 if clients == 32 else None
            rows.append(row)
    return rows


def result_bytes(stack: Stack, port: int) -> int:
    """Bytes of the masked stream's rows as the server sends them (DataRow bodies, text format)."""
    q = ("select sum(2 + 16 + length(id::text) + octet_length(payload) + octet_length(email) "
         "+ octet_length(note)) from stream")
    argv = psql_admin(stack, port, q, db=DATABASE, user=USER) + ["-A", "-t"]
    return int(run(argv, "measuring the stream").stdout.strip())


def targets(rows: list[dict], stream: dict, idle: dict, startup: dict, masked_bytes: int) -> list[dict]:
    """The issue's targets, each with whether it was met and the figures behind it."""
    def cells(key: str) -> tuple[bool, str]:
        rel = [r for r in rows if r[key] is not None]
        missed = [f"{r['clients']}c/{r['mode']}" for r in rel if not r[key]]
        return not missed, f"{len(rel) - len(missed)}/{len(rel)} cells" + (
            f"; missed {', '.join(missed)}" if missed else "")

    stream_ratios = {k: stream[k]["sidecar"]["seconds"] / stream[k]["direct"]["seconds"] for k in stream}
    out = [("CPU per statement <= PgBouncer's", *cells("target_cpu")),
           ("TPS >= 1.15 x PgBouncer at 8 and 32 clients", *cells("target_tps")),
           ("added p50 at 1 client <= PgBouncer's", *cells("target_added_p50")),
           ("p99 at 32 clients <= 1.5 x direct", *cells("target_p99"))]
    for k, r in stream_ratios.items():
        limit = 1.15 if k == "masked" else 1.1
        out.append((f"1M-row stream ({k}) <= {limit} x direct", r <= limit, f"{r:.3f} x direct"))
    masked = stream["masked"]["sidecar"]
    if masked["proxy_cpu_seconds"]:
        mb = masked_bytes / 1e6 / masked["proxy_cpu_seconds"]
        out.append(("masked stream >= 400 MB per sidecar CPU-second", mb >= 400, f"{mb:.0f} MB/CPU-s"))
    out.append(("<= 32 KiB RSS per idle connection", idle["kib_per_connection"] <= 32,
                f"{idle['kib_per_connection']:.1f} KiB"))
    out.append(("listening within 50 ms", startup["median_ms"] <= 50, f"{startup['median_ms']:.1f} ms"))
    return [{"target": t, "met": ok, "detail": d} for t, ok, d in out]


def report(res: dict) -> str:
    """The human-readable tables."""
    s = res["settings"]
    env = res["environment"]
    lines = [f"dbward bench {res['started']}  ({env['cpus']} CPUs, load {env['loadavg'][0]:.1f} at start, "
             f"{env['loadavg'][1]:.1f} at end; pgbench -S scale {s['scale']}, {s['seconds']} s per run, "
             f"{s['rounds']} round(s), medians)", "",
             f"{'clients':>7} {'mode':<9} {'target':<10} {'TPS':>9} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'proxy CPU µs/txn':>17}"]
    for c in res["pgbench"]["cells"]:
        lines.append(f"{c['clients']:>7} {c['mode']:<9} {c['target']:<10} {c['tps']:>9.0f} "
                     f"{c['p50_us'] / 1000:>8.3f} {c['p99_us'] / 1000:>8.3f} "
                     f"{fmt(c['cpu_us_per_txn'], '.1f'):>17}")
        if c["target"] == TARGETS[-1]:
            lines.append("")
    lines.append("sidecar vs direct (D) and PgBouncer (B); +p50 = p50 minus direct's, the sidecar's then "
                 "B's (µs);\n✓/✗ = target met (informational), - = no target for this cell")
    lines.append(f"{'clients':>7} {'mode':<9} {'TPS/D':>6} {'TPS/B':>6} {'':1} {'CPU/B':>6} {'':1} "
                 f"{'+p50 µs':>8} {'B +p50':>7} {'':1} {'p99/D':>6} {'':1}")
    for r in res["pgbench"]["comparison"]:
        lines.append(
            f"{r['clients']:>7} {r['mode']:<9} {r['tps_sidecar_vs_direct']:>6.2f} "
            f"{r['tps_sidecar_vs_pgbouncer']:>6.2f} {mark(r['target_tps'])} "
            f"{r['cpu_sidecar_vs_pgbouncer']:>6.2f} {mark(r['target_cpu'])} "
            f"{r['added_p50_us_sidecar']:>8.0f} {r['added_p50_us_pgbouncer']:>7.0f} "
            f"{mark(r['target_added_p50'])} {r['p99_sidecar_vs_direct']:>6.2f} {mark(r['target_p99'])}")
    lines += ["", f"streaming {s['stream_rows']:,} rows with psql: median s of {s['stream_rounds']} "
              "(proxy CPU s)",
              f"{'':<8}" + "".join(f"{t:>20}" for t in TARGETS)]
    for kind, by in res["stream"].items():
        cols = "".join(f"{by[t]['seconds']:>12.2f} ({fmt(by[t]['proxy_cpu_seconds'], '.2f'):>5})"
                       for t in TARGETS)
        lines.append(f"{kind:<8}{cols}")
    i, st = res["idle_rss"], res["startup"]
    lines += ["", f"idle connections: {i['connections']} open, sidecar RSS {i['rss_before_kib']} -> "
              f"{i['rss_after_kib']} KiB = {i['kib_per_connection']:.1f} KiB per connection",
              f"startup: spawn to accepting {st['median_ms']:.1f} ms median "
              f"({', '.join(f'{t:.1f}' for t in st['all_ms'])})", "", "targets:"]
    for t in res["targets"]:
        lines.append(f"  {mark(t['met'])} {t['target']:<46} {t['detail']}")
    return "\n".join(lines)


def progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


# --- main ----------------------------------------------------------------------------------------

def server_bindir() -> Path:
    out = run([str(ROOT / "scripts" / "ensure-postgres.sh"), "--print-bindir"], "ensure-postgres.sh")
    return Path(out.stdout.strip().splitlines()[-1])


def main() -> None:
    s = Settings.from_env()
    binary = sidecar_binary()
    if not binary.exists():
        sys.exit(f"bench: {binary} not found; run `cargo build --release -p dbward-sidecar` (or make bench)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    bindir = server_bindir()
    account = "postgres" if os.geteuid() == 0 else None
    tmp = Path(tempfile.mkdtemp(prefix="dbward-bench-"))
    stack = Stack(tmp, account)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if account:
            shutil.chown(tmp, account, account)
        tmp.chmod(0o755)
        password = "bench-" + secrets.token_hex(12)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        load_start = round(os.getloadavg()[0], 2)
        progress(f"PostgreSQL in {tmp}, loading data (scale {s.scale}, {s.stream_rows:,} stream rows)...")
        pg_port = start_postgres(stack, bindir, password)
        load_data(stack, pg_port, s)
        masked_bytes = result_bytes(stack, pg_port)
        sidecar, sc_port = start_sidecar(stack, pg_port, password)
        bouncer, pb_port = start_pgbouncer(stack, pg_port, password)
        eps = {"direct": Endpoint("direct", pg_port, None, password),
               "sidecar": Endpoint("sidecar", sc_port, sidecar.pid, None),
               "pgbouncer": Endpoint("pgbouncer", pb_port, bouncer.pid, password)}
        runs = bench_pgbench(s, eps, tmp)
        cells = summarize_pgbench(runs)
        stream = bench_stream(s, eps)
        idle = bench_idle_rss(s, stack, pg_port, password)
        startup = bench_startup(s, stack, pg_port, password)
        rows = compare(cells)
        res = {"started": started, "settings": asdict(s),
               "environment": {"cpus": os.cpu_count(), "loadavg": [load_start, round(os.getloadavg()[0], 2)],
                               "postgres": run([str(bindir / "postgres"), "--version"], "").stdout.strip(),
                               "pgbouncer": run([PGBOUNCER, "--version"], "").stdout.split("\n")[0],
                               "sidecar": str(binary)},
               "pgbench": {"cells": cells, "comparison": rows, "runs": runs},
               "stream": stream, "idle_rss": idle, "startup": startup,
               "masked_stream_bytes": masked_bytes,
               "targets": targets(rows, stream, idle, startup, masked_bytes)}
        out = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench" / "results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(report(res))
        print(f"\n(JSON: {out})")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; cleaning up")
    except RuntimeError as e:
        sys.exit(f"bench: {e}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()


if __name__ == "__main__":
    main()
