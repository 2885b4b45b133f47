"""Typed output records: which asset fills which output of which item of a job.

A kind declares its outputs (``KindInfo.outputs``); the runner records each
asset it produces against one of them, so a later step (a workflow) can find
"the ``video_shots`` of item 3" without knowing the kind or its file names.
``Job.result_asset_ids`` (the flat list the API has always shown) follows.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from farm.db.models import Asset, Job, JobItem, JobOutput
from kinds import get_kind


def record(session: Session, job: Job, item: int | None, output: str, asset_id: str) -> JobOutput:
    """Record ``asset_id`` as ``output`` of ``item`` (``None``: of the whole job); a replay returns the same row.

    Raises ``ValueError`` for an output the kind does not declare, an asset
    outside the job's project, or a second asset for an output that holds
    one per item. Flushes; the caller commits.
    """
    kind = get_kind(job.kind)
    try:
        declared = kind.output(output)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if item is not None and item < 0:
        raise ValueError(f"item must be >= 0 or None (the whole job), got {item}")
    asset = session.get(Asset, asset_id)
    if asset is None or asset.project_id != job.project_id:
        raise ValueError(f"asset {asset_id!r} is not an asset of the job's project")
    same = list(session.scalars(select(JobOutput).where(
        JobOutput.job_id == job.id, JobOutput.output == output,
        JobOutput.item.is_(None) if item is None else JobOutput.item == item,
    )))
    for row in same:
        if row.asset_id == asset_id:
            return row
    if same and declared.per_item == "one":
        raise ValueError(f"output {output!r} of {_where(item)} of job {job.id} already holds asset {same[0].asset_id}; it holds one")
    row = JobOutput(job_id=job.id, item=item, output=output, type=declared.type, asset_id=asset_id)
    session.add(row)
    if asset_id not in job.result_asset_ids:
        job.result_asset_ids = [*job.result_asset_ids, asset_id]
    session.flush()
    return row


def outputs_of(session: Session, job_id: str, output: str | None = None) -> list[JobOutput]:
    """A job's output records (of one output name, if given): job-level first, then by item, in recording order."""
    stmt = select(JobOutput).where(JobOutput.job_id == job_id)
    if output is not None:
        stmt = stmt.where(JobOutput.output == output)
    return list(session.scalars(stmt.order_by(JobOutput.item.asc().nulls_first(), JobOutput.id)))


def drop_unsettled(session: Session, job: Job) -> None:
    """Forget the outputs a requeued job will make again: job-level ones and those of items without an outcome.

    Items that keep their outcome are skipped by the next attempt, so their
    outputs stay; everything else is rebuilt, possibly as different bytes,
    which must not collide with the old record of a one-per-item output.
    """
    settled = select(JobItem.idx).where(JobItem.job_id == job.id)
    stale = JobOutput.job_id == job.id, (JobOutput.item.is_(None) | JobOutput.item.not_in(settled))
    dropped = set(session.scalars(select(JobOutput.asset_id).where(*stale)))
    if not dropped:
        return
    session.execute(delete(JobOutput).where(*stale))
    kept = set(session.scalars(select(JobOutput.asset_id).where(JobOutput.job_id == job.id)))
    job.result_asset_ids = [a for a in job.result_asset_ids if a not in dropped or a in kept]


def _where(item: int | None) -> str:
    return "the job" if item is None else f"item {item}"
