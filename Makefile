# Set-up and the two README commands. Everything installs into ./.venv from nothing but Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch==2.13.0 resolves to the local CPU wheel on these machines (no multi-GB CUDA download).
TORCH  ?= torch==2.13.0

.PHONY: venv demo test bench clean

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

clean:
	rm -rf $(VENV) adaptim-report .pytest_cache
