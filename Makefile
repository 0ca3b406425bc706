# The two quick-start commands: `make quickstart` (small benchmark end to end -> results/report/index.html)
# and `make test`. Both install what they need first.
PYTHON ?= python3
CORES ?= all

.PHONY: install quickstart benchmark test test-all lint

# torch first, pinned to the CPU build this project is tested with: an unpinned `torch>=2.2` lets the
# resolver pick a multi-GB CUDA build. A torch that is already installed (e.g. a CUDA build on a GPU node) is kept.
TORCH ?= torch==2.13.0

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e ".[workflow,test]"

# After an interrupted run both pick up where it stopped: a lock left by a killed Snakemake is removed when none
# runs here (fusebench.staleness), and outputs of jobs killed mid-way are redone (--rerun-incomplete).
quickstart: install
	$(PYTHON) -m fusebench.staleness unlock
	snakemake --cores $(CORES) --configfile config/test.yaml --rerun-incomplete
	@echo "Report: results/report/index.html"

benchmark: install
	$(PYTHON) -m fusebench.staleness unlock
	snakemake --cores $(CORES) --rerun-incomplete

test: install
	$(PYTHON) -m pytest

test-all: install
	$(PYTHON) -m pytest -m "slow or not slow"

lint: install
	ruff check .
	snakefmt --check .
	snakemake --lint --configfile config/test.yaml
