# Every target creates .venv (and installs the project into it) when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(abspath mlflow.db)
# OpenMP threads sleep instead of spinning while they wait: the 2-thread warm-up stage of
# `make repro` on a machine loaded by other work ran 1,400 iterations in 844 s spinning and
# the next 1,600 (with its evaluation) in under 75 s passive (sweeps set it for their trials, ripu/ray_cluster.py).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: repro test test-unit test-slow test-e2e bench ui tracking-server lint chromium label-studio lock drift gpu-smoke

# Label Studio and Playwright in their own environment: their pins (numpy 2.2, pandas, Django)
# clash with ours; ripu talks to the server only over HTTP.
LS_VENV  ?= .venv-ls
LS_STAMP := $(LS_VENV)/.installed

# Both environments install from lock files (exact versions and hashes, see "Environments" in
# the README); `make lock` regenerates them on purpose. The project itself goes in editable,
# without dependencies (they are all in the lock) and without build isolation (setuptools too).
$(STAMP): requirements/ripu.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/ripu.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(LS_STAMP): requirements/label-studio.lock
	test -x $(LS_VENV)/bin/python || python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --require-hashes --no-deps -r requirements/label-studio.lock
	touch $(LS_STAMP)

# The lock files: pip-tools' pip-compile (it resolves with pip itself, so it reads this
# machine's pip configuration and takes the torch pair from its disk), for Python 3.11 on
# Linux x86-64, exact versions with hashes. `make lock` takes the newest releases the ranges
# allow (LOCK_FLAGS= keeps the current pins and only adds what pyproject.toml gained).
TOOLS      ?= .venv-tools
LOCK_FLAGS ?= --upgrade
COMPILE    := $(TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
              --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS)

$(TOOLS)/.installed:
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q 'pip-tools==7.7.0'
	touch $@

lock: $(TOOLS)/.installed  ## regenerate both lock files (review with `git diff requirements/`)
	$(COMPILE) --extra dev --constraint requirements/torch.txt -o requirements/ripu.lock pyproject.toml
	$(COMPILE) --constraint requirements/label-studio-caps.txt -o requirements/label-studio.lock requirements/label-studio.in

drift:                  ## resolve the unlocked requirements afresh, diff against the locks, smoke-test
	python3 requirements/drift.py

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
	  tests/test_start_changed.py tests/test_environment.py tests/test_basic_auth.py tests/annotate

gpu-smoke: $(STAMP)     ## every trial kind on CUDA (fp32, bf16), selection at 2048x1024, 2-GPU NCCL -> reports/gpu_smoke.json
	$(PY) -m benchmarks.gpu_smoke

bench: $(STAMP)         ## benchmarks with side-by-side ratios -> reports/bench.json
	OMP_WAIT_POLICY=PASSIVE $(PY) -m benchmarks  # as measured in the README

UI_PORT ?= 5000
ui: $(STAMP)            ## the MLflow UI on http://127.0.0.1:$(UI_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port $(UI_PORT)

# The team's shared MLflow server (docs/cluster.md, "A shared tracking server"): MLflow's
# basic-auth app configured by deploy/mlflow_basic_auth.ini. Its store, artifacts, user
# database and Flask secret key (made once and kept, so that logins survive restarts) live in
# $(TRACKING_DIR)/. The first start needs MLFLOW_AUTH_ADMIN_PASSWORD (12 characters or more).
TRACKING_DIR  ?= tracking-server
TRACKING_PORT ?= 5000
# The address the team reaches it on: set TRACKING_HOST=<this node's cluster IP> (loopback by default).
TRACKING_HOST ?= 127.0.0.1
tracking-server: $(STAMP)  ## the team's password-protected MLflow server on $(TRACKING_HOST):$(TRACKING_PORT)
	mkdir -p -m 700 $(TRACKING_DIR)
	test -s $(TRACKING_DIR)/secret_key || (umask 077 && $(PY) -c "import secrets; print(secrets.token_hex(32))" > $(TRACKING_DIR)/secret_key)
	cd $(TRACKING_DIR) && MLFLOW_FLASK_SERVER_SECRET_KEY=$$(cat secret_key) \
	  MLFLOW_AUTH_CONFIG_PATH=$(abspath deploy/mlflow_basic_auth.ini) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	  mlflow server --app-name basic-auth --host $(TRACKING_HOST) --port $(TRACKING_PORT) \
	  --backend-store-uri sqlite:///$(abspath $(TRACKING_DIR))/mlflow.db \
	  --artifacts-destination $(abspath $(TRACKING_DIR))/artifacts

lint: $(STAMP)
	$(VENV)/bin/ruff check ripu pipelines tests benchmarks
