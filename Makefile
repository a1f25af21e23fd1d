# The two commands of the README: `make demo` and `make test`. Each creates the
# virtual environment first when it is missing or older than the dependency files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= workdirs/quickstart

.PHONY: demo test lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m bench.main --config=configs/quickstart.py --workdir=$(WORKDIR) --restart

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Re-pin requirements.lock from the environment (after changing pyproject.toml).
lock: $(STAMP)
	{ echo '# Exact versions CI installs (pip install -c requirements.lock -e .[test]).'; \
	  echo '# Regenerate after changing pyproject.toml: make lock'; \
	  $(PY) -m pip freeze --exclude-editable | grep -vi '^flax-bench'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
