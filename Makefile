# Two commands do all set-up: `make demo` runs the main job, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo stop test bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --group dev -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crosstrace demo consortium

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/crosstrace bench
	$(BIN)/crosstrace simulate --bench
	$(BIN)/python benchmarks/store_bench.py
	$(BIN)/python benchmarks/catchup_bench.py
	$(BIN)/python benchmarks/proof_bench.py
	$(BIN)/python benchmarks/trace_bench.py
	$(BIN)/python benchmarks/api_trace_bench.py
	$(BIN)/python benchmarks/oprf_bench.py
	$(BIN)/python benchmarks/pseudonym_bench.py
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/python benchmarks/psi_bench.py

# The console's screenshots in the README (docs/console-*.png), from its browser tests.
screenshots: $(STAMP)
	CROSSTRACE_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/test_console.py

stop:
	$(BIN)/crosstrace cluster down consortium

clean:
	rm -rf $(VENV) build *.egg-info
