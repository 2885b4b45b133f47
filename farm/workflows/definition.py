"""Workflow definitions: the typed model of a DAG of steps, its validation, and reference resolution.

A definition (YAML or JSON) names typed parameters and steps. A step is a job
of a kind; its spec's values may be ``${params.x}`` or
``${steps.S.outputs.NAME}`` (the asset ids step S produced for its kind's
declared output NAME, in item order). References imply dependencies; so do
``depends_on`` and the steps a ``when`` condition reads. `validate` refuses,
naming the step and the field: a cycle, an unknown kind or step, an output
the step's kind does not declare, and an output or parameter whose type does
not fit the field it feeds (the output's type against the asset type the
field takes, the value's shape against the field's annotation).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from farm.workflows import conditions
from kinds import JobSpec, KindInfo, UnknownKind, get_kind, parse_spec
from kinds.base import VideoInputsSpec
from kinds.story_animatic import StoryAnimaticSpec
from kinds.video_caption import VideoCaptionSpec
from kinds.video_restyle import VideoRestyleSpec
from kinds.workflow import RUN_KIND

ParamType = Literal["string", "integer", "number", "boolean", "string_list"]
PARAM_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "string_list": list[str]}
_SAMPLES: dict[str, Any] = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "string_list": ["x"]}
_ASSET_SAMPLE = ["asset_" + "0" * 28]

#: What asset type an asset-id field takes, by the spec class that declares it ("text": no kind produces it).
INPUT_TYPES: tuple[tuple[type[JobSpec], str, str], ...] = (
    (VideoRestyleSpec, "shots_asset_ids", "video_shots"),
    (VideoCaptionSpec, "shots_asset_ids", "video_shots"),
    (StoryAnimaticSpec, "asset_ids", "text"),
    (VideoInputsSpec, "asset_ids", "video"),
)

_REF = r"\$\{(params\.[A-Za-z_][A-Za-z0-9_]*|steps\.[a-z][a-z0-9_]*\.outputs\.[a-z_][a-z0-9_]*)\}"
REF = re.compile(_REF)
WHOLE_REF = re.compile(rf"^{_REF}$")


class DefinitionError(ValueError):
    """A definition refused: ``where`` names the place (``steps.restyle.spec.shots_asset_ids``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


class Param(BaseModel):
    """A typed parameter; without a default it must be given at each run."""

    model_config = ConfigDict(extra="forbid")
    type: ParamType = "string"
    default: Any = None
    description: str = Field(default="", max_length=500)


class RetryPolicy(BaseModel):
    """How often a step's child job may end failed before the step fails, and how long to wait between."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(default=1, ge=1, le=10, description="child jobs per step, the first included")
    backoff_base_s: float = Field(default=10, ge=0, le=3600, description="wait after the first failure; doubles each time")
    backoff_cap_s: float = Field(default=600, ge=0, le=86_400, description="longest wait")
    jitter: float = Field(default=0.1, ge=0, le=1, description="± this share of the wait, so retries of many runs spread out")

    def delay(self, failed_attempt: int, seed: str) -> float:
        """Seconds before the next attempt: min(cap, base·2^(n-1)) ± jitter, the jitter fixed by ``seed``."""
        base = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failed_attempt - 1))
        return max(0.0, base * (1 + self.jitter * random.Random(seed).uniform(-1, 1)))


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: str = Field(max_length=64)
    spec: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list, max_length=100)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86_400, description="a child job running longer is cancelled; the step fails (timed out)")
    continue_on_failure: bool = Field(default=False, description="the run goes on (and may succeed) if this step fails; its dependants are still skipped")
    when: str | None = Field(default=None, max_length=500, description="run only if this condition holds (see farm.workflows.conditions)")


class Definition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    params: dict[str, Param] = Field(default_factory=dict, max_length=100)
    steps: list[Step] = Field(min_length=1, max_length=100)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


@dataclass(frozen=True)
class Ref:
    """``${params.NAME}`` (step None) or ``${steps.STEP.outputs.NAME}``."""

    name: str
    step: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        parts = text.split(".")
        return cls(parts[1]) if parts[0] == "params" else cls(parts[3], parts[1])


@dataclass(frozen=True)
class Plan:
    """A valid definition and what the engine needs of it: dependencies and parsed conditions."""

    definition: Definition
    order: list[str]
    needs: dict[str, list[str]]  # steps whose success this one requires (references, depends_on)
    reads: dict[str, list[str]]  # steps its condition reads (they must end, in any state)
    conditions: dict[str, conditions.Node | None] = field(default_factory=dict)

    def waits_on(self, step_id: str) -> list[str]:
        return sorted({*self.needs[step_id], *self.reads[step_id]})


def load(data: str | Mapping[str, Any]) -> Definition:
    """A definition from YAML/JSON text or a mapping; DefinitionError naming the field otherwise."""
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except (yaml.YAMLError, RecursionError) as exc:
            raise DefinitionError("definition", f"not valid YAML or JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise DefinitionError("definition", "must be a mapping with name, params and steps")
    try:
        return Definition.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise DefinitionError(_where(err["loc"], data), err["msg"]) from None


def _where(loc: tuple[Any, ...], data: Mapping[str, Any]) -> str:
    """A pydantic location with step indexes replaced by step ids where the step has one."""
    parts = [str(p) for p in loc]
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps")
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], Mapping) and isinstance(steps[loc[1]].get("id"), str):
            parts[1] = steps[loc[1]]["id"]
    return ".".join(parts)


def refs(value: Any) -> list[tuple[Ref, bool]]:
    """Every reference in a spec value, and whether it is the whole value (or a whole list element)."""
    if isinstance(value, str):
        whole = WHOLE_REF.match(value)
        if whole:
            return [(Ref.parse(whole.group(1)), True)]
        return [(Ref.parse(m.group(1)), False) for m in REF.finditer(value)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    if isinstance(value, dict):
        return [(r, False) for v in value.values() for r, _ in refs(v)]
    return []


def validate(defn: Definition) -> Plan:
    """Check the DAG, kinds, references and types; DefinitionError naming the step and field."""
    ids = [s.id for s in defn.steps]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise DefinitionError(f"steps.{dup}.id", "two steps have this id")
    kinds: dict[str, KindInfo] = {}
    for step in defn.steps:
        try:
            kinds[step.id] = get_kind(step.kind)
        except UnknownKind as exc:
            raise DefinitionError(f"steps.{step.id}.kind", str(exc)) from None
        if step.kind == RUN_KIND:
            raise DefinitionError(f"steps.{step.id}.kind", "a step cannot be a workflow")
    for name, param in defn.params.items():
        if param.default is not None:
            _param_value(f"params.{name}.default", param, param.default)
    needs: dict[str, list[str]] = {}
    reads: dict[str, list[str]] = {}
    parsed: dict[str, conditions.Node | None] = {}
    for step in defn.steps:
        hard: set[str] = set()
        for dep in step.depends_on:
            if dep not in ids:
                raise DefinitionError(f"steps.{step.id}.depends_on", f"unknown step {dep!r}")
            hard.add(dep)
        for fname, value in step.spec.items():
            where = f"steps.{step.id}.spec.{fname}"
            if fname not in kinds[step.id].spec.model_fields:
                raise DefinitionError(where, f"{step.kind} has no field {fname!r}")
            for ref, whole in refs(value):
                _check_ref(defn, kinds, step, fname, value, ref, whole, where)
                if ref.step is not None:
                    hard.add(ref.step)
        if step.id in hard:
            raise DefinitionError(f"steps.{step.id}.depends_on", "a step cannot depend on itself")
        needs[step.id] = sorted(hard)
        parsed[step.id] = None
        reads[step.id] = []
        if step.when is not None:
            try:
                parsed[step.id] = conditions.parse(step.when)
                reads[step.id] = sorted(set(conditions.check_names(parsed[step.id], defn.params, {i: 1 for i in ids})))
            except conditions.ConditionError as exc:
                raise DefinitionError(f"steps.{step.id}.when", str(exc)) from None
    order = _order(ids, {s: sorted({*needs[s], *reads[s]}) for s in ids})
    return Plan(defn, order, needs, reads, parsed)


def _check_ref(defn: Definition, kinds: Mapping[str, KindInfo], step: Step, fname: str, value: Any, ref: Ref, whole: bool, where: str) -> None:
    target = kinds[step.id]
    annotation = target.spec.model_fields[fname].annotation if fname in target.spec.model_fields else None
    if annotation is None:
        raise DefinitionError(where, f"{target.name} has no field {fname!r}")
    if ref.step is None:
        param = defn.params.get(ref.name)
        if param is None:
            raise DefinitionError(where, f"unknown parameter {ref.name!r}")
        sample = _SAMPLES[param.type] if param.default is None else param.default
        loose = param.default is None and "Literal" in str(annotation)  # a required value is checked when the run starts
        if whole and not isinstance(value, list) and not loose and not _fits(annotation, sample):
            raise DefinitionError(where, f"type mismatch: parameter {ref.name!r} is {param.type}, the field takes {_show(annotation)}")
        return
    if ref.step not in kinds:
        raise DefinitionError(where, f"unknown step {ref.step!r}")
    source = kinds[ref.step]
    try:
        output = source.output(ref.name)
    except KeyError:
        raise DefinitionError(where, f"step {ref.step!r} ({source.name}) has no output {ref.name!r}; it has: {', '.join(source.outputs) or '(none)'}") from None
    if not whole:
        raise DefinitionError(where, f"an output (steps.{ref.step}.outputs.{ref.name}) is a list of asset ids: give it as the whole value")
    if not _fits(annotation, _ASSET_SAMPLE):
        raise DefinitionError(where, f"type mismatch: steps.{ref.step}.outputs.{ref.name} is a list of {output.type} asset ids, the field takes {_show(annotation)}")
    takes = input_type(target.spec, fname)
    if takes is not None and takes != output.type:
        raise DefinitionError(where, f"type mismatch: {target.name}'s {fname} takes {takes} assets, steps.{ref.step}.outputs.{ref.name} is {output.type}")


def input_type(spec: type[JobSpec], fname: str) -> str | None:
    """The asset type a field of a spec takes, if it takes assets."""
    return next((t for cls, f, t in INPUT_TYPES if f == fname and issubclass(spec, cls)), None)


def _fits(annotation: Any, sample: Any) -> bool:
    try:
        TypeAdapter(annotation).validate_python(sample)
    except ValidationError:
        return False
    return True


def _show(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else str(annotation).replace("typing.", "")  # type: ignore[return-value]


def _order(ids: list[str], deps: Mapping[str, list[str]]) -> list[str]:
    """Steps in dependency order, definition order among equals; DefinitionError naming a cycle."""
    done: list[str] = []
    left = list(ids)
    while left:
        ready = [s for s in left if all(d in done for d in deps[s])]
        if not ready:
            cycle = _cycle(left, deps)
            raise DefinitionError(f"steps.{cycle[0]}.depends_on", f"cycle: {' → '.join(cycle)}")
        done.extend(ready)
        left = [s for s in left if s not in ready]
    return done


def _cycle(left: list[str], deps: Mapping[str, list[str]]) -> list[str]:
    path = [left[0]]
    while True:
        nxt = next(d for d in deps[path[-1]] if d in left)
        if nxt in path:
            return [*path[path.index(nxt):], nxt]
        path.append(nxt)


def _param_value(where: str, param: Param, value: Any) -> Any:
    try:
        return TypeAdapter(PARAM_TYPES[param.type]).validate_python(value, strict=param.type != "number")
    except ValidationError as exc:
        raise DefinitionError(where, f"must be {param.type}: {exc.errors()[0]['msg']}") from None


def resolve_params(defn: Definition, values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values with defaults filled in; DefinitionError for an unknown, missing or mistyped one."""
    unknown = sorted(set(values) - set(defn.params))
    if unknown:
        raise DefinitionError(f"params.{unknown[0]}", f"unknown parameter; this workflow takes: {', '.join(defn.params) or '(none)'}")
    out: dict[str, Any] = {}
    for name, param in defn.params.items():
        value = values.get(name, param.default)
        if value is None:
            raise DefinitionError(f"params.{name}", "required (no default)")
        out[name] = _param_value(f"params.{name}", param, value)
    return out


def resolve_spec(step: Step, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, list[str]]]) -> dict[str, Any]:
    """The step's spec with every reference replaced: parameters by value, outputs by their asset ids."""
    return {k: _resolve(v, params, outputs) for k, v in step.spec.items()}


def _resolve(value: Any, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, list[str]]]) -> Any:
    if isinstance(value, str):
        whole = WHOLE_REF.match(value)
        if whole:
            return _lookup(Ref.parse(whole.group(1)), params, outputs)
        return REF.sub(lambda m: _text(_lookup(Ref.parse(m.group(1)), params, outputs)), value)
    if isinstance(value, list):
        out: list[Any] = []
        for v in value:
            r = _resolve(v, params, outputs)
            whole_output = isinstance(v, str) and WHOLE_REF.match(v) and Ref.parse(WHOLE_REF.match(v).group(1)).step  # type: ignore[union-attr]
            out.extend(r) if whole_output else out.append(r)
        return out
    if isinstance(value, dict):
        return {k: _resolve(v, params, outputs) for k, v in value.items()}
    return value


def _lookup(ref: Ref, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, list[str]]]) -> Any:
    return params[ref.name] if ref.step is None else list(outputs.get(ref.step, {}).get(ref.name, []))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def check_specs(plan: Plan, params: Mapping[str, Any], context: dict[str, Any] | None = None) -> None:
    """Validate each step's spec as far as it is known before the run: outputs stand in as placeholder ids.

    An error in a field fed by an output, or of the whole spec (which may
    depend on how many assets an output holds), waits for the run.
    """
    for step in plan.definition.steps:
        fed = {f for f, v in step.spec.items() if any(r.step for r, _ in refs(v))}
        placeholders = {s: {o: _ASSET_SAMPLE for o in get_kind(plan.definition.step(s).kind).outputs} for s in plan.needs[step.id]}
        spec = resolve_spec(step, params, placeholders)
        try:
            parse_spec(step.kind, spec, context)
        except ValidationError as exc:
            for err in exc.errors():
                loc = err["loc"]
                if fed and (not loc or loc[0] in fed):
                    continue
                raise DefinitionError(".".join(["steps", step.id, "spec", *(str(p) for p in loc)]) if loc else f"steps.{step.id}.spec", err["msg"]) from None


def definition_json(defn: Definition) -> dict[str, Any]:
    return defn.model_dump(mode="json", exclude_defaults=False)


TEMPLATES = Path(__file__).parent / "templates"


def template(name: str) -> str:
    """The text of a shipped template (``footage``, ``stories``); FileNotFoundError naming the others."""
    path = TEMPLATES / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped workflow template {name!r}; there are: {', '.join(sorted(p.stem for p in TEMPLATES.glob('*.yaml')))}")
    return path.read_text()
