# bigearth_spark — one command sets up and runs the demo, one command runs the tests.
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   := demo
PAIRS  ?= 300

.PHONY: setup demo test test-fast lint bench clean

setup: $(VENV)/.bigearth_setup_done

$(VENV)/.bigearth_setup_done: pyproject.toml scripts/setup_env.sh scripts/build_horovod.sh scripts/install_delta_jars.sh
	bash scripts/setup_env.sh

## demo: set up, generate a sample archive, ingest it with spark-submit, print the summary
demo: setup
	rm -rf $(DEMO)
	$(VENV)/bin/bigearth-spark synth --flavor v1 --pairs $(PAIRS) --seed 7 --defects --out $(DEMO)/archive
	$(VENV)/bin/spark-submit jobs/ingest.py --input $(DEMO)/archive --lake $(DEMO)/lake

## test: set up if needed, lint, run the whole test suite
test: setup lint
	$(PY) -m pytest -q -ra

lint: setup
	$(VENV)/bin/ruff check bigearth_spark jobs tests benchmarks
	$(VENV)/bin/ruff format --check bigearth_spark jobs tests benchmarks

bench: setup
	$(PY) benchmarks/ingest.py

clean:
	rm -rf $(DEMO) .pytest_cache
