# The two commands: `make demo` and `make test`. Every target creates .venv when it is missing
# (with the dev and docs extras, so that the tests can also build the documentation).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := $(wildcard models/*.eqg)

.PHONY: demo test lint generate bench docs gallery clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
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

# the documentation site, warnings as errors, into site/ (the gallery pages are checked in)
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# regenerate docs/gallery (pages, equations, curves) from models/*.eqg and the README example's
# figure; expensive simulations are reused from their figures (GALLERY_ARGS=--simulate computes
# missing ones, --refresh all)
gallery: $(STAMP)
	$(BIN)/python scripts/gallery.py $(GALLERY_ARGS)
	$(BIN)/python scripts/readme_example.py > /dev/null

clean:
	rm -rf out .pytest_cache site
