# The two entry points the README opens with. Each sets itself up first.
.PHONY: demo test setup bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/farm demo

test: setup
	.venv/bin/python -m pytest -q -ra

# Every benchmark in turn (about 20 minutes on 2 cores); see benchmarks/README.md.
bench: setup
	.venv/bin/python benchmarks/shots.py
	.venv/bin/python benchmarks/serving.py
	.venv/bin/python benchmarks/batch.py
	.venv/bin/python benchmarks/diffusion_engine.py
	.venv/bin/python benchmarks/dispatch.py --jobs 40 --rounds 2
	.venv/bin/python benchmarks/load.py
