"""What the `batch.*` kinds share: the spec naming the batch row, the result files."""

from __future__ import annotations

from pydantic import Field

from kinds.base import JobSpec, Output


class BatchSpec(JobSpec):
    """A batch's job: the batch row names its input file and endpoint."""

    batch_id: str = Field(pattern=r"^batch_[0-9a-f]{28}$")
    max_lines: int = Field(default=50_000, ge=1)
    max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)

    def max_failed_fraction(self) -> float:
        return 1.0  # failed requests land in the error file; the batch still completes


#: Job-level outputs (item ``None``): one file each, as OpenAI's batches have.
BATCH_FILES = {
    "output_file": Output("jsonl", "one", "one result line per request that succeeded"),
    "error_file": Output("jsonl", "one", "one error line per request that failed"),
}
#: The control-plane module that publishes ``batch.<status>`` on job transitions.
BATCH_HOOKS = "farm.batches.hooks"
