# Two commands a new user needs: `make dev` runs the engine on an embedded
# broker and Valkey; `make test` runs lint, types and the whole test suite.
# Both bootstrap their own virtualenv in .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test lint bench architecture clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/hookstream dev

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src tests bench

# The dashboard test drives a real browser: Debian's Chromium, installed here when
# missing, so `make test` needs nothing but Python and apt on a fresh machine.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard test (apt-get)"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

test: lint $(CHROMIUM)
	HOOKSTREAM_CHROMIUM=$(CHROMIUM) $(BIN)/pytest

# Measure the engine on this machine; SCENARIO=steady|latency|seed|isolation|backlog|all.
SCENARIO ?= steady
bench: $(STAMP)
	$(BIN)/hookstream bench --scenario $(SCENARIO)

# The data-flow picture in docs/architecture.md, from its text source (needs
# graphviz: apt-get install graphviz). The source's digest goes into the SVG, and
# tests/unit/test_layout.py fails when the picture is older than its source.
architecture: docs/architecture.dot
	{ dot -Tsvg docs/architecture.dot | sed -n '1,/<svg/{/<svg/!p}'; \
	  echo "<!-- made from docs/architecture.dot, sha256 $$(sha256sum docs/architecture.dot | cut -c1-64) -->"; \
	  dot -Tsvg docs/architecture.dot | sed -n '/<svg/,$$p'; } > docs/architecture.svg

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
