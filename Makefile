# Two entry points for a fresh machine (Python 3.11, pip, gcc): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,human]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/teamsift demo

test: $(STAMP)  # two processes: the fast tier, then the slow one (fewer compiled programs per process)
	$(BIN)/python -m pytest -q -m "not slow and not bench"
	$(BIN)/python -m pytest -q -m "slow and not bench"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not bench"

bench: $(STAMP)  # every benchmark, results into benchmarks/results/ (many hours on 2 cores: the SIT table dominates)
	$(BIN)/python benchmarks/run_foundation.py
	$(BIN)/python benchmarks/run_valuation.py
	$(BIN)/python benchmarks/run_commons_ev2bc.py --updates 5000
	$(BIN)/python benchmarks/run_overcooked_human.py
	$(BIN)/python benchmarks/run_suites.py
	$(BIN)/teamsift bench pjap
	$(BIN)/teamsift bench sit --study table,ablations,stress --updates 1500 --ardnem-updates 3000

clean:
	rm -rf $(VENV) .pytest_cache
