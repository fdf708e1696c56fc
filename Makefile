# benchctl: `make setup` once, then `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup venv pulumi test test-unit test-stacks test-e2e test-reliability lint bench-all demo clean

setup: venv pulumi ## venv with benchctl[dev] + the pinned Pulumi CLI (cached in ~/.cache/benchctl)

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

pulumi:
	bash scripts/install-pulumi.sh

test: ## everything CI runs: unit, stack mocks, end-to-end (real engine + sshd), reliability
	$(PY) -m pytest -q

test-unit:
	$(PY) -m pytest -q tests/unit
test-stacks:
	$(PY) -m pytest -q tests/stacks
test-e2e:
	$(PY) -m pytest -q tests/e2e
test-reliability:
	$(PY) -m pytest -q tests/reliability

lint:
	$(VENV)/bin/ruff check benchctl stacks tests benchmarks

demo: ## the main job on the embedded default: local stack, simulator engine, sweep, results, destroy
	$(VENV)/bin/benchctl run -c examples/local.toml

clean:
	rm -rf .benchctl results build dist *.egg-info
