# streamlab: Kafka + Spark + HDFS orchestrated by Airflow 3, on one machine.
# `make up` installs what is missing and starts the stack; `make test` runs every test.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# `make up PROFILE=cluster`: 3 Kafka brokers, 2 DataNodes, Spark standalone (state in var-cluster/).
ifdef PROFILE
export STREAMLAB_PROFILE := $(PROFILE)
endif

.PHONY: prereqs test-prereqs help up down status clean deps bench-deps venv test test-unit lint demo stream-stop stream-start

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# System packages first (apt as root; otherwise the one command to run), then the venv.
prereqs: ## check (and as root, install) the system packages: JDK 17, Maven, libkrb5-dev, ...
	@$(PYTHON) -m streamlab.prereqs

test-prereqs: ## prereqs, and what only the tests need: Debian's chromium (the UI test's browser)
	@$(PYTHON) -m streamlab.prereqs --tests

$(VENV_STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml | prereqs
	@echo "[streamlab] creating $(VENV) and installing requirements-dev.txt (first time: ~4 min; one line per package)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar off -q --upgrade pip
	$(PY) -m pip install --progress-bar off -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --progress-bar off -q --no-deps -e .
	@touch $@

venv: $(VENV_STAMP) ## create the virtualenv with the pinned Python packages

deps: prereqs venv ## install everything (venv, Kafka/Hadoop/Spark-connector jars from Maven, the Spark jobs' streamlab.zip)
	@$(PY) -m streamlab.deps

bench-deps: deps ## what only the benches add: Kafka Streams (Maven) and the streaming bench's peer
	@$(PY) -m streamlab.deps --bench

up: deps ## install what is missing, start Kafka, HDFS and Airflow, wait until healthy
	@$(PY) -m streamlab.stack up

down: ## stop every process of the stack (graceful, then forceful)
	@if [ -x $(PY) ]; then $(PY) -m streamlab.stack down; fi

status: ## health of every service
	@$(PY) -m streamlab.stack status

stream-stop: ## stop the streaming word count (pause its DAG, fail its runs)
	@$(PY) -m streamlab.stack stream-stop

stream-start: ## start the streaming word count again (unpause its DAG)
	@$(PY) -m streamlab.stack stream-start

clean: ## stop the stack and wipe its state (var/); keeps the venv and jars
	@if [ -x $(PY) ]; then $(PY) -m streamlab.stack clean; else rm -rf var; fi

test: test-prereqs deps bench-deps lint ## lint, then the whole test suite (unit + integration on an isolated real stack)
	$(PY) -m pytest

# Its own temp folder: a new session with pytest's default one takes o+x away from
# /tmp/pytest-of-<user>, where a running `make test` keeps its stack's PostgreSQL data.
test-unit: deps ## only the tests that need no running service
	$(PY) -m pytest -m "not integration" --basetemp=.pytest-tmp

demo: up ## produce a sample text, print the running counts, land it into HDFS
	@$(PY) -m streamlab.demo

lint: venv ## ruff: lint rules (Airflow's AIR included) and formatting
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
