# The two commands in README.md: `make demo` (the main job) and `make test` (what CI runs).
# Each first runs scripts/setup.sh, which installs what is missing and is quick when nothing is.
SHELL := /bin/bash
VENV := .venv

.PHONY: setup demo test bench

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

# ruff, mypy and pytest all run, so one report shows every problem; any failure fails the target.
# mypy reads the packages through .venv/mypy-path (see pyproject.toml); sed turns its paths
# back into the checkout's own (descriptions/_parser.py, not .venv/mypy-path/sd_actors/...).
test: setup
	@status=0; \
	echo "== ruff check"; $(VENV)/bin/ruff check . || status=1; \
	echo "== mypy"; set -o pipefail; \
	$(VENV)/bin/mypy | sed -u 's|^\.venv/mypy-path/sd_actors/||' || status=1; \
	echo "== pytest"; $(VENV)/bin/pytest || status=1; \
	exit $$status

bench: setup
	@shopt -s nullglob; for script in bench/[!_]*.py; do \
	    echo "== $$script"; $(VENV)/bin/python "$$script" || exit 1; \
	done
