# Two commands do all the set-up: `make lab` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := diffusion-course
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=1800

.PHONY: venv lab test test-gpu unit lint format notebooks timings flashcards site slides handouts doctor instructor-docs clean

# The set-up that `make lab` and `make test` share: the venv, the kernel, then JupyterLab opening clean
# (jupyter/README.md): our settings defaults go to <app dir>/settings/overrides.d/ (no news prompt, no
# update check), and the course notebooks are trusted so their saved outputs show.
$(STAMP): pyproject.toml jupyter/overrides.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[lab,test,site]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (diffusion-course)"
	overrides="$$($(BIN)/python -c 'from jupyterlab.commands import get_app_dir; print(get_app_dir())')/settings/overrides.d" \
		&& mkdir -p "$$overrides" && cp jupyter/overrides.json "$$overrides/diffusion-course.json"
	$(BIN)/jupyter trust notebooks/*.ipynb solutions/*.ipynb > /dev/null
	touch $(STAMP)

venv: $(STAMP)

lab: $(STAMP)  ## start JupyterLab on notebooks/ with the course kernel
	$(BIN)/jupyter trust notebooks/*.ipynb > /dev/null  # again: trust follows each file's contents (git pull, make notebooks)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lint: $(STAMP)  ## ruff over the package, tests, tools and notebooks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: $(STAMP)  ## the fast tests only
	$(BIN)/pytest -m "not notebooks" -q

# `make test` runs one pytest worker per core (pytest-xdist), each single-threaded, so a 2-core CI machine runs two
# notebooks at a time; a notebook's nbval cells and a test module stay on one worker (tests/conftest.py).
# JOBS=1 runs it in one process.
XDIST = -n $(or $(JOBS),auto) --dist loadscope

test: lint  ## everything: lint, unit tests, solutions/ via papermill, notebooks/ via nbval, at the smoke budget
	DLIB_BUDGET=smoke OMP_NUM_THREADS=1 $(BIN)/pytest $(XDIST) tests notebooks $(NBVAL)

test-gpu: lint  ## the same commands at the gpu budget, on a CUDA machine
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu needs CUDA')"
	DLIB_BUDGET=gpu $(BIN)/pytest tests notebooks $(NBVAL)

notebooks: $(STAMP)  ## regenerate notebooks/ from solutions/ and execute both at the cpu budget
	$(BIN)/python tools/build_notebooks.py --execute --budget cpu

timings: $(STAMP)  ## time every notebook (solutions/) at BUDGET (default smoke) without touching the repo
	$(BIN)/python tools/build_notebooks.py --execute --solutions-only --budget $(or $(BUDGET),smoke) --out build/timed

site: $(STAMP)  ## the course as an offline static website: build/site/html/index.html
	$(BIN)/python tools/build_site.py

slides: $(STAMP)  ## one offline reveal.js deck per notebook: build/slides/NN_name.slides.html
	$(BIN)/python tools/build_slides.py

handouts: $(STAMP)  ## one printable PDF per notebook from the offline site (math typeset): build/handouts/NN_name.pdf
	$(BIN)/python tools/build_handouts.py

doctor:  ## pre-workshop check of this machine (QUICK=1 skips the notebook run); reports a missing .venv instead of building it
	@test -x $(BIN)/python || { echo "FAIL  no .venv -> fix: make venv"; exit 1; }
	$(BIN)/python tools/doctor.py $(if $(QUICK),--quick)

instructor-docs: $(STAMP)  ## regenerate docs/instructors/workshops.md and common-mistakes.md (from the README's timings and the catalogues)
	$(BIN)/python tools/workshop_plans.py
	$(BIN)/python tools/common_mistakes.py

flashcards: $(STAMP)  ## the interview question bank (docs/interview/questions.yaml) as an Anki deck: build/flashcards.csv
	$(BIN)/python tools/export_flashcards.py --out build/flashcards.csv

clean:
	rm -rf build .pytest_cache .ruff_cache
