# Vocelio — every entry point of the project. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
PROTOS := $(shell find protos -name '*.proto')
TEST_PROTOS := $(shell find tests/protos -name '*.proto' 2>/dev/null)
SITE := $(VENV)/lib/python3.11/site-packages
# Swagger UI 5 for the edge's /docs page: npm's swagger-ui-dist (pinned in package.json), copied into the package
SWAGGER_UI := gateway_rest/swagger_ui
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-16x16.png favicon-32x32.png LICENSE NOTICE

.PHONY: help install proto run migrate test lint breaking bench bench-getagent bench-events bench-validation bench-payload bench-client bench-protection bench-logs bench-metrics bench-tracing clean vendor-protos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: $(VENV)/.installed $(BUF) $(SWAGGER_UI)/.stamp ## create the virtualenv and install everything
	@# headless Chromium renders the API reference page in tests/gateway_rest/test_docs_browser.py
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# the generated root (gen/) and the tests' generated root are import roots
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "vocelio_gen.pth").write_text("\n".join(str(pathlib.Path(p).resolve()) for p in ("gen", "tests/gen")) + "\n")'
	touch $@

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	touch $@

$(SWAGGER_UI)/.stamp: $(BUF)
	rm -rf $(SWAGGER_UI) && mkdir -p $(SWAGGER_UI)
	cp $(addprefix node_modules/swagger-ui-dist/,$(SWAGGER_UI_FILES)) $(SWAGGER_UI)/
	node -p 'require("./node_modules/swagger-ui-dist/package.json").version' > $(SWAGGER_UI)/VERSION
	touch $@

proto: gen/.stamp tests/gen/.stamp ## generate Python code and the descriptor set from protos/

VENDORED_PROTOS := $(shell find third_party/protovalidate -name '*.proto')

gen/.stamp: $(VENV)/.installed $(PROTOS) $(VENDORED_PROTOS) tools/genproto.py
	$(PY) tools/genproto.py --protos protos --out gen --descriptor-set gen/vocelio.binpb --with-protovalidate
	touch $@

tests/gen/.stamp: $(VENV)/.installed $(TEST_PROTOS) $(PROTOS) tools/genproto.py
	$(PY) tools/genproto.py --protos tests/protos --include protos --out tests/gen --descriptor-set tests/gen/testing.binpb
	touch $@

vendor-protos: $(VENV)/.installed ## re-copy Google's API protos and re-render protovalidate's from its wheel
	$(PY) tools/vendor_googleapis.py
	$(PY) tools/vendor_protovalidate.py

run: install proto ## start the whole mesh (SQLite under var/ unless VOCELIO_DATABASE_URL is set)
	$(PY) -m runtime run

migrate: install proto ## apply database migrations for every service
	$(PY) -m runtime migrate

test: install proto ## run every test (PostgreSQL at VOCELIO_TEST_DATABASE_URL too)
	$(PY) -m pytest -q -n auto --dist loadscope

lint: install proto ## buf lint, ruff and mypy (strict)
	$(BUF) lint
	$(BUF) format --diff --exit-code protos
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

breaking: install ## buf breaking against the main branch
	$(BUF) breaking --against '.git#branch=main'

bench: install proto ## benchmarks: edge vs gRPC, auth+RBAC vs none, the server chain and edge workers, GetAgent vs the original design
	@# h2load (and nghttp) drive gRPC, wrk drives HTTP; BENCH_ARGS passes options, e.g. BENCH_ARGS='--duration 15'
	@command -v h2load >/dev/null && command -v wrk >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq nghttp2-client wrk)
	PYTHONPATH=. $(PY) -m bench $(BENCH_ARGS)
	PYTHONPATH=. $(PY) -m bench.getagent $(GETAGENT_ARGS)
	PYTHONPATH=. $(PY) -m bench.events $(EVENTS_ARGS)

bench-getagent: install proto ## GET /v1/agents/{id} through the edge vs the original design: req/s, ratio, agents CPU per call
	@# GETAGENT_ARGS passes options, e.g. GETAGENT_ARGS='--rounds 5 --no-check'
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	PYTHONPATH=. $(PY) -m bench.getagent $(GETAGENT_ARGS)

bench-events: install proto ## event store on PostgreSQL vs raw INSERT … RETURNING + LISTEN/NOTIFY: appends/s, live lag
	@# EVENTS_ARGS passes options, e.g. EVENTS_ARGS='--duration 10 --batch 50'; PostgreSQL: VOCELIO_BENCH_DATABASE_URL
	PYTHONPATH=. $(PY) -m bench.events $(EVENTS_ARGS)

bench-protection: install proto ## µs per call the rate limit, stream limit and load shedding wrappers add; bucket stores compared
	PYTHONPATH=. $(PY) -m bench.protection $(BENCH_ARGS)

bench-validation: install proto ## ns per call of the request validation, for rule-less, valid and invalid requests
	PYTHONPATH=. $(PY) -m bench.validation $(BENCH_ARGS)

bench-payload: install proto ## µs per event of the event store's payload check: json_format vs the compiled check, per event type
	PYTHONPATH=. $(PY) -m bench.payload_check $(BENCH_ARGS)

bench-client: install proto ## µs per call of the client resilience chain and ns of the server deadline wrappers
	PYTHONPATH=. $(PY) -m bench.client_chain $(BENCH_ARGS)

bench-logs: install proto ## µs per log line (JSON/text, queued/direct) and per call of the request-id and RPC-log wrappers
	PYTHONPATH=. $(PY) -m bench.logs $(BENCH_ARGS)

bench-metrics: install proto ## µs per call of the metrics wrappers (server wrapper alone; loopback round trips bare and metered)
	PYTHONPATH=. $(PY) -m bench.metrics $(BENCH_ARGS)

bench-tracing: install proto ## CPU µs per call of tracing (wrapper, served, client spans, point-read span), OTLP pipeline
	PYTHONPATH=. $(PY) -m bench.tracing $(BENCH_ARGS)

clean: ## remove generated code and local state (keeps the virtualenv)
	rm -rf gen tests/gen var .pytest_cache .mypy_cache .ruff_cache
