"""A throwaway kind, added the way every kind is: one spec module (this) and one pipeline module.

`tests/test_new_kind.py` names this module in ``FARM_EXTRA_KINDS``; nothing
else in the farm knows it exists.
"""

from __future__ import annotations

from pydantic import Field

from kinds.base import JobSpec, KindInfo, Output


class EchoSpec(JobSpec):
    """Renders each word as a tiny image on the Ray cluster and writes a CSV of what it made."""

    words: list[str] = Field(min_length=1, max_length=16)

    def total_items(self) -> int:
        return len(self.words)


KIND = KindInfo(
    "test.echo", EchoSpec, pipeline="tests.extra_kinds.echo_pipeline",
    outputs={"card": Output("image", "one", "one PNG per word"), "summary": Output("table", "one", "the words and their cards")},
)
