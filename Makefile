# Two entry points on a fresh machine: `make demo` and `make test`. Each creates its own virtual environment.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install demo test lint bench bench-cluster soak clean protos

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Regenerates the Pub/Sub stubs from the vendor proto (protos/README.md); the grpc stub's absolute import becomes
# relative so the code works under the package name ml_connector_protos.
protos: install
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=protos --grpc_python_out=protos --pyi_out=protos \
		protos/eventbus/v1/pubsub_api.proto
	sed -i 's/^from eventbus\.v1 import/from . import/' protos/eventbus/v1/pubsub_api_pb2_grpc.py

demo: install
	$(BIN)/ml-connector demo --force

# mypy reads the import name ml_connector through links: engine/'s entries, and sandbox/ as ml_connector/sandbox
lint: install
	$(BIN)/ruff check engine sandbox tests bench
	rm -rf .typecheck && mkdir -p .typecheck/ml_connector
	for entry in engine/*; do ln -s ../../$$entry .typecheck/ml_connector/; done
	ln -s ../../sandbox .typecheck/ml_connector/sandbox
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The side-by-side benchmark of issue 24, writes bench/RESULTS.md: make bench [BENCH_ARGS="--million" | "--quick"]
bench: install
	$(BIN)/python -m bench.compare $(BENCH_ARGS)
	$(BIN)/python -m bench.sandbox_pages
	$(BIN)/python -m bench.webhook_reply

# Issue 25: 50 tenants on 1, 2 and 4 workers (PostgreSQL + Redis servers started for it), writes its section of
# bench/RESULTS.md: make bench-cluster [BENCH_ARGS="--quick"]
bench-cluster: install
	$(BIN)/python -m bench.cluster_scale $(BENCH_ARGS)

# SEED, MINUTES and FAULTS may be set: make soak SEED=3 MINUTES=30 FAULTS=0.1
soak: install
	$(BIN)/python -m bench.soak --seed $(or $(SEED),1) --minutes $(or $(MINUTES),5) --faults $(or $(FAULTS),0.1)

clean:
	rm -rf $(VENV) demo-workspace .pytest_cache .mypy_cache .ruff_cache .typecheck
