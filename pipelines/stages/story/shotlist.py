"""A story's shot list: the pydantic model an LLM fills, the bounded flat JSON schema its output is held to, parsing.

vLLM's structured outputs turn the schema into a grammar. Two things make
that work even for a random-weight model: the schema is flat (no ``$ref``,
no ``anyOf``: some grammar backends refuse them) and bounded (every string
has a ``maxLength``, every array a ``maxItems``), so any path through the
grammar closes the JSON within :func:`token_bound` tokens. Output is parsed
leniently (raw control characters inside strings are accepted), validated
with the same pydantic model, then cleaned for subtitles and prompts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

Camera = Literal["static", "push in", "pull out", "pan left", "pan right", "tilt up", "tilt down"]
CAMERAS: tuple[str, ...] = get_args(Camera)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Bounds:
    """What a job allows a shot list to be: shot count, text length, durations, and whether the LLM proposes them."""

    min_shots: int
    max_shots: int
    text_chars: int
    min_s: int
    max_s: int
    llm_durations: bool = True


def draft_model(b: Bounds) -> type[BaseModel]:
    """The pydantic model of what the LLM writes: ``{"shots": [{visual, narration, camera, duration_s}, …]}``.

    A shot's index is its place in the list (models number unreliably). An
    empty visual or narration is allowed (a shot without narration has no
    subtitle); what the grammar holds everywhere, pydantic checks again.
    """
    strict = ConfigDict(extra="forbid")
    fields: dict[str, Any] = {
        "visual": (str, Field(max_length=b.text_chars, description="what the keyframe shows")),
        "narration": (str, Field(max_length=b.text_chars, description="narration or dialogue over the shot")),
        "camera": (Camera, Field(description="camera direction")),
    }
    if b.llm_durations:
        # whole seconds as an enum, not minimum/maximum: every grammar backend holds an enum
        seconds = Literal[tuple(range(b.min_s, b.max_s + 1))]  # type: ignore[valid-type]
        fields["duration_s"] = (seconds, Field(description="seconds on screen"))
    shot = create_model("PlannedShot", __config__=strict, **fields)
    return create_model("ShotListDraft", __config__=strict,
                        shots=(list[shot], Field(min_length=b.min_shots, max_length=b.max_shots)))  # type: ignore[valid-type]


def flat_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with every ``$ref`` inlined and titles dropped; refuses an unbounded one."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
        out = {}
        for key, value in node.items():
            if key == "title":
                continue
            out[key] = {k: inline(v) for k, v in value.items()} if key == "properties" else inline(value)
        return out

    flat = inline(schema)
    check_bounded(flat)
    return flat


def check_bounded(node: dict[str, Any], where: str = "$") -> None:
    """Every string bounded (``maxLength`` or ``enum``), every array ``maxItems``, no references or unions."""
    for word in ("$ref", "anyOf", "oneOf", "allOf", "$defs"):
        if word in node:
            raise ValueError(f"{where}: {word} is not allowed in a flat schema")
    kind = node.get("type")
    if kind == "string" and "maxLength" not in node and "enum" not in node:
        raise ValueError(f"{where}: a string without maxLength")
    if kind == "array":
        if "maxItems" not in node:
            raise ValueError(f"{where}: an array without maxItems")
        check_bounded(node["items"], f"{where}[]")
    if kind == "object":
        if node.get("additionalProperties") is not False:
            raise ValueError(f"{where}: an object that allows other properties")
        for name, sub in node.get("properties", {}).items():
            check_bounded(sub, f"{where}.{name}")


def token_bound(node: dict[str, Any]) -> int:
    """The most characters (so at most tokens) any JSON the schema allows takes without free white space.

    Strings count twice their length: a character outside plain text may be
    written as an escape.
    """
    kind = node.get("type")
    if "enum" in node:
        return max(len(json.dumps(v)) for v in node["enum"])
    if kind == "string":
        return 2 + 2 * int(node["maxLength"])
    if kind == "integer":
        return max(len(str(node.get("minimum", -(10**9)))), len(str(node.get("maximum", 10**9))))
    if kind == "number":
        return 24
    if kind == "boolean":
        return 5
    if kind == "array":
        return 2 + int(node["maxItems"]) * (token_bound(node["items"]) + 1)
    if kind == "object":
        props = node.get("properties", {})
        return 2 + sum(len(json.dumps(name)) + 2 + token_bound(sub) for name, sub in props.items())
    raise ValueError(f"cannot bound a schema of type {kind!r}")


def messages(title: str, text: str, b: Bounds) -> list[dict[str, str]]:
    """The chat the LLM answers with a shot list (the schema holds the form; this says what to put in it)."""
    timing = f" and how many seconds it stays on screen ({b.min_s} to {b.max_s})" if b.llm_durations else ""
    system = (
        f"You are a storyboard artist. Break the story into {b.min_shots} to {b.max_shots} shots, in order. "
        f"For each shot write what the picture shows and the narration or dialogue heard over it "
        f"(each at most {b.text_chars} characters), a camera direction ({', '.join(CAMERAS)}){timing}. Answer in JSON."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Title: {title}\n\n{text}"}]


class ShotListError(ValueError):
    """The LLM's answer is not a valid shot list; the message says what is wrong."""


def parse(text: str, model: type[BaseModel]) -> BaseModel:
    """Lenient JSON (control characters inside strings allowed), then the pydantic model."""
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ShotListError(f"the answer is not complete JSON ({exc.msg} at character {exc.pos} of {len(text)})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "answer"
        raise ShotListError(f"the answer does not fit the shot list schema ({where}: {err['msg']})") from None


def clean(text: str) -> str:
    """Control characters (random weights write them) become spaces; runs of white space one space."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


def narration_seconds(narration: str, words_per_minute: int, b: Bounds) -> float:
    """How long reading the narration takes at ``words_per_minute``, within the shot bounds."""
    words = len(narration.split())
    return float(min(b.max_s, max(b.min_s, words * 60 / words_per_minute)))


def frames_of(seconds: float, fps: int) -> int:
    """A duration as whole frames (at least one): the animatic's clock."""
    return max(1, round(seconds * fps))


class TimedShot(BaseModel):
    """One shot of the animatic: what the LLM planned (cleaned) and where it sits on the frame clock."""

    model_config = ConfigDict(frozen=True)

    index: int  # from 1, as in <story>.shot-NN
    visual: str
    narration: str
    camera: Camera
    duration_s: float  # whole frames: (end_frame - start_frame) / fps
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float


class ShotList(BaseModel):
    """A story's shot list as ``<story>.shotlist.json`` holds it."""

    title: str
    fps: int
    timing: Literal["llm", "narration"]
    shots: list[TimedShot]

    @property
    def frames(self) -> int:
        return self.shots[-1].end_frame if self.shots else 0


def timed(draft: BaseModel, title: str, b: Bounds, *, fps: int, words_per_minute: int) -> ShotList:
    """The draft's shots cleaned and laid end to end in whole frames (LLM durations, or the narration's reading time)."""
    shots: list[TimedShot] = []
    start = 0
    for n, planned in enumerate(draft.shots, start=1):  # type: ignore[attr-defined]
        narration = clean(planned.narration)
        seconds = float(planned.duration_s) if b.llm_durations else narration_seconds(narration, words_per_minute, b)
        end = start + frames_of(seconds, fps)
        shots.append(TimedShot(index=n, visual=clean(planned.visual), narration=narration, camera=planned.camera,
                               duration_s=round((end - start) / fps, 6), start_frame=start, end_frame=end,
                               start_s=round(start / fps, 6), end_s=round(end / fps, 6)))
        start = end
    return ShotList(title=title, fps=fps, timing="llm" if b.llm_durations else "narration", shots=shots)
