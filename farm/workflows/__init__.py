"""Workflows: named DAGs of steps, each a job of a kind, chained by their typed outputs (see engine.py)."""
