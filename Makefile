# Banner Bandit — `make run` brings everything up, `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PORT       ?= 8000
WEB_CONCURRENCY ?= $(shell n=$$(nproc); [ $$n -lt 2 ] && n=2; echo $$n)
export PORT WEB_CONCURRENCY

# Point CASSANDRA_HOSTS at a cluster to use it instead: then nothing is downloaded or started.
CASSANDRA_HOSTS ?=
comma := ,
LOCAL_CASSANDRA := $(if $(filter-out 127.0.0.1 localhost,$(subst $(comma), ,$(CASSANDRA_HOSTS))),,1)

.PHONY: help venv cassandra cassandra-stop schema demo run stop test test-unit lint docs-config bench-serve bench-outage bench-bots bench-origins bench-learning simulate-service clean chromium
.PHONY: cluster cluster-stop cluster-status spark-cluster spark-cluster-stop cluster-priors cluster-audit
.PHONY: spark-jars priors evaluate bench-evaluation audit-counters repair-counters sample-history import-history bench-priors bench-pooling bench-drift bench-decay profile-serve bench-batch bench-cpu latency-timeline migrate-events bench-scale bench-context bench-serve-context

help:
	@echo "make run          virtualenv, Cassandra, schema, demo data, gunicorn on 127.0.0.1:$(PORT)"
	@echo "make test         the whole test suite (starts the local Cassandra if needed)"
	@echo "make test-unit    the pure tests only, in seconds: no Cassandra, Spark, browser or slow test"
	@echo "make lint         ruff check (rules in pyproject.toml)"
	@echo "make stop         stop the server (if in the background) and the local Cassandra"
	@echo "make docs-config  regenerate docs/configuration.md from the settings (webapp/web/config.py)"
	@echo "make bench-serve  load benchmark of /v1/serve (see docs/BENCHMARKS.md)"
	@echo "make bench-serve-context  a contextual slot's peak vs a Thompson slot's, alternating rounds (SERVE_ARGS='--rounds 3')"
	@echo "make bench-scale  cost against stored slots: 10, 1,000, 10,000 slots (SCALE_ARGS='--slots 10,1000')"
	@echo "make bench-pooling  city priors vs the 97% stationary aim, and a reversed city (SEEDS=32 FIRST_SEED=0, ~8 min)"
	@echo "make bench-drift  plain vs discounted Thompson sampling after a drift, with and without city priors (SEEDS=32, ~6 min)"
	@echo "make bench-decay  what a slot with a decay half-life costs the serving cache's refresh"
	@echo "make profile-serve  CPU per request of serve and ping in one process (PROFILE_ARGS=--profile for cProfile)"
	@echo "make bench-batch  Cassandra's and the writer's CPU per impression, by rows per batch"
	@echo "make bench-cpu    how steady this machine's CPU speed is (run it on an idle machine)"
	@echo "make latency-timeline  the slow requests of the last bench-serve's open-loop phases, as clusters in time"
	@echo "make bench-bots   simulation: does a click bot poison the learning, with and without the filter"
	@echo "make bench-origins  the service against a cross-origin clicker: allowed origins, mismatch rules (ORIGINS_ARGS)"
	@echo "make bench-learning  learning benchmark: simulator, policies, plots (docs/BENCHMARKS.md, 32 seeds, ~22 min)"
	@echo "make simulate-service  simulated visitors against gunicorn; checks the stats API (STEPS=2000)"
	@echo "make priors       city priors from the event log (Spark; PRIORS_ARGS='--days 30 --tenant demo')"
	@echo "make evaluate     off-policy evaluation of candidate policies on a slot's log (Spark; EVALUATE_ARGS='--tenant demo --slot home-hero')"
	@echo "make bench-evaluation  off-policy estimates and holdout lift vs the simulator's truth (EVAL_ARGS='--seeds 20')"
	@echo "make migrate-events copy the day-partitioned event log of before cql/006 into the bounded one (resumable)"
	@echo "make audit-counters  compare the serving counters with the event log (Spark; AUDIT_ARGS='--tenant demo')"
	@echo "make repair-counters  add back the counts the counters miss, to slots taking no traffic (Spark)"
	@echo "make rebuild-context  set context_counts to what the event log says (Spark; REBUILD_ARGS='--slot demo/home-hero')"
	@echo "make import-history  import HISTORY_CSV (default .run/history.csv; a sample is generated if absent)"
	@echo "make bench-priors job time on 1M/10M events and the regret simulation (docs/BENCHMARKS.md)"
	@echo "make cluster      a three-node Cassandra ring on 127.0.0.1-3:9142 (docs/operations.md); cluster-stop, cluster-status"
	@echo "make spark-cluster  a Spark master and worker on spark://127.0.0.1:7177; spark-cluster-stop"
	@echo "make cluster-priors / cluster-audit  the priors job / counter audit by spark-submit, on both clusters"
	@echo "make compose-up   the images, a three-node ring and two replicas on 127.0.0.1:BB_PORT (8080); compose-down"
	@echo "make images       build the app, jobs, Cassandra and proxy images (scripts/containers.sh; docs/operations.md)"

# The pinned requirements of every part (requirements/*.txt, all included by requirements.txt), then the
# project itself, editable and without dependencies: scripts and benchmarks import its packages as installed.
$(VENV)/.installed: requirements.txt $(wildcard requirements/*.txt) pyproject.toml
	@test -x $(PY) || { echo "[setup] creating virtualenv $(VENV)"; $(PYTHON_SYS) -m venv $(VENV); }
	@echo "[setup] installing Python dependencies (requirements.txt)"
	@$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	@$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

cassandra:
ifeq ($(LOCAL_CASSANDRA),1)
	@scripts/cassandra.sh start
else
	@echo "[cassandra] using the cluster at $(CASSANDRA_HOSTS); nothing started"
endif

cassandra-stop:
	@scripts/cassandra.sh stop

# Secrets for `make run`, generated once and kept in .run/ (git-ignored) unless set in the environment.
.run/env:
	@mkdir -p .run
	@{ echo "ADMIN_API_TOKEN=$$($(PYTHON_SYS) -c 'import secrets; print(secrets.token_urlsafe(24))')"; \
	   echo "SECRET_KEY=$$($(PYTHON_SYS) -c 'import secrets; print(secrets.token_urlsafe(32))')"; } > $@
	@chmod 600 $@

schema: venv cassandra
	@$(VENV)/bin/flask --app wsgi init-db

demo: schema
	@$(VENV)/bin/flask --app wsgi seed-demo --base-url http://127.0.0.1:$(PORT)

run: venv cassandra .run/env
	@token=$${ADMIN_API_TOKEN:-}; secret=$${SECRET_KEY:-}; \
	  set -a; source .run/env; set +a; \
	  export ADMIN_API_TOKEN=$${token:-$$ADMIN_API_TOKEN} SECRET_KEY=$${secret:-$$SECRET_KEY}; \
	  export PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)}; \
	  $(VENV)/bin/flask --app wsgi init-db && \
	  $(VENV)/bin/flask --app wsgi seed-demo --base-url http://127.0.0.1:$(PORT) && \
	  { grep -q '^DEMO_ADMIN_PASSWORD=' .run/env || \
	    echo "DEMO_ADMIN_PASSWORD=$$($(PYTHON_SYS) -c 'import secrets; print(secrets.token_urlsafe(12))')" >> .run/env; } && \
	  demo_password=$$(sed -n 's/^DEMO_ADMIN_PASSWORD=//p' .run/env) && \
	  printf '%s\n' "$$demo_password" | $(VENV)/bin/flask --app wsgi create-admin admin --password-stdin --update && \
	  echo "" && \
	  echo "  Banner Bandit is starting on http://127.0.0.1:$(PORT)  ($(WEB_CONCURRENCY) gunicorn workers)" && \
	  echo "    demo publisher page   http://127.0.0.1:$(PORT)/" && \
	  echo "    serve API             http://127.0.0.1:$(PORT)/v1/serve/demo/home-hero?location=Mumbai" && \
	  echo "    iframe embed          http://127.0.0.1:$(PORT)/v1/embed/demo/home-hero" && \
	  echo "    management API        http://127.0.0.1:$(PORT)/v1/admin/tenants/demo/slots/home-hero/stats" && \
	  echo "    admin API token       $$ADMIN_API_TOKEN   (Authorization: Bearer …; kept in .run/env)" && \
	  echo "    dashboard             http://127.0.0.1:$(PORT)/admin/   user admin, password $$demo_password" && \
	  echo "  Ctrl-C stops the server; 'make stop' stops Cassandra too." && echo "" && \
	  exec $(VENV)/bin/gunicorn -c gunicorn.conf.py --pid .run/gunicorn.pid wsgi:app

# The server `make run` started in this checkout (its pid file; gunicorn removes it on exit), then Cassandra.
# (A `pkill -f` on gunicorn's command line matched this recipe's own shell and ended it before Cassandra.)
stop:
	@pid=$$(cat .run/gunicorn.pid 2>/dev/null) && grep -qa gunicorn /proc/$$pid/cmdline 2>/dev/null && \
	  kill -TERM $$pid && echo "[server] stopped (pid $$pid)" || true
	@scripts/cassandra.sh stop

test: venv chromium spark-jars
	@$(PY) -m pytest

# docs/configuration.md is generated from the settings (webapp/web/config.py); tests/test_config.py checks it.
docs-config: venv
	@$(PY) -m webapp.web.config --markdown > docs/configuration.md

# The tests that need nothing but Python (markers in pyproject.toml, set by tests/conftest.py).
test-unit: venv
	@$(PY) -m pytest -m "not cassandra and not spark and not browser and not slow"

# ruff, pinned in requirements/test.txt; its rules are in pyproject.toml.
lint: venv
	@$(VENV)/bin/ruff check .

# The dashboard's browser tests drive Debian's Chromium (headless) through Playwright.
chromium:
	@test -x /usr/bin/chromium || { echo "[setup] installing Debian's chromium for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }

bench-serve: venv cassandra
	@$(PY) benchmarks/bench_serve.py

# Only the contextual comparison (section serve-context); `bench_serve.py --context also` runs both.
bench-serve-context: venv cassandra
	@PYTHONPATH=$(CURDIR) $(PY) benchmarks/bench_serve.py --context only $(SERVE_ARGS)

# The app's packages from this checkout (PYTHONPATH), whatever checkout the venv was installed from.
bench-scale: venv cassandra
	@PYTHONPATH=$(CURDIR) $(PY) benchmarks/bench_scale.py $(SCALE_ARGS)

bench-pooling: venv
	@$(PY) benchmarks/bench_pooling.py --seeds $${SEEDS:-32} --first-seed $${FIRST_SEED:-0}

profile-serve: venv cassandra
	@$(PY) benchmarks/profile_serve.py $(PROFILE_ARGS)

bench-decay: venv cassandra
	@$(PY) benchmarks/bench_decay.py

bench-batch: venv cassandra
	@$(PY) benchmarks/bench_batch.py $(BATCH_ARGS)

bench-cpu: venv
	@$(PY) benchmarks/bench_cpu.py

latency-timeline: venv
	@$(PY) benchmarks/latency_timeline.py $(TIMELINE_ARGS)

bench-drift: venv
	@$(PY) benchmarks/bench_drift.py --seeds $${SEEDS:-32}

bench-outage: venv cassandra
	@$(PY) -m pytest tests/test_outage.py -q -s -p no:logging

# Contextual Thompson sampling vs per-city Thompson, MABWiser LinTS/LinUCB and the oracle (SEEDS, HORIZON).
bench-context: venv
	@PYTHONPATH=$(CURDIR) nice -n 10 $(PY) benchmarks/bench_context.py --seeds $${SEEDS:-32} --horizon $${HORIZON:-200000} $(CONTEXT_ARGS)

bench-bots: venv
	@$(PY) benchmarks/bench_bots.py

bench-origins: venv cassandra
	@PYTHONPATH=$(CURDIR) $(PY) benchmarks/bench_origins.py $(ORIGINS_ARGS)

# Learning benchmark: SEEDS seeds of three scenarios, all policies; writes docs/.
SEEDS ?= 32
bench-learning: venv
	@$(PY) benchmarks/bench_learning.py --seeds $(SEEDS)

# End-to-end: gunicorn on a free port against keyspace bb_simulator, STEPS simulated visitors.
STEPS ?= 2000
simulate-service: venv cassandra
	@$(PY) -m simulator service --keyspace bb_simulator --steps $(STEPS)

# -- A three-node ring and a Spark standalone cluster on this machine (scripts/cluster.sh, docs/operations.md) --
# They run beside the single node of `make run`: other addresses and ports. `make cluster` prints what to export.
cluster:
	@scripts/cluster.sh start

cluster-stop:
	@scripts/cluster.sh stop

cluster-status:
	@scripts/cluster.sh status

spark-cluster: venv spark-jars
	@scripts/cluster.sh spark-start

spark-cluster-stop:
	@scripts/cluster.sh spark-stop

RING_ENV := $(shell scripts/cluster.sh env 2>/dev/null | paste -sd' ')

cluster-priors: venv spark-jars
	@$(RING_ENV) $(VENV)/bin/flask --app wsgi init-db
	@$(RING_ENV) scripts/cluster.sh submit city_priors $(PRIORS_ARGS)

cluster-audit: venv spark-jars
	@$(RING_ENV) scripts/cluster.sh submit counter_audit $(AUDIT_ARGS)

# -- Containers (Containerfile, containers/, compose.yaml; docs/operations.md "Containers") ----------------------
# scripts/containers.sh: podman-compose with podman, else docker compose. `containers-setup` (root, Debian) installs
# podman and what it needs; BB_DOWN_VOLUMES=1 make compose-down deletes the stack's data too.
.PHONY: containers-setup images compose-up compose-down

containers-setup:
	@scripts/containers.sh setup

images:
	@scripts/containers.sh build

compose-up:
	@scripts/containers.sh up

compose-down:
	@scripts/containers.sh down

# -- Spark jobs (spark_jobs/, docs/operations.md) --------------------------------------------------------------
HISTORY_CSV ?= .run/history.csv

spark-jars:
	@scripts/spark.sh fetch

migrate-events: schema
	@$(VENV)/bin/flask --app wsgi migrate-events

priors: schema spark-jars
	@$(PY) -m spark_jobs.city_priors $(PRIORS_ARGS)

EVALUATE_ARGS ?= --tenant demo --slot home-hero
evaluate: schema spark-jars
	@$(PY) -m spark_jobs.evaluate $(EVALUATE_ARGS)

bench-evaluation: venv
	@PYTHONPATH=$(CURDIR) nice -n 10 $(PY) benchmarks/bench_evaluation.py $(EVAL_ARGS)

audit-counters: schema spark-jars
	@$(PY) -m spark_jobs.counter_audit $(AUDIT_ARGS)

repair-counters: schema spark-jars
	@$(PY) -m spark_jobs.counter_audit --repair $(AUDIT_ARGS)

# Contextual slots' cell counters recounted from the log, both ways (spark_jobs/context_rebuild.py;
# REBUILD_ARGS: --tenant T, --slot T/S, --dry-run, --settle SECONDS); progress lines on stderr.
.PHONY: rebuild-context
rebuild-context: schema spark-jars
	@$(PY) -m spark_jobs.context_rebuild $(REBUILD_ARGS)

sample-history: venv
	@$(PY) -m spark_jobs.sample_history --out $(HISTORY_CSV) $(SAMPLE_ARGS)

import-history: schema spark-jars
	@test -f $(HISTORY_CSV) || $(PY) -m spark_jobs.sample_history --out $(HISTORY_CSV) $(SAMPLE_ARGS)
	@$(PY) -m spark_jobs.import_history $(HISTORY_CSV) $(IMPORT_ARGS)

bench-priors: venv cassandra spark-jars
	@$(PY) benchmarks/bench_priors.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .run
