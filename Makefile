# Two commands on a fresh machine: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_EXTRAS := train,plots,baselines,serve,fast
# fast (numba) is in the test set so both LSTM paths are tested: each parity test runs with and without it.
TEST_EXTRAS := torch,train,plots,baselines,forecast,serve,dev,fast,onnx

.PHONY: run test examples bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[$(RUN_EXTRAS)]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[$(TEST_EXTRAS)]"
	touch $@

# The main job: sentiment of airline tweets, trained and evaluated on the scratch engine (NumPy only).
run: $(VENV)/.installed-run
	$(PY) examples/airline_sentiment.py $(ARGS)

test: $(VENV)/.installed-test
	$(PY) -m pytest

# The seed notebook's examples (RNN basics, next digit, HELLO).
examples: $(VENV)/.installed-run
	$(PY) examples/run_all.py

bench: $(VENV)/.installed-test
	$(PY) benchmarks/engine_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
