# `make serve` and `make test` do all the set-up on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test test-fast bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/jacc serve samples/chat.jac --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(PY) -m pytest

# Unit tests only: no real servers (tests/e2e), no wheel build, no property runs.
test-fast: $(STAMP)
	$(PY) -m pytest -q --ignore=tests/e2e -m "not slow"

bench: $(STAMP)
	$(PY) bench/compile.py
	$(PY) bench/ws.py
	$(PY) bench/reload.py
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
