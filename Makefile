# ssl-norms: every target sets itself up (venv + installs) first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# faiss-gpu where nvidia-smi sees a GPU, faiss-cpu elsewhere (they provide the same module).
EXTRA := $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo gpu; else echo cpu; fi)
STAMP := $(VENV)/.installed-$(EXTRA)
DATA ?= ../shared/data
PYTEST_ARGS ?=

.PHONY: install test test-fast demo lint format bench reproduce-fig2 reproduce-all reproduce-report clean help

help:
	@echo "make demo | test | lint | format | bench | install | clean"
	@echo "make reproduce-<name> [PROFILE=paper|cpu|smoke] [DEVICES=N] [NODES=M] [DATA_DIR=DIR] [ARGS=...]"
	@echo "  <name>: table1 table2 table3 table-s1 table-s2 fig3 fig4 fig5 fig-s4 fig-s6 all report; fig2 (simulations)"

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRA),dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

test: install
	WANDB_MODE=offline WANDB_SILENT=true SSL_NORMS_DATA=$(DATA) $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	WANDB_MODE=offline WANDB_SILENT=true SSL_NORMS_DATA=$(DATA) $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

reproduce-fig2: install
	$(VENV)/bin/ssl-norms simulate aparametric --out results/fig2
	$(VENV)/bin/ssl-norms simulate latent-classes --out results/fig2
	@echo "Figure 2 written to results/fig2/"

# The training demo: SimCLR + MLP on imbalanced latent classes (no download), all monitors
# on, then its plots. DEMO_RUN sets the run folder.
DEMO_RUN ?= runs/demo/$(shell date +%Y%m%d-%H%M%S)
demo: install
	WANDB_SILENT=true $(VENV)/bin/ssl-norms fit -c configs/demo.yaml --run_dir $(DEMO_RUN)
	$(VENV)/bin/ssl-norms plot $(DEMO_RUN)
	@echo "demo done: run folder $(DEMO_RUN) (config.yaml, checkpoints/, csv/metrics.csv, wandb/, plots/)"

# Speed goals are measured here, never in tests: results/bench.json, BENCHMARKS.md (its reading
# of the numbers is benchmarks/analysis.md, kept by hand) and its
# scaling figure (benchmarks/run_all.py). QUICK=1: tiny sizes, the report in BENCH_DIR (the
# test suite runs it to prove the scripts run). lightly (the peer loop) comes with .[bench].
QUICK ?=
BENCH_DIR ?= results
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRA),dev,bench]"
	@touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py --out-dir $(BENCH_DIR) $(if $(QUICK),--quick,--note-file benchmarks/analysis.md) $(BENCH_ARGS)

# The paper's results (configs/README.md, "Reproducing the paper"): `make reproduce-<name>`
# runs `ssl-norms reproduce <name>` (resumable; results/<name>/ and results/REPORT.md).
# PROFILE=paper (the paper's size, GPU-days) | cpu (2 CPU cores on ../shared/data, about an
# hour for `reproduce-all`) | smoke (seconds per run). DEVICES / NODES go to every fit
# (trainer.devices / num_nodes; batch_size stays the global batch), DATA_DIR to its data
# config; ARGS is added to the command (e.g. ARGS="--dry-run", ARGS="-- --trainer.precision
# 16-mixed"). TABLE3_ARGS is the older name of ARGS for reproduce-table3.
PROFILE ?= paper
DEVICES ?=
NODES ?=
DATA_DIR ?=
ARGS ?=
TABLE3_ARGS ?=
REPRODUCE_FLAGS = --profile $(PROFILE) $(if $(DEVICES),--devices $(DEVICES)) $(if $(NODES),--nodes $(NODES)) $(if $(DATA_DIR),--data-dir $(DATA_DIR))
RESULTS := table1 table2 table3 table-s1 table-s2 fig3 fig4 fig5 fig-s4 fig-s6 all report
.PHONY: $(addprefix reproduce-,$(RESULTS))
$(addprefix reproduce-,$(RESULTS)): reproduce-%: install
	$(VENV)/bin/ssl-norms reproduce $* $(REPRODUCE_FLAGS) $(TABLE3_ARGS) $(ARGS)

clean:
	rm -rf results runs .pytest_cache
