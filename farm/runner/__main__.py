"""``python -m farm.runner <job-id>``: the Ray Job entrypoint (see `farm.runner.main`)."""

from farm.runner.main import cli

cli()
