"""Workflow triggers: start a saved workflow when a user uploads a matching asset, or on a cron schedule.

Exactly once, by construction rather than by care:

* an upload trigger fires in the SAME transaction as the upload's asset row
  (`record_upload`, called by the API's upload path only): the fire row
  (key = the asset id, unique per trigger) and the run commit with the asset
  or not at all, so a crash or restart can neither lose nor double a run,
  and two control planes each handle their own requests. A scan on the
  dispatcher's tick could not tell a user's upload from a job's output (both
  are assets created by the same key), and that distinction is the point:
  job outputs are recorded through `farm.assets.register` from the runner
  and never pass here, so a workflow cannot retrigger itself. Identical bytes
  uploaded again return the existing asset and fire nothing.
* a cron trigger fires on the dispatcher's tick (`fire_due`, under its
  single-active lease, and under a row lock on the trigger): the latest slot
  at or before now that is later than ``last_slot`` fires ONE run (key = the
  slot's ISO time) and becomes ``last_slot``; slots missed while the farm was
  down thus run once, not once per slot. A new trigger starts at its
  creation time, so past slots never fire.

A trigger's ``params`` column holds ``{"values": {...}, "asset_param": name}``
(the parameter values of every run, and the parameter an upload's asset id
is bound to: a list of one id for a ``string_list``, the id for a ``string``).
Runs are started as the trigger's creator.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from croniter import croniter
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm import assets, audit
from farm.accounts import Principal
from farm.db import Database
from farm.db.models import Asset, Job, Project, Role, Workflow, WorkflowStep, WorkflowTrigger, WorkflowTriggerFire, utcnow
from farm.ids import new_id
from farm.jobs.service import submit
from farm.storage import ObjectStore
from farm.workflows.definition import DefinitionError, check_specs, definition_json, load, resolve_params, validate
from kinds.workflow import RUN_KIND

log = logging.getLogger("farm.workflows.triggers")

UPLOAD, CRON = "upload", "cron"
TriggerType = Literal["upload", "cron"]
CONTENT_TYPE = re.compile(r"^[\w.+-]+/(\*|[\w.+-]+)$")
_SAMPLE_ASSET = "asset_" + "0" * 28


# -- definition ----------------------------------------------------------------------------------


def matches(pattern: str, content_type: str) -> bool:
    """``video/mp4`` matches itself; ``video/*`` matches every video type."""
    if pattern.endswith("/*"):
        return content_type.split("/", 1)[0] == pattern[:-2]
    return content_type == pattern


def latest_slot(cron: str, now: datetime) -> datetime:
    """The latest time at or before ``now`` that the 5-field schedule names (slots fall on whole minutes)."""
    minute = now.replace(second=0, microsecond=0)
    slot: datetime = croniter(cron, minute + timedelta(seconds=1)).get_prev(datetime)
    return slot


def bind_asset(defn_params: Mapping[str, Any], asset_param: str, asset_id: str) -> Any:
    """The value an upload's asset id takes for its parameter's type."""
    return [asset_id] if defn_params[asset_param].type == "string_list" else asset_id


def create_trigger(
    session: Session, principal: Principal, workflow: Workflow, project: Project, type_: TriggerType, *,
    content_type: str | None = None, cron: str | None = None, params: Mapping[str, Any] | None = None,
    asset_param: str | None = None, context: dict[str, Any] | None = None, now: datetime | None = None,
) -> WorkflowTrigger:
    """A validated trigger (DefinitionError naming the field otherwise); a cron one starts counting slots now."""
    values = dict(params or {})
    defn = load(workflow.definition)
    if type_ == UPLOAD:
        if not content_type:
            raise DefinitionError("content_type", "required for an upload trigger (e.g. video/mp4 or video/*)")
        if not CONTENT_TYPE.match(content_type):
            raise DefinitionError("content_type", f"{content_type!r} is not a content type such as video/mp4 or video/*")
        if cron is not None:
            raise DefinitionError("cron", "only cron triggers have a schedule")
        if not asset_param:
            raise DefinitionError("asset_param", "required for an upload trigger: the parameter the uploaded asset's id is bound to")
        param = defn.params.get(asset_param)
        if param is None:
            raise DefinitionError("asset_param", f"unknown parameter {asset_param!r}; this workflow takes: {', '.join(defn.params) or '(none)'}")
        if param.type not in ("string", "string_list"):
            raise DefinitionError("asset_param", f"parameter {asset_param!r} is a {param.type}; an asset id needs a string or string_list")
        if asset_param in values:
            raise DefinitionError(f"params.{asset_param}", "bound to the uploaded asset by asset_param; leave it out")
        values_with_asset = {**values, asset_param: bind_asset(defn.params, asset_param, _SAMPLE_ASSET)}
    else:
        if not cron:
            raise DefinitionError("cron", "required for a cron trigger (5 fields, e.g. '0 * * * *')")
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise DefinitionError("cron", f"{cron!r} is not a 5-field cron schedule (minute hour day month weekday)")
        if content_type is not None:
            raise DefinitionError("content_type", "only upload triggers match a content type")
        if asset_param is not None:
            raise DefinitionError("asset_param", "only upload triggers bind an asset")
        values_with_asset = values
    check_specs(validate(defn), resolve_params(defn, values_with_asset), context)
    created = now or utcnow()
    trigger = WorkflowTrigger(
        id=new_id("trg"), org_id=principal.org_id, workflow_id=workflow.id, project_id=project.id, type=type_,
        content_type=content_type if type_ == UPLOAD else None, cron=cron if type_ == CRON else None,
        params={"values": values, "asset_param": asset_param}, last_slot=created if type_ == CRON else None,
        created_by=principal.key_id or None, created_at=created,
    )
    session.add(trigger)
    audit.record(session, principal, "workflow_trigger.create", "workflow_trigger", trigger.id, workflow_id=workflow.id, type=type_)
    session.commit()
    return trigger


def delete_trigger(session: Session, principal: Principal, trigger: WorkflowTrigger) -> None:
    session.execute(delete(WorkflowTriggerFire).where(WorkflowTriggerFire.trigger_id == trigger.id))
    session.delete(trigger)
    audit.record(session, principal, "workflow_trigger.delete", "workflow_trigger", trigger.id)
    session.commit()


def fires_of(session: Session, trigger_id: str, limit: int = 50) -> list[WorkflowTriggerFire]:
    """The trigger's most recent fires, newest first."""
    return list(session.scalars(select(WorkflowTriggerFire).where(WorkflowTriggerFire.trigger_id == trigger_id)
                                .order_by(WorkflowTriggerFire.id.desc()).limit(limit)))


# -- firing ----------------------------------------------------------------------------------


def _fire(session: Session, trigger: WorkflowTrigger, key: str, asset_id: str | None = None) -> str | None:
    """Add the fire row and its run to the open transaction (not committed); the run's id, or None if it could not start.

    The fire row is flushed first: a twin of the same (trigger, key) fails
    here with IntegrityError, before a second run exists.
    """
    fire = WorkflowTriggerFire(trigger_id=trigger.id, key=key)
    session.add(fire)
    session.flush()
    workflow = session.get(Workflow, trigger.workflow_id)
    project = session.get(Project, trigger.project_id)
    assert workflow is not None and project is not None, trigger.id
    values = dict(trigger.params.get("values") or {})
    try:
        defn = load(workflow.definition)
        asset_param = trigger.params.get("asset_param")
        if asset_id is not None and asset_param:
            values[asset_param] = bind_asset(defn.params, asset_param, asset_id)
        plan = validate(defn)
        resolved = resolve_params(defn, values)
        check_specs(plan, resolved)
        principal = Principal(key_id=trigger.created_by or "", org_id=trigger.org_id, role=Role.member)
        run, _ = submit(session, principal, project, RUN_KIND, {"definition": definition_json(defn), "params": resolved,
                        "workflow_id": workflow.id}, 50, None, 1, commit=False)
    except (DefinitionError, ValidationError, KeyError) as exc:
        log.warning("trigger %s (%s) could not start workflow %s: %s", trigger.id, key, workflow.id, exc)
        return None
    run.total = len(defn.steps)
    session.add_all(WorkflowStep(run_id=run.id, step=s.id, position=i) for i, s in enumerate(defn.steps))
    fire.run_id = run.id
    return run.id


def record_upload(session: Session, store: ObjectStore, principal: Principal, project: Project,
                  stored: assets.StoredFile) -> assets.IngestResult:
    """Record a USER's upload as an asset and, in the same transaction, fire the project's matching upload triggers.

    Only the API's upload path calls this; a job's outputs go through
    `farm.assets.register` and fire nothing.
    """
    duplicate = session.scalar(select(Asset.id).where(Asset.project_id == project.id, Asset.sha256 == stored.sha256))
    if duplicate is None:
        for trigger in session.scalars(select(WorkflowTrigger).where(
                WorkflowTrigger.project_id == project.id, WorkflowTrigger.type == UPLOAD).order_by(WorkflowTrigger.id)):
            if trigger.content_type and matches(trigger.content_type, stored.content_type):
                _fire(session, trigger, stored.asset_id or "", stored.asset_id)
    result = assets.register(session, store, principal, project, stored)  # commits the asset, the fires and the runs together
    if not result.created:
        session.rollback()  # identical bytes were already there: nothing fires
    return result


def fire_due(db: Database, now: datetime | None = None) -> list[str]:
    """Fire every cron trigger whose schedule has a slot later than its ``last_slot``; the runs started (the dispatcher's tick)."""
    now = now or utcnow()
    with db.session() as s:
        ids = list(s.scalars(select(WorkflowTrigger.id).where(WorkflowTrigger.type == CRON).order_by(WorkflowTrigger.id)))
    started: list[str] = []
    for trigger_id in ids:
        with db.session() as s:
            try:
                run_id = _fire_cron(s, trigger_id, now)
                s.commit()
            except IntegrityError:  # another control plane fired this slot first
                s.rollback()
                continue
            except Exception:
                s.rollback()
                log.exception("cron trigger %s failed", trigger_id)
                continue
        if run_id is not None:
            started.append(run_id)
    return started


def _fire_cron(s: Session, trigger_id: str, now: datetime) -> str | None:
    trigger = s.scalars(select(WorkflowTrigger).where(WorkflowTrigger.id == trigger_id).with_for_update(skip_locked=True)).one_or_none()
    if trigger is None or not trigger.cron:
        return None
    slot = latest_slot(trigger.cron, now)
    if slot <= (trigger.last_slot or trigger.created_at):
        return None
    trigger.last_slot = slot
    return _fire(s, trigger, slot.isoformat())


def runs_of(session: Session, trigger_id: str) -> list[Job]:
    """The runs a trigger started, oldest first."""
    ids = [f.run_id for f in fires_of(session, trigger_id, limit=10_000) if f.run_id]
    return sorted(session.scalars(select(Job).where(Job.id.in_(ids))), key=lambda j: (j.created_at, j.id)) if ids else []
