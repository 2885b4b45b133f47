"""farm: the command line (Typer + rich)."""
