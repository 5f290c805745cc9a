# Two entry points for a fresh machine: `make demo` (light core, no torch) and `make test`.
# Heavier modalities install only when asked: `make demo-slides`, `make demo-mil`, `make demo-fusion`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUNS   ?= runs
# CPU-only torch (a few hundred MB instead of ~5 GB of CUDA wheels), e.g.
#   make demo-slides TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

# install set -> pip extras
EXTRAS_core   :=
EXTRAS_slides := [slides]
EXTRAS_mil    := [mil]
EXTRAS_fusion := [fusion]
EXTRAS_serve  := [serve]
EXTRAS_test   := [all,dev]

.PHONY: install demo demo-slides demo-mil demo-fusion test lint typecheck bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-%: $(BIN)/activate pyproject.toml
	@echo "[make] installing metastat$(EXTRAS_$*) into $(VENV) ..."
	$(if $(and $(TORCH_INDEX),$(filter-out core,$*)),$(BIN)/python -m pip install -q \
	    torch==2.14.1 torchvision==0.29.1 --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".$(EXTRAS_$*)"
	touch $@

install: $(VENV)/.installed-core

## Install the light core (no torch), then run the main job on built-in data: cross-validated
## recurrence prediction on the ACRG gastric cohort, external validation on Yonsei, both reports.
demo: $(VENV)/.installed-core
	$(BIN)/metastat datasets list
	@echo "[make] 5-fold patient-grouped CV on ACRG, model vs comparator, 1000 bootstrap replicates (1-2 min) ..."
	$(BIN)/metastat expression evaluate --dataset gastric_acrg --outcome recurrence --cv 5 --out $(RUNS)/demo/acrg_cv
	@echo "[make] external validation: train on ACRG, test on Yonsei (about 1 min) ..."
	$(BIN)/metastat expression evaluate --dataset gastric_acrg --test gastric_yonsei --outcome recurrence --out $(RUNS)/demo/acrg_to_yonsei
	@echo "[make] reports ..."
	$(BIN)/metastat expression report $(RUNS)/demo/acrg_cv
	$(BIN)/metastat expression report $(RUNS)/demo/acrg_to_yonsei
	$(BIN)/metastat report index $(RUNS)/demo
	@echo "Reports: $(RUNS)/demo/index.html"

## Slides: tissue, tiles and tile embeddings of the shipped CMU-1 region (torch, timm, OpenSlide).
demo-slides: $(VENV)/.installed-slides
	$(BIN)/metastat slides process tests/data/slides/CMU-1-Small-Region.svs --out $(RUNS)/demo-slides --workers 0
	@echo "Features: $(RUNS)/demo-slides/features  QC: $(RUNS)/demo-slides/qc"

## MIL: a shipped, labelled small cohort of real tile-feature bags: cross-validated ABMIL vs
## mean pooling, then the final model scores slides from sources never seen in training.
demo-mil: $(VENV)/.installed-mil
	$(BIN)/metastat mil planted --out $(RUNS)/demo-mil/cohort
	$(BIN)/metastat mil evaluate --manifest $(RUNS)/demo-mil/cohort/manifest.csv --out $(RUNS)/demo-mil/cv
	$(BIN)/metastat mil train --manifest $(RUNS)/demo-mil/cohort/manifest.csv --out $(RUNS)/demo-mil/model
	$(BIN)/metastat mil predict --model $(RUNS)/demo-mil/model/model --manifest $(RUNS)/demo-mil/cohort/heldout.csv --out $(RUNS)/demo-mil/heldout_pred.csv
	@echo "Report: $(RUNS)/demo-mil/cv/report.html  held-out predictions: $(RUNS)/demo-mil/heldout_pred.csv"

## Fusion: clinical vs expression vs fused models on NKI breast (distant metastasis), same splits.
demo-fusion: $(VENV)/.installed-fusion
	$(BIN)/metastat fusion evaluate -d breast_nki -o dmfs --out $(RUNS)/demo-fusion/nki

## Every test dependency (all extras + dev tools); what CI runs.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(VENV)/.installed-test typecheck
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

## mypy with the pydantic plugin over src/ (settings in pyproject.toml)
typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_expression_nested_cv.py

clean:
	rm -rf $(VENV) $(RUNS) build dist src/*.egg-info
