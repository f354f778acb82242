# Two entry points for a fresh clone:
#   make demo   install into .venv, then run the built-in demo end to end
#   make test   install into .venv (with test and slurm extras), then run the test suite
PYTHON ?= python3
VENV ?= .venv

.PHONY: install demo test clean

install: $(VENV)/.installed

# Bytecode is compiled once here, in parallel: where PYTHONDONTWRITEBYTECODE is set (CI is such a
# place), nothing else writes .pyc files, and every Python process of the workflow (each Snakemake
# job) would parse torch, scipy, mne and snakemake from source again: ~8 s of CPU per process.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --no-compile -e '.[test,slurm]'
	$(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	touch $@

demo: install
	$(VENV)/bin/snakemake --cores all

test: install
	$(VENV)/bin/python -m compileall -q dsrpipe > /dev/null
	$(VENV)/bin/pytest

clean:
	rm -rf results resources logs .snakemake
