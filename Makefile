# Vigil — the two commands of the README, and the rest.
#   make demo   the pipeline on an embedded broker with a synthetic forum and a scripted incident
#   make test   the test suite (unit + integration through the real embedded broker)
# Both create .venv and install Vigil into it first (Python >= 3.11 and make are all they need).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit integration lint schemas dashboards bench clean lock

# requirements.lock pins every package to the versions CI last passed with (a fresh install
# otherwise takes whatever the registry has that day); `make lock` rewrites it.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	$(BIN)/python -m models.build   # ONNX text model from the installed sklearn one (no download)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vigil run --demo

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 -q

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

schemas: $(STAMP)
	$(BIN)/python -m streams.jsonschema

# Grafana dashboards are generated (deploy/grafana/dashboards.py); commit the JSON it writes.
dashboards: $(STAMP)
	$(BIN)/python deploy/grafana/dashboards.py

bench: $(STAMP)
	$(BIN)/python -m bench.passthrough

clean:
	rm -rf $(VENV) var .pytest_cache

# Re-pin requirements.lock after changing dependencies: a fresh venv resolves pyproject.toml
# without the old pins, and its `pip freeze` becomes the lock. Run the tests after it.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet '.[test]'
	{ sed -n '1,3p' requirements.lock; .venv-lock/bin/pip freeze | grep -v -i '^vigil[= @]'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .venv-lock
