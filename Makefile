# Set-up and the two README commands. Everything installs into ./.venv from nothing but Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch==2.13.0 resolves to the local CPU wheel on these machines (no multi-GB CUDA download).
TORCH  ?= torch==2.13.0

.PHONY: venv demo test test-exhaustive bench clean lint gpu-check

$(BIN)/adaptim: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[lab,test]"
	@touch $@

venv: $(BIN)/adaptim

demo: venv
	$(BIN)/adaptim compare

test: venv
	$(BIN)/python -m pytest -q

test-exhaustive: venv
	$(BIN)/python -m pytest -q -m exhaustive

lint: venv
	$(BIN)/ruff check .

# The CUDA tests and `adaptim bench --device cuda` with the machine's own python3 (GPU machines
# have torch, triton and pytest; no venv, no network), in under ten minutes. Results in
# $(GPU_CHECK_OUT)/result.md; `GPU_CHECK_OUT=/some/dir make gpu-check` writes elsewhere.
GPU_PYTHON    ?= python3
GPU_CHECK_OUT ?= gpu-check

gpu-check:
	PYTHONPATH=src $(GPU_PYTHON) .ci/gpu_check.py --out "$(GPU_CHECK_OUT)"

clean:
	rm -rf $(VENV) adaptim-report .pytest_cache gpu-check
