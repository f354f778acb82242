# Two entry points for a fresh clone:
#   make demo   install into .venv, then run the built-in demo end to end
#   make test   install into .venv (with test and slurm extras), then run the test suite
PYTHON ?= python3
VENV ?= .venv

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --no-compile -e '.[test,slurm]'
	touch $@

demo: install
	$(VENV)/bin/snakemake --cores all

test: install
	$(VENV)/bin/pytest

clean:
	rm -rf results resources logs .snakemake
