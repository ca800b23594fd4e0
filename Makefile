# atomic-lab — the README's commands. Each target installs what it needs.
# Debian's libvirt bindings (python3-libvirt, installed by `make host`) instead of compiling libvirt-python:
# the venv is made from the system's Python and sees its site packages.
PYTHON ?= $(if $(wildcard /usr/lib/python3/dist-packages/libvirt.py),/usr/bin/python3,python3)
VENV   := .venv
LAB    := $(VENV)/bin/lab
PYTEST := $(VENV)/bin/pytest
NAME   ?= smoke
ARGS   ?=
JOBS   ?= $(shell nproc)# VMs (and test workers) at once: one per core

.PHONY: setup host scenario test unit nightly bench soak lint docs clean

setup: host $(VENV)/.installed

host:
	@scripts/setup-host.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,replay]'
	mkdir -p $(VENV)/share/bash-completion/completions
	$(VENV)/bin/register-python-argcomplete lab > $(VENV)/share/bash-completion/completions/lab
	touch $@

## make scenario NAME=<scenario> [ARGS="--set k=v --keep"]: run one scenario in a fresh VM
scenario: setup
	$(LAB) run $(NAME) $(ARGS)

## make test: lint, unit tests, libvirt test-driver tests, and every mission scenario on real guests
## (scenarios/ through lab's pytest plugin; smoke runs through the CLI in tests/, the catalog nightly)
test: setup lint
	$(PYTEST) -n $(JOBS) --dist worksteal --durations=25 -m "not catalog" --ignore=scenarios/smoke.py tests scenarios

## make unit: only what needs no hypervisor
unit: setup
	$(PYTEST) -m "not vm" tests

## make nightly: everything make test runs, plus the field-bug catalog, each scenario's choices as items
## (--lab-variants) and soak-like tests; ARGS="--lab-shard K/N" runs a slice (the nightly workflow's matrix);
## re-runs a run the lab failed (exit 2) once (flaky if it then passes); writes runs/nightly-<stamp>/
## (summary.md, summary.json, junit.xml of the scenario runs) and runs/nightly-junit.xml
nightly: setup
	$(PYTEST) -n $(JOBS) --dist worksteal --durations=40 tests scenarios --nightly --lab-variants --lab-external \
		--lab-rerun-failed 1 $(ARGS) \
		--junitxml=runs/nightly-junit.xml \
		--lab-report runs/nightly-$$(date -u +%Y%m%dT%H%M%SZ)

## make bench: timings of the smoke VM, printed as figures
bench: setup
	$(VENV)/bin/python scripts/bench.py

## make soak: smoke 20 times in a row and two at once 10 times; fails on any failure or leftover
soak: setup
	$(VENV)/bin/python scripts/soak.py

# The tables docs/scenarios.md makes from the scenarios' declarations (stand-ins, field-note coverage).
docs: setup
	$(VENV)/bin/python scripts/docs_tables.py

lint: setup
	$(VENV)/bin/ruff check lab scenarios tests scripts conftest.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

clean:
	$(LAB) cleanup
	rm -rf runs
