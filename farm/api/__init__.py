"""farm.api: the HTTP front door (FastAPI). Thin: auth, validation, routing."""

from farm.api.app import create_app

__all__ = ["create_app"]
