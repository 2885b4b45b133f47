"""Ray Job drivers: one module per job kind, shared stages, and the runner entrypoint."""
