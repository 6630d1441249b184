# telegen: `make run` and `make test` work on a fresh Debian 12 machine, as root.
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?=

.PHONY: setup run test test-unit lint typecheck bench image install clean

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/bin/telegen run $(if $(CONFIG),--config $(CONFIG),)

test: setup
	$(PY) -m pytest -p no:cacheprovider tests

test-unit: setup
	$(PY) -m pytest -p no:cacheprovider tests/unit tests/layout

lint: setup
	$(VENV)/bin/ruff check telegen tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info

# Feature-specific targets (image, install, ...) live in mk/*.mk.
-include mk/*.mk
