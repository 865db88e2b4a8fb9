# Every target here is something the README tells you to run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast lint format up bench bench-serving bench-scaling bench-sweeps bench-memory bench-soak clean

$(STAMP): pyproject.toml scripts/ensure-system-tools.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	bash scripts/ensure-system-tools.sh
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its test tools

# Two runs. Every test not marked `exclusive` on two xdist workers (most integration tests wait
# on processes, so one worker leaves a core idle; loadscope keeps a module's tests and its module
# fixtures on one worker); then the `exclusive` ones (they bound wall time or build network
# namespaces) one at a time. Mixed into one xdist run they ran alone all the same (the lock in
# tests/conftest.py), with one worker idle while each waited for the other's test to end.
test: install  ## the whole suite: unit, integration (real Redis, RQ, gunicorn), e2e
	$(BIN)/python -m pytest -n 2 --dist loadscope -m "not exclusive"
	$(BIN)/python -m pytest -m exclusive

test-fast: install  ## unit tests only
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The runner blocks its stop signals before Python imports anything (scripts/run_local.py says why);
# they are its STOP_SIGNALS (tests/unit/test_make_up_signal_mask.py keeps the two lists the same).
up: install  ## the whole stack locally: the Procfile under honcho, with Redis (or an embedded one)
	$(BIN)/python -S -c 'import _signal as s; s.pthread_sigmask(s.SIG_BLOCK, (s.SIGTERM, s.SIGINT, s.SIGHUP)); import scripts.run_local as r; raise SystemExit(r.main())' $(ARGS)

bench: install  ## engine speed vs PyTorch (MLP and CNN), then preset accuracy (~35 min, quiet machine); see BENCHMARKS.md
	$(BIN)/python -m pip install -q 'torch==2.13.0'
	$(BIN)/python -m benchmarks.engine
	$(BIN)/python -m benchmarks.accuracy

# The serving benchmark's baseline: the service as it was before the serving-speed work.
SERVING_BASELINE ?= da24882

bench-serving: install  ## HTTP serving vs a bare endpoint and SERVING_BASELINE, routes, profile, rollout, batch, cold start (~20 min)
	$(BIN)/python -m benchmarks.serving --baseline $(SERVING_BASELINE) --variant logged:ACCESS_LOG=- \
	    --sections latency,routes,profile,rollout,batch,cold
	$(BIN)/python -m benchmarks.lifecycle

bench-sweeps: install  ## a 16-trial sweep: sequential vs parallel trials vs parallel + pruning (~5 min)
	$(BIN)/python -m benchmarks.sweeps

bench-soak: install  ## 300 jobs and 30 sweeps with TTLs of seconds: Redis memory and keys back to baseline (~10 min)
	$(BIN)/python -m benchmarks.soak

bench-scaling: install  ## root: a host per service (network namespaces): publish-to-served, balancer, worker hosts (~10 min)
	$(BIN)/python -m benchmarks.scaling

bench-memory: install  ## worker RSS over 200 hot reloads + 1M predictions, trainer worker RSS over 100 jobs (~10 min)
	$(BIN)/python -m benchmarks.memory

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
