"""Throwaway kinds for tests: a kind module written to a folder on sys.path, and a registry to put it in."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from kinds import registry


def isolate_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kinds a test loads vanish with the test (the registry is process-wide)."""
    registry.load()
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    monkeypatch.setattr(registry, "_LOADED", set(registry._LOADED))


def write_module(folder: Path, monkeypatch: pytest.MonkeyPatch, source: str, prefix: str = "throwaway") -> str:
    """A module with this source, importable under a fresh name; returns the name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    return name


def write_kind(folder: Path, monkeypatch: pytest.MonkeyPatch, kind: str, hooks: str | None = None) -> str:
    """A kind module: a spec with one field, a per-item video and a job-level table; returns the module name."""
    return write_module(folder, monkeypatch, f"""
        from kinds import JobSpec, KindInfo, Output

        class EchoSpec(JobSpec):
            '''Echoes its items: a kind that exists only in a test.'''
            items: int = 1

            def total_items(self) -> int:
                return self.items

        KIND = KindInfo(
            {kind!r}, EchoSpec, pipeline="pipelines.nowhere", hooks={hooks!r},
            outputs={{"clip": Output("video", "one", "the echoed clip"), "report": Output("table")}},
        )
    """, "kind")
