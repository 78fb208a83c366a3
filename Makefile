# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch lies on disk on these machines; an unpinned torch pulls CUDA (GBs).
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test test-all soak bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/pip || $(PY) -m venv --clear $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[broker,test,bench,dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/forexd demo

# Two processes (the fault and broker tests mostly wait on brokers, timers and subprocesses),
# then the tests that stop a shared service (PostgreSQL), alone.
XDIST ?= -n 3 --dist worksteal
test: setup
	$(BIN)/python -m pytest -q $(XDIST) -m "not soak and not slow and not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m "serial and not soak and not slow" $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -q $(XDIST) -m "not soak and not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m "serial and not soak" $(PYTEST_ARGS)

soak: setup
	$(BIN)/python -m pytest -q -m soak $(PYTEST_ARGS)

bench: setup
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: setup
	$(BIN)/ruff check forex_diffusion retraining streams tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache
