# The two quick-start commands: `make quickstart` (small benchmark end to end -> results/report/index.html)
# and `make test`. Both install what they need first.
PYTHON ?= python3
CORES ?= all

.PHONY: install quickstart benchmark test test-all lint

install:
	$(PYTHON) -m pip install --quiet -e ".[workflow,test]"

quickstart: install
	snakemake --cores $(CORES) --configfile config/test.yaml
	@echo "Report: results/report/index.html"

benchmark: install
	snakemake --cores $(CORES)

test: install
	$(PYTHON) -m pytest

test-all: install
	$(PYTHON) -m pytest -m "slow or not slow"

lint: install
	ruff check .
	snakemake --lint --configfile config/test.yaml
