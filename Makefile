# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   create .venv, install the pinned stack, run the pipeline on generated data
#   make test   the same set-up, then lint and the test suite
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The `bench` extra (Surprise, LIBMF) on top: only `make bench` and `make lock` need it.
BENCH_STAMP := $(VENV)/.bench-stamp
DEMO_OUT ?= demo-work

export PREFECT_SERVER_ANALYTICS_ENABLED = false
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: install op chromium demo test lint typecheck fmt bench audit audit-latest lock clean

install: $(STAMP) op

# The fused training op (cflib/train/fused/mf_adagrad.cc), compiled against the installed
# TensorFlow for this machine's CPU; a no-op when that build is there. Without a C++
# compiler training falls back to TensorFlow ops (slower) and says so.
op: $(STAMP)
	@$(BIN)/python -m cflib.train.fused || true

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

demo: install
	$(BIN)/cfpipe demo --out $(DEMO_OUT)

test: install chromium lint typecheck
	$(BIN)/pytest -q

# The browser test (tests/app/test_browser.py) drives the system Chromium through
# Playwright (installed with the dev extra; it downloads no browser). Debian's `chromium`
# is installed where it is missing and apt-get can run (as root, or by sudo without a
# password); elsewhere that test skips and says why.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: no chromium and no apt-get: the browser test will skip" >&2; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "note: no chromium, and apt-get needs root: the browser test will skip" >&2; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BENCH_STAMP) op
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/peers.py

# Known vulnerabilities in the locked dependencies (PyPI's advisory data). --strict: a
# package that cannot be checked fails the audit too. Needs the JSON API of the index pip
# installs from, for each locked version.
audit: $(STAMP)
	$(BIN)/pip-audit --strict --progress-spinner off -r constraints.txt --no-deps --disable-pip

# Where pip-audit cannot run: the pins that are latest releases, against PyPI's advisories.
audit-latest: $(STAMP)
	$(BIN)/python .ci/audit_latest.py constraints.txt

# Re-pin after changing dependencies in pyproject.toml (then commit constraints.txt).
lock: $(BENCH_STAMP)
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check > constraints.txt

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .hypothesis *.egg-info
