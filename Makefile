# The two commands a new user needs (see README):
#   make app   set up, build the default library if missing, serve the explorer
#   make test  set up, lint, run the test suite (browser test included)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: setup test lint app browser default-library clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(STAMP)

# Debian's chromium for the end-to-end browser test (playwright cannot download browsers here).
# As root apt-get runs directly; otherwise through sudo. `env` carries DEBIAN_FRONTEND so the
# command word is apt-get whether or not sudo is in front of it. Where it cannot be installed
# (no root, no sudo) the browser test is skipped with a message, unless MMSA_REQUIRE_BROWSER=1
# (CI) makes that a failure.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi; \
	  echo "installing Debian's chromium for the browser test"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || { echo "chromium could not be installed: the browser test will be skipped"; \
	       [ "$${MMSA_REQUIRE_BROWSER:-0}" != 1 ]; }; }

lint: setup
	$(BIN)/ruff check .

# Ray is installed by requirements-dev.txt: its tests must run, not skip.
test: setup browser lint
	MMSA_REQUIRE_RAY=1 $(BIN)/python -m pytest

default-library: setup
	$(BIN)/mmsa index ensure-default

MMSA_MAX_UPLOAD_MB ?= 200

# Serves on http://localhost:$(PORT); opens a browser tab where there is a desktop.
app: default-library
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ]; then \
	  (sleep 4; $(BIN)/python -m webbrowser -t http://localhost:$(PORT) >/dev/null 2>&1) & fi; \
	echo "MMSA Explorer: http://localhost:$(PORT)"; \
	MMSA_MAX_UPLOAD_MB=$(MMSA_MAX_UPLOAD_MB) $(BIN)/streamlit run app/main.py \
	  --server.port $(PORT) --server.headless true --browser.gatherUsageStats false \
	  --server.maxUploadSize $(MMSA_MAX_UPLOAD_MB)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
