# The two entry points the README opens with. Each sets itself up first.
.PHONY: demo test setup bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/farm demo

test: setup
	.venv/bin/python -m pytest -q -ra

bench: setup
	.venv/bin/python benchmarks/upload_memory.py
