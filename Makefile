# The two commands of the README's quickstart. Each one sets itself up (scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test fairness-check fairness-baseline ui clean

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
	$(MAKE) fairness-check

# The project's own fairness gate: a small VAE audited and checked against .ci/fairness.toml and
# the committed baseline audit (exit 1 when it regressed). Outputs in build/fairness/.
FAIRNESS_RUN = --model vae --dataset faces --epochs 2 --image-size 32 --classifier-epochs 2 --seed 0 \
	--accelerator cpu --tracking-uri sqlite:///build/fairness/mlflow.db --experiment fairness-gate

## fairness-check: audit a small VAE and check it against .ci/fairness.toml and .ci/fairness-baseline/
fairness-check: setup
	rm -rf build/fairness && mkdir -p build/fairness
	GENFAIR_CACHE_DIR=build/fairness/cache $(BIN)/audit run $(FAIRNESS_RUN) --out build/fairness/result \
		--policy .ci/fairness.toml --baseline .ci/fairness-baseline --junit build/fairness/junit.xml

## fairness-baseline: re-record .ci/fairness-baseline/ (when a change is meant to move the numbers)
fairness-baseline: setup
	rm -rf build/fairness && mkdir -p build/fairness
	GENFAIR_CACHE_DIR=build/fairness/cache $(BIN)/audit run $(FAIRNESS_RUN) --out build/fairness/result \
		--policy .ci/fairness.toml
	rm -rf .ci/fairness-baseline && cp -r build/fairness/result .ci/fairness-baseline

## ui: open the MLflow UI on the local store
ui: setup
	$(BIN)/audit ui

clean:
	rm -rf $(VENV) mlflow.db mlruns .pytest_cache
