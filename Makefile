# Two commands on a fresh machine (Python 3.11, pip, git, make):
#   make run    install from uv.lock, run the whole pipeline, record it in the audit ledger
#   make test   the whole test suite (unit tests, notebooks with nbval, clean-clone reproduction)
.PHONY: setup run repro test lab clean help
.DEFAULT_GOAL := help

PYTHON   ?= python3
UV_VERSION := 0.13.9
TOOLS    := .tools
UV       := $(TOOLS)/bin/uv
RUN      := $(UV) run --frozen --no-sync

help:
	@echo "make run    install everything and run the workbook; prints the path of reports/index.html"
	@echo "make test   run the whole test suite"
	@echo "make lab    open the notebooks in JupyterLab"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

setup: .venv/.synced  ## install the locked environment into .venv

repro: setup  ## run the DVC pipeline (a no-op when nothing changed)
	$(RUN) clinval study embed
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

test: repro  ## nbval needs the pipeline's outputs; unit and end-to-end tests need nothing else
	$(RUN) pytest
	$(RUN) pytest --nbval-lax notebooks -p no:cacheprovider

lab: setup
	$(UV) run --frozen --group lab jupyter lab notebooks/

clean:
	rm -rf .venv $(TOOLS) .clinval
