# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := $(wildcard models/*.eqg)

.PHONY: demo test lint generate bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --out out

test: $(STAMP)
	$(BIN)/ruff check eqgen tests benchmarks scripts
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check eqgen tests benchmarks scripts

generate: $(STAMP)
	$(BIN)/eqgen generate $(MODELS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_committee.py

clean:
	rm -rf out .pytest_cache
