# The README's commands. Each works on a fresh machine: scripts/ensure-postgres.sh installs what the
# demo, the tests and the benchmark need (PostgreSQL, psql, pgbench, PgBouncer from Debian's packages).

.PHONY: demo test bench crds

## Run the demo: a throwaway PostgreSQL with sample data and dbward-sidecar in front of it.
demo:
	scripts/demo.sh

## The whole test suite, as CI runs it.
test:
	scripts/ensure-postgres.sh
	scripts/check-chart.sh
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked
	scripts/demo.sh --smoke

## Regenerate crds/*.yaml and charts/dbward/crds/*.yaml from the Rust types.
crds:
	DBWARD_UPDATE_CRDS=1 cargo test -p dbward-crds --test crds

## Benchmark dbward-sidecar against PostgreSQL directly and PgBouncer (pgbench -S, streaming, idle memory,
## startup); about 15 minutes. BENCH_QUICK=1 for a short run; BENCH_SECONDS, BENCH_ROUNDS, BENCH_SCALE tune
## it. Prints tables; the data goes to target/bench/results.json. Not a test: missed targets do not fail.
bench:
	scripts/ensure-postgres.sh
	cargo build --release --locked -p dbward-sidecar
	python3 bench/run.py
