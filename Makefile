# bigearth_spark — one command sets up and runs the demo, one command runs the tests.
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   := demo
PAIRS  ?= 300

.PHONY: setup demo test test-fast lint bench clean

setup: $(VENV)/.bigearth_setup_done

$(VENV)/.bigearth_setup_done: pyproject.toml scripts/setup_env.sh scripts/build_horovod.sh scripts/configure_spark.sh
	bash scripts/setup_env.sh

## demo: set up; generate a sample archive; ingest it with spark-submit and print the summary;
## train the S-CNN with horovodrun -np 2; evaluate it on the test split and write the report
demo: setup
	rm -rf $(DEMO)
	$(VENV)/bin/bigearth-spark synth --flavor v1 --pairs $(PAIRS) --seed 7 --defects --out $(DEMO)/archive
	$(VENV)/bin/spark-submit jobs/ingest.py --input $(DEMO)/archive --lake $(DEMO)/lake --summary
	$(VENV)/bin/horovodrun -np 2 -H localhost:2 $(PY) jobs/train.py --config conf/train/scnn-demo.yaml \
		--lake $(DEMO)/lake --out $(DEMO)/run --mlflow-uri $(DEMO)/mlruns
	$(PY) jobs/evaluate.py --lake $(DEMO)/lake --checkpoint $(DEMO)/run/latest.pt --split test \
		--report $(DEMO)/report | tee $(DEMO)/evaluation.json
	@echo "report: $(DEMO)/report/index.html"

## test: set up if needed, lint, run the whole test suite
test: setup lint
	$(PY) -m pytest -q -ra

## test-fast: set up if needed, lint, run the unit tests, for development: neither `slow`
## (spark-submit, horovodrun) nor `spark` (every test using the Spark session fixture, marked by
## tests/conftest.py); 407 tests in 1.5-2.5 min on the 2-core dev machine (`make test`: all)
test-fast: setup lint
	$(PY) -m pytest -q -ra -m "not slow and not spark"

lint: setup
	$(VENV)/bin/ruff check bigearth_spark jobs tests benchmarks
	$(VENV)/bin/ruff format --check bigearth_spark jobs tests benchmarks

bench: setup
	$(PY) benchmarks/ingest.py
	$(PY) -m benchmarks.loader

clean:
	rm -rf $(DEMO) .pytest_cache
