"""`workflow`: a run of a workflow definition, a DAG of steps that are jobs of other kinds.

The run is a job so that listing, cancelling, events and webhooks apply to it
unchanged, but it is advanced by the control plane (``farm.workflows.engine``),
never submitted to Ray: its ``pipeline`` names no module, and the dispatcher
leaves jobs of this kind out of its running cap, fair share and Ray
reconciliation. Its steps run as child jobs (``Job.parent_id``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kinds.base import JobSpec, KindInfo

#: The kind name the dispatcher and the engine branch on.
RUN_KIND = "workflow"


class WorkflowRunSpec(JobSpec):
    """Runs a workflow: a DAG of steps, each a job of another kind, chained by their typed outputs."""

    definition: dict[str, Any] = Field(description="the workflow definition (validated by the control plane at submit)")
    params: dict[str, Any] = Field(default_factory=dict, description="parameter values, defaults filled in")
    workflow_id: str | None = Field(default=None, max_length=40, description="the saved workflow this run was started from")


KIND = KindInfo(RUN_KIND, WorkflowRunSpec, pipeline="", hooks="farm.workflows.hooks")
