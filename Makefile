# Two commands on a fresh machine (Python 3.11, pip, git, make):
#   make run    install from uv.lock, run the whole pipeline, record it in the audit ledger
#   make test   the whole test suite (unit tests, notebooks with nbval, clean-clone reproduction)
.PHONY: setup run repro test test-fast lab clean help
.DEFAULT_GOAL := help

PYTHON   ?= python3
UV_VERSION := 0.13.9
TOOLS    := .tools
UV       := $(TOOLS)/bin/uv
RUN      := $(UV) run --frozen --no-sync

help:
	@echo "make run    install everything and run the workbook; prints the path of reports/index.html"
	@echo "make test   run the whole test suite"
	@echo "make test-fast   unit tests only (a few minutes; no pipeline run)"
	@echo "make lab    open the notebooks in JupyterLab (after make run: they read its outputs)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# The `lab` dependency group (JupyterLab) is part of the setup, so `make lab` installs nothing
# when it runs (a fresh machine may be offline by then); `uv sync` is exact, so every sync names it.
.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --group lab --python $(PYTHON)
	@touch $@

setup: .venv/.synced  ## install the locked environment (with JupyterLab) into .venv

repro: setup  ## run the DVC pipeline (a no-op when nothing changed)
	$(RUN) clinval study embed
	$(RUN) clinval study check  # refuse a bad study (or a plan that does not fit it) before dvc repro
	$(RUN) dvc repro

# The pipeline's own signer is a machine identity (like an SSH host key): its passphrase
# comes from CLINVAL_PASSPHRASE or is generated once into the private key store (mode 600).
KEY_STORE       := $(or $(CLINVAL_HOME),$(or $(XDG_CONFIG_HOME),$(HOME)/.config)/clinval)
PIPELINE_SECRET := $(KEY_STORE)/pipeline.passphrase

$(PIPELINE_SECRET):
	@mkdir -p $(KEY_STORE) && umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(24))" > $@

run: repro $(if $(CLINVAL_PASSPHRASE),,$(PIPELINE_SECRET))  ## the workbook, start to finish, recorded in the ledger
	CLINVAL_PASSPHRASE="$${CLINVAL_PASSPHRASE:-$$(cat $(PIPELINE_SECRET))}" $(RUN) clinval audit record --create-signer
	$(RUN) clinval report pccp
	@echo "Open: $(CURDIR)/reports/index.html"

# Two workers: the clean-clone pipeline and the review gate run beside the unit tests;
# --dist loadfile keeps each file's fixtures (one clone per file) on one worker.
test: repro  ## nbval and `repro check` need the pipeline's outputs; everything else needs nothing
	$(RUN) pytest -n 2 --dist loadfile -p no:cacheprovider --durations=12 tests --nbval-lax notebooks

test-fast: setup  ## unit tests only (no clone, no pipeline): the inner loop
	$(RUN) pytest -n 2 -m "not e2e" -p no:cacheprovider tests

# `clinval lab` pins the numeric environment (kernels compute what the records hold), passes
# --allow-root when run as root, and keeps the notebooks' committed metadata on save.
lab: setup  ## JupyterLab on notebooks/; run `make run` first: the notebooks read its outputs
	$(RUN) clinval lab notebooks/

clean:
	rm -rf .venv $(TOOLS) .clinval
