# Hestia: make run | make test | make bench | make lint
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hestia/target
export CARGO_TERM_COLOR ?= never
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build and the tests need: libclang for RocksDB's bindings, a C++ compiler,
# protoc for the gRPC definitions, Prometheus 2.42 as a real remote-write client and reference engine.
DEB_PACKAGES := libclang-dev clang g++ protobuf-compiler prometheus curl python3

.PHONY: deps run test soak-control-plane conformance bench bench-rw bench-storage bench-promql bench-query bench-ingest bench-auth chaos docker-smoke docker-cluster-smoke lint fmt clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from your distribution or rustup" >&2; exit 1; }
	@# The real aws CLI and boto3 drive the AMP workspace API in the control plane's tests.
	@{ command -v aws >/dev/null && command -v awscurl >/dev/null && python3 -c "import boto3" 2>/dev/null; } || python3 -m pip install -q awscli boto3 awscurl
	@# s3s-fs: the real S3-compatible server of hestia-bucket's S3 tests (deploy/s3/test-server); 0.15+ needs Rust 1.96.
	@command -v s3s-fs >/dev/null || [ -x "$$HOME/.cargo/bin/s3s-fs" ] || $(CARGO) install --locked s3s-fs@0.14.1 --features binary

run: deps
	$(CARGO) run --release -p hestia --bin hestia -- all $(ARGS)

test: deps
	$(CARGO) test --workspace --exclude hestia-promql --no-run
	$(CARGO) test --workspace --exclude hestia-promql --no-fail-fast
	$(CARGO) test -p hestia-promql --no-fail-fast -- --nocapture

# The control plane's linearizability test (leader killed mid-history, every core busy), RUNS
# times in a row; fails on the first history that is not linearizable.
RUNS ?= 20
soak-control-plane: deps
	$(CARGO) test -p hestia-control-plane --test cluster --no-run
	for i in $$(seq 1 $(RUNS)); do echo "run $$i/$(RUNS)"; \
		$(CARGO) test -q -p hestia-control-plane --test cluster -- --exact concurrent_alias_history_is_linearizable || exit 1; done

# PromQL conformance only (Prometheus' own test scripts, read from ../shared).
conformance: deps
	$(CARGO) test -p hestia-promql --test conformance -- --nocapture

bench: deps bench-rw bench-storage bench-promql bench-auth bench-query bench-ingest

bench-rw:
	$(CARGO) bench -p hestia-remote-write --bench decode -- --noplot

# SigV4 verification per request (libs/auth/benches/verify.rs; goal ≤ 20 µs with a cached key).
bench-auth:
	$(CARGO) bench -p hestia-auth --bench verify -- --noplot

# Chunk encoding and the ingesters' storage; then blocks next to Prometheus 2.42: bytes per sample,
# 30-day range queries and the querier's memory (services/querier/benches/blocks.rs).
bench-storage: deps
	$(CARGO) bench -p hestia-storage -p hestia-chunkenc -- --noplot
	$(CARGO) bench -p hestia-querier --bench blocks

# PromQL engine: dashboard queries over 10,000 in-memory series (libs/promql/benches/engine.rs).
bench-promql:
	$(CARGO) bench -p hestia-promql --bench engine -- --noplot

# Dashboard queries over 10k series x 2 h on Hestia and on Prometheus 2.42, side by side.
bench-query: deps
	$(CARGO) bench -p hestia --bench query

# Remote-write CPU µs per sample and memory per series: the local cluster at RF=3 and Prometheus
# 2.42, the same load from hestia-loadgen, side by side (loadtest/bench-ingest --help).
bench-ingest: deps
	python3 loadtest/bench-ingest $(ARGS)

# Random faults (ingesters, a zone, distributors, queriers, control-plane leader kills and stops)
# under a steady write load on the local cluster; fails if an acknowledged sample is lost.
chaos: deps
	$(CARGO) test --workspace --exclude hestia-promql --no-run
	python3 chaos/run $(ARGS)

# The `hestia:dev` image (assembled from this checkout's binaries, no registry needed) under
# docker-compose: a workspace survives a container restart.
docker-smoke: deps
	$(CARGO) test --workspace --exclude hestia-promql --no-run
	deploy/docker/smoke debug

# The whole cluster in 9 containers (deploy/docker/cluster): SigV4 writes survive a killed zone.
docker-cluster-smoke: deps
	$(CARGO) test --workspace --exclude hestia-promql --no-run
	deploy/docker/cluster/smoke debug

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf data .cluster
