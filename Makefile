# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= all,dev

.PHONY: install demo test lint typecheck bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-$(EXTRAS): $(BIN)/activate pyproject.toml
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

## Install, then run the main job on built-in data: cross-validated recurrence
## prediction on the ACRG gastric cohort, external validation on Yonsei, HTML report.
demo: install
	$(BIN)/metastat datasets list
	$(BIN)/metastat expression evaluate --dataset gastric_acrg --outcome recurrence --cv 5 --out runs/demo/acrg_cv
	$(BIN)/metastat expression evaluate --dataset gastric_acrg --test gastric_yonsei --outcome recurrence --out runs/demo/acrg_to_yonsei
	$(BIN)/metastat expression report runs/demo/acrg_cv --out runs/demo/acrg_cv/report.html
	@echo "Report: runs/demo/acrg_cv/report.html"

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install typecheck
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

## mypy with the pydantic plugin over src/ (settings in pyproject.toml)
typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/bench_expression_nested_cv.py

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
