# Two entry points for a fresh machine (Python 3.11, pip, gcc): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast docs bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,human]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/teamsift demo --overwrite

# Both tiers run TEST_JOBS processes at once (pytest-xdist, one test file per worker, for the
# fast tier); the slow tier runs one process per test file, so that no process keeps every
# MaBrax, SMAX and learner program compiled at once. TEST_JOBS=1 runs them one by one.
TEST_JOBS ?= 2
SLOW_TEST_FILES := $(shell grep -l "mark.slow" tests/test_*.py)
# The docs site (mkdocs.yml, docs/): --strict turns every warning into an error (a broken link in
# the docs or the README, a page missing from the nav, a docstring the API reference cannot parse).
MKDOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: $(STAMP)  # the fast tier, then the slow tier, then the docs
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not slow and not bench"
	$(BIN)/python tests/run_slow_tier.py --jobs $(TEST_JOBS) $(SLOW_TEST_FILES)
	$(MKDOCS_BUILD)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not slow and not bench"

docs: $(STAMP)  # the docs site into site/ (open site/index.html; `mkdocs serve` previews while you edit)
	$(MKDOCS_BUILD)

bench: $(STAMP)  # every benchmark, results into benchmarks/results/ (many hours on 2 cores: the SIT table dominates)
	$(BIN)/python -m pytest -q -m bench tests/test_pools_committed.py tests/test_diagnose_sit.py tests/test_claims_ledger.py  # audits of the committed pools (CI keeps one generation case) and of the claims ledger's counts; the SIT diagnosis tool end to end
	$(BIN)/python benchmarks/run_engine_overhead.py
	$(BIN)/python benchmarks/run_speed.py  # learners vs bare loops, d3rlpy (its own venv, made once), generation, memory
	$(BIN)/python benchmarks/run_scaling.py  # streamed data (1 GB of synthetic data under /tmp), devices
	$(BIN)/python benchmarks/run_sharded_envs.py
	$(BIN)/python benchmarks/run_foundation.py
	$(BIN)/python benchmarks/run_valuation.py
	$(BIN)/python benchmarks/run_ev_tables.py  # 10⁸ episodes from Parquet: ~2 GB of scratch data and ~20 GB of DuckDB spill under /tmp
	$(BIN)/python benchmarks/run_commons_ev2bc.py --updates 5000
	$(BIN)/python benchmarks/run_overcooked_human.py
	$(BIN)/python benchmarks/run_smax_ev2bc.py  # EV2BC vs BC, group-BC, ICQ on SMAX populations; resumable (skips finished cells)
	$(BIN)/python benchmarks/run_suites.py
	$(BIN)/python benchmarks/run_learner_speed.py
	$(BIN)/teamsift bench pjap --overwrite  # replaces the committed poly-pjap files
	$(BIN)/python benchmarks/run_poly_interaction.py --overwrite  # PJAP's interaction ordering (claim P6), ~20 min
	$(BIN)/teamsift bench pjap --mabrax --mabrax-updates 2000 --rerun  # MADDPG+CQL: 0.6 updates/s for 5 seeds on 2 cores (learner-speed-cpu.md)
	$(BIN)/teamsift bench sit --study table,ablations,stress --stress-env CN_3ls3l --updates 1500 --rerun  # stress on CN: SMAX 2s3z (the paper's map) costs hours more
	$(BIN)/teamsift bench imitation --timesteps 150000 --updates 1000 --rerun  # --rerun: measure again what the results hold

clean:
	rm -rf $(VENV) .pytest_cache site
