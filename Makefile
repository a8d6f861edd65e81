# The commands the README and .ci/run call.
PYTHON ?= python
PIP ?= $(PYTHON) -m pip

.PHONY: install install-test lint rust-test py-test test test-slow bench demo fmt

install:
	$(PIP) install .

# Editable install with the test extras (builds the Rust extension in release mode).
install-test:
	$(PIP) install -e ".[test]"

fmt:
	cargo fmt
	$(PYTHON) -m ruff format python tests benches
	$(PYTHON) -m ruff check --fix python tests benches

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings
	$(PYTHON) -m ruff check python tests benches
	$(PYTHON) -m ruff format --check python tests benches
	$(PYTHON) -m mypy.stubtest omicsembed._core
	$(PYTHON) -m mypy python/omicsembed

rust-test:
	cargo test --no-default-features

py-test:
	$(PYTHON) -m pytest

test: install-test lint rust-test py-test

# Long checks on real data (Tasic 2016 neurons in ../shared/data; skipped when absent).
test-slow:
	$(PYTHON) -m pytest -m slow

bench: install-test
	$(PYTHON) benches/bench_tissue.py
	$(PYTHON) benches/bench_sampler.py
	$(PYTHON) benches/bench_fe.py
	$(PYTHON) benches/bench_loglinear.py
	$(PYTHON) benches/bench_dbm.py
	$(PYTHON) benches/bench_ldvae.py

demo:
	omicsembed demo
