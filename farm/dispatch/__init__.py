"""Dispatch: claims queued jobs and runs each as a Ray Job; watches, retries, cancels."""

from farm.dispatch.dispatcher import Dispatcher

__all__ = ["Dispatcher"]
