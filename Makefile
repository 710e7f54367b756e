# Every target creates .venv (and installs the project into it) when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(abspath mlflow.db)

.PHONY: repro test test-unit test-slow test-e2e bench ui lint chromium label-studio

# Label Studio and Playwright in their own environment: their pins (numpy 2.2, pandas, Django)
# clash with ours; ripu talks to the server only over HTTP.
LS_VENV  ?= .venv-ls
LS_STAMP := $(LS_VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q 'label-studio==1.23.2' 'playwright==1.65.3'
	touch $(LS_STAMP)

chromium:               ## Debian's Chromium for the browser test (Playwright's own download is unreachable); needs root
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

LS_PORT ?= 8080
label-studio: $(LS_STAMP)  ## a Label Studio server on http://127.0.0.1:$(LS_PORT), data in label-studio-data/
	$(LS_VENV)/bin/label-studio start --no-browser --internal-host 127.0.0.1 --port $(LS_PORT) --data-dir $(abspath label-studio-data)

repro: $(STAMP)         ## the default pipeline: dvc repro on params.yaml
	dvc repro

test: $(STAMP)          ## the default test suite (slow tests deselected)
	$(PY) -m pytest -q

test-unit: $(STAMP)     ## the unit tests alone: no servers, clusters, MLflow stores or subprocesses (under a minute)
	$(PY) -m pytest -q -m "not integration and not slow"

test-slow: $(STAMP)     ## only the long end-to-end tests
	$(PY) -m pytest -q -m slow

test-e2e: $(STAMP) $(LS_STAMP) chromium  ## the end-to-end tests CI runs besides `make test`
	$(PY) -m pytest -q -m slow tests/test_pipeline.py::test_dvc_repro_end_to_end \
	  tests/test_sweep.py::test_killed_trial_is_retried_and_matches_an_uninterrupted_run \
	  tests/test_sweep.py::test_sweep_on_a_two_node_ray_cluster_with_a_failing_trial \
	  tests/test_interrupt.py tests/test_paper_pipeline.py tests/test_cluster_faults.py \
	  tests/test_start_changed.py tests/annotate

bench: $(STAMP)         ## benchmarks with side-by-side ratios -> reports/bench.json
	OMP_WAIT_POLICY=PASSIVE $(PY) -m benchmarks  # as measured in the README

UI_PORT ?= 5000
ui: $(STAMP)            ## the MLflow UI on http://127.0.0.1:$(UI_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port $(UI_PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check ripu pipelines tests benchmarks
