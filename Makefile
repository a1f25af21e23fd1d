# The two commands of the README: `make demo` and `make test`. Each creates the
# virtual environment first when it is missing or older than the dependency files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= workdirs/quickstart

CI_WORKDIR ?= workdirs/ci-cpu
BASELINE := benchmarks/baseline-cpu.json

.PHONY: demo test lock bench-ci baseline ci-suite

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m bench.main --config=configs/quickstart.py --workdir=$(WORKDIR) --restart

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The CI benchmark (configs/ci_cpu.py) against the committed baseline: exit 1 on a
# deterministic change (parameters, XLA FLOPs or bytes, compiled memory); timing
# differences are printed but never fail on this shared, noisy machine.
bench-ci: ci-suite
	$(PY) -m bench.compare $(BASELINE) $(CI_WORKDIR)/report.json --timing=advisory --format=text

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
