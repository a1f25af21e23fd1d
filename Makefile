# The two commands of the README: `make demo` and `make test`. Each creates the
# virtual environment first when it is missing or older than the dependency files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= workdirs/quickstart

CI_WORKDIR ?= workdirs/ci-cpu
BASELINE := benchmarks/baseline-cpu.json

.PHONY: demo test test-fast lock bench-ci baseline ci-suite ab-ci gpu-check

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m bench.main --config=configs/quickstart.py --workdir=$(WORKDIR) --restart

# The architecture first (pyproject.toml's import-linter contracts: seconds), then the tests.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The inner loop while changing the harness (under 2 minutes on 2 cores): the contracts,
# then only the tests marked fast, which together run the command lines end to end.
test-fast: $(STAMP)
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(PY) -m pytest -q -m fast $(PYTEST_ARGS)

# The CI benchmark (configs/ci_cpu.py) against the committed baseline: exit 1 on a
# deterministic change (parameters, XLA FLOPs or bytes, compiled memory); timing
# differences are printed but never fail on this shared, noisy machine.
bench-ci: ci-suite
	$(PY) -m bench.compare $(BASELINE) $(CI_WORKDIR)/report.json --timing=advisory --format=text

# The CI timing gate: bench.ab of HEAD against its first parent, interleaved in fresh
# processes on this machine; exit 1 on a regression verdict. Deterministic figures are
# printed, not gated here: bench-ci diffs them against the baseline, which an intended
# change refreshes. Without a parent (a shallow or one-commit clone) there is nothing to
# compare.
AB_WORKDIR ?= workdirs/ab-ci
AB_BASE ?= HEAD^
AB_ARGS ?= --rounds=8 --look_every=4 --max_rounds=16 --max_minutes=8 \
	--config=configs/param_vs_runtime.py --config.timed_steps=20 \
	--config.select=seed_cnn,mlp_1024x2,cifar_base,cifar_batchnorm_first
ab-ci: $(STAMP)
	@if git rev-parse -q --verify '$(AB_BASE)^{commit}' >/dev/null; then \
	  env -u XLA_FLAGS JAX_PLATFORMS=cpu $(PY) -m bench.ab --base='$(AB_BASE)' --new=HEAD \
	    --workdir=$(AB_WORKDIR) --changes=advisory $(AB_ARGS); \
	else echo 'timing A/B skipped: $(AB_BASE) is not in this clone'; fi

# On a fresh GPU machine: its own virtual environment with jax's CUDA 12 wheels, then
# bench/gpu_check.py (ResNet-50 throughput, MFU, data wait, scaling, the seed study;
# one table, within about 8 minutes). Exit 2 without a GPU: it never falls back to the CPU.
GPU_VENV ?= .venv-gpu
GPU_STAMP := $(GPU_VENV)/.installed
$(GPU_STAMP): pyproject.toml requirements.lock
	test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GPU_VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[cuda12]'
	touch $(GPU_STAMP)
gpu-check: $(GPU_STAMP)
	$(GPU_VENV)/bin/python -m bench.gpu_check --workdir=workdirs/gpu-check

# Refresh the baseline after an intended change to a model or to XLA; commit the file.
baseline: ci-suite
	mkdir -p $(dir $(BASELINE))
	cp $(CI_WORKDIR)/report.json $(BASELINE)

# On the CPU, one device, whatever jaxlib and XLA_FLAGS this shell has: a GPU or forced
# host devices would change the per-device figures and read as a changed model.
ci-suite: $(STAMP)
	env -u XLA_FLAGS JAX_PLATFORMS=cpu $(PY) -m bench.main --config=configs/ci_cpu.py --workdir=$(CI_WORKDIR) --restart

# Re-pin requirements.lock from the environment (after changing pyproject.toml).
lock: $(STAMP)
	{ echo '# Exact versions CI installs (pip install -c requirements.lock -e .[test]).'; \
	  echo '# Regenerate after changing pyproject.toml: make lock'; \
	  $(PY) -m pip freeze --exclude-editable | grep -vi '^flax-bench'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
