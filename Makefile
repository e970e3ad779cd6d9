# The two commands of the README's quickstart. Each one sets itself up (scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint ui clean

setup:
	@VENV=$(VENV) ./scripts/setup.sh

## demo: train a VAE on the embedded synthetic faces and audit it per subgroup (MLflow: ./mlflow.db)
demo: setup
	$(BIN)/audit run --model vae --dataset faces

## test: the whole suite: import contracts, doctests, unit and end-to-end tests
test: setup
	VENV=$(VENV) ./scripts/lint-imports.sh
	$(BIN)/pytest -q --doctest-modules --pyargs genfair.audit genfair.datasets genfair.models genfair.reports
	$(BIN)/pytest -q

## ui: open the MLflow UI on the local store
ui: setup
	$(BIN)/audit ui

clean:
	rm -rf $(VENV) mlflow.db mlruns .pytest_cache
