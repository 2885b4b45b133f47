"""Batches: their OpenAI status, request counts, and links to the input, output and error files."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from farm.api.deps import SessionDep
from farm.api.pagination import Cursor
from farm.batches.status import batch_status
from farm.db.models import Batch, File, Job
from farm.ui.auth import UiUserDep
from farm.ui.web import render

router = APIRouter()
PAGE_SIZE = 50


@router.get("/batches")
def batches_page(request: Request, user: UiUserDep, session: SessionDep, cursor: Cursor = None) -> Response:
    stmt = select(Batch, Job).join(Job, Job.id == Batch.job_id).where(Batch.org_id == user.principal.org_id)
    if cursor:
        stmt = stmt.where(Batch.id < cursor)
    rows = list(session.execute(stmt.order_by(Batch.id.desc()).limit(PAGE_SIZE + 1)))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    file_ids = {f for b, _ in rows for f in (b.input_file_id, b.output_file_id, b.error_file_id) if f}
    files = {f.id: f for f in session.scalars(select(File).where(File.org_id == user.principal.org_id, File.id.in_(file_ids)))} if file_ids else {}
    batches = [{"batch": b, "job": j, "status": batch_status(b, j), "input": files.get(b.input_file_id),
                "output": files.get(b.output_file_id or ""), "errors": files.get(b.error_file_id or "")} for b, j in rows]
    return render(request, "batches.html", batches=batches, next_cursor=rows[-1][0].id if more else None)
