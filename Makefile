# Everything a fresh machine with Python 3.11 needs: `make run` starts the app, `make test` runs the suite
# (`make test-fast` leaves out the slow and browser tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt core/serving/web_runtime.py | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/python -m core.serving.web_runtime
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(BIN)/streamlit run app.py

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
