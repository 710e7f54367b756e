# Every target creates .venv (and installs the project into it) when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(abspath mlflow.db)

.PHONY: repro test test-unit test-slow test-e2e bench ui lint

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

repro: $(STAMP)         ## the default pipeline: dvc repro on params.yaml
	dvc repro

test: $(STAMP)          ## the default test suite (slow tests deselected)
	$(PY) -m pytest -q

test-unit: $(STAMP)     ## the unit tests alone: no servers, clusters, MLflow stores or subprocesses (under a minute)
	$(PY) -m pytest -q -m "not integration and not slow"

test-slow: $(STAMP)     ## only the long end-to-end tests
	$(PY) -m pytest -q -m slow

test-e2e: $(STAMP)      ## the end-to-end tests CI runs besides `make test`
	$(PY) -m pytest -q -m slow tests/test_pipeline.py::test_dvc_repro_end_to_end \
	  tests/test_sweep.py::test_killed_trial_is_retried_and_matches_an_uninterrupted_run \
	  tests/test_sweep.py::test_sweep_on_a_two_node_ray_cluster_with_a_failing_trial \
	  tests/test_interrupt.py tests/test_paper_pipeline.py tests/test_cluster_faults.py \
	  tests/test_start_changed.py

bench: $(STAMP)         ## benchmarks with side-by-side ratios -> reports/bench.json
	OMP_WAIT_POLICY=PASSIVE $(PY) -m benchmarks  # as measured in the README

UI_PORT ?= 5000
ui: $(STAMP)            ## the MLflow UI on http://127.0.0.1:$(UI_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port $(UI_PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check ripu pipelines tests benchmarks
