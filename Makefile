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
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(BIN)/ruff check .

test: setup browser lint
	$(BIN)/python -m pytest

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
