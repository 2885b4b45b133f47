"""Shot lists for many stories in one batched pass of the shared LLM stage, structured by the bounded schema.

Every story of the job is ``candidates`` rows (each its own seed) of one
``ray.data.llm`` pass: one vLLM engine, continuous batching across stories;
the first valid candidate is the story's shot list. A story none of whose
candidates parse and validate is tried again, in one further pass for all
such stories with new seeds, at most ``retries`` times (each pass starts an
engine, so sampling a second candidate up front is the cheaper insurance);
then the story fails with the reason. A story the model's context cannot
hold fails at once, saying so: another try would meet the same wall.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pipelines.stages.models.llm import LLMStage
from pipelines.stages.story.shotlist import Bounds, ShotListError, draft_model, flat_schema, messages, parse, token_bound
from serve.registry import ModelSpec

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class StoryInput:
    """One story of the job: item ``index``, the stem its outputs are named after, its text."""

    index: int
    title: str
    stem: str
    text: str
    asset_id: str | None = None


@dataclass(frozen=True)
class Answer:
    """What the engine gave for one story: text and token counts, or why it refused."""

    item: int
    candidate: int = 0
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """A judged answer: a draft shot list, or a reason and whether another try could help."""

    draft: BaseModel | None = None
    reason: str | None = None
    retry: bool = False


@dataclass
class Written:
    """The pass's results: drafts and failures by item, and what each pass held (for the job's report)."""

    drafts: dict[int, BaseModel] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    passes: list[dict[str, Any]] = field(default_factory=list)


def story_seed(seed: int, stem: str, attempt: int) -> int:
    """A story's sampling seed: fixed by the job's seed and the story, new for each try."""
    digest = hashlib.sha256(f"{seed}:{stem}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (MAX_SEED + 1)


def context_of(model: ModelSpec) -> int | None:
    """The model's context in tokens when the registry fixes it (``max_model_len``)."""
    value = model.engine_kwargs.get("max_model_len")
    return int(value) if value else None


def judge(answer: Answer, model: type[BaseModel], *, context: int | None, bound: int, name: str) -> Verdict:
    """Is the answer a shot list? If not, why not, and is it worth another try?"""
    if answer.error:
        if any(words in answer.error for words in ("context length", "model length", "longer than")):
            return Verdict(reason=f"the story is longer than model {name}'s context allows ({answer.error.strip()[:300]})")
        return Verdict(reason=f"the LLM refused the story: {answer.error.strip()[:300]}")
    try:
        return Verdict(draft=parse(answer.text, model))
    except ShotListError as exc:
        used = answer.prompt_tokens + answer.completion_tokens
        if context is not None and used >= context:
            return Verdict(reason=(
                f"the story takes {answer.prompt_tokens} of model {name}'s {context}-token context, leaving "
                f"{context - answer.prompt_tokens} tokens for a shot list that may need {bound}: the answer was cut off; "
                "shorten the story, lower max_shots or shot_text_chars, or use a model with a longer context"))
        return Verdict(reason=str(exc), retry=True)


def choose(verdicts: list[Verdict]) -> Verdict:
    """A story's verdict from its candidates': the first valid one; else a reason no retry can mend; else the last."""
    return next((v for v in verdicts if v.draft is not None), None) or next((v for v in verdicts if not v.retry), verdicts[-1])


class PromptRows:
    """The LLM stage's preprocess (on Ray workers): a story row → chat messages and sampling parameters."""

    def __init__(self, bounds: Bounds, schema: str, max_tokens: int, temperature: float) -> None:
        self.bounds, self.schema, self.max_tokens, self.temperature = bounds, schema, max_tokens, temperature

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "item": int(row["item"]), "candidate": int(row["candidate"]),
            "messages": messages(row["title"], row["text"], self.bounds),
            "sampling_params": {
                "temperature": self.temperature, "seed": int(row["seed"]), "max_tokens": self.max_tokens,
                "structured_outputs": {"json": self.schema, "disable_any_whitespace": True},
            },
        }


def _answer_row(row: dict[str, Any]) -> dict[str, Any]:
    """The LLM stage's postprocess: only what judging needs leaves the engine's actor."""
    return {"item": int(row["item"]), "candidate": int(row["candidate"]), "text": row.get("generated_text") or "",
            "prompt_tokens": int(row.get("num_input_tokens") or 0), "completion_tokens": int(row.get("num_generated_tokens") or 0)}


def to_answer(row: dict[str, Any]) -> Answer:
    """A result row as an `Answer`; rows vLLM refused skip the postprocess and carry ``__inference_error__``."""
    error = row.get("__inference_error__") or None
    item, candidate = int(row["item"]), int(row.get("candidate") or 0)
    if error:
        return Answer(item, candidate, error=str(error))
    return Answer(item, candidate, row.get("text") or "", int(row.get("prompt_tokens") or 0), int(row.get("completion_tokens") or 0))


class ShotListWriter:
    """All stories' shot lists from one model, one batched pass (plus passes for retried stories)."""

    def __init__(self, model: ModelSpec, bounds: Bounds, *, seed: int, temperature: float, retries: int, candidates: int = 1) -> None:
        self.model, self.bounds = model, bounds
        self.seed, self.temperature, self.retries, self.candidates = seed, temperature, retries, candidates
        self.draft = draft_model(bounds)
        self.schema = flat_schema(self.draft)
        self.bound = token_bound(self.schema)

    def write(self, stories: Iterable[StoryInput]) -> Written:
        out = Written()
        pending = list(stories)
        context = context_of(self.model)
        for attempt in range(self.retries + 1):
            if not pending:
                break
            answers: dict[int, list[Answer]] = {}
            for a in sorted(self.run_pass(pending, attempt), key=lambda a: a.candidate):
                answers.setdefault(a.item, []).append(a)
            figures: dict[str, Any] = {"attempt": attempt, "stories": len(pending), "items": sorted(s.index for s in pending),
                                       "requests": sum(len(v) for v in answers.values()),
                                       "completion_tokens": sum(a.completion_tokens for v in answers.values() for a in v),
                                       "invalid_answers": 0, "invalid": {}}
            out.passes.append(figures)
            again = []
            for story in pending:
                found = answers.get(story.index) or [Answer(story.index, error="no answer came back from the LLM stage")]
                verdicts = [judge(a, self.draft, context=context, bound=self.bound, name=self.model.name) for a in found]
                figures["invalid_answers"] += sum(1 for v in verdicts if v.retry)
                verdict = choose(verdicts)
                if verdict.draft is not None:
                    out.drafts[story.index] = verdict.draft
                elif verdict.retry and attempt < self.retries:
                    figures["invalid"][story.index] = verdict.reason
                    again.append(story)
                else:
                    tries = f" after {attempt + 1} tries" if verdict.retry else ""
                    out.failed[story.index] = f"no shot list{tries}: {verdict.reason}"
            pending = again
        return out

    def run_pass(self, stories: list[StoryInput], attempt: int) -> list[Answer]:
        """One ``ray.data.llm`` pass over ``stories``: one engine, the stories batched in it."""
        import ray.data

        rows = [{"item": s.index, "candidate": c, "title": s.title, "text": s.text,
                 "seed": story_seed(self.seed, s.stem, attempt * self.candidates + c)}
                for s in stories for c in range(self.candidates)]
        ds = ray.data.from_items(rows)
        prompts = PromptRows(self.bounds, json.dumps(self.schema), self.bound, self.temperature)
        results = LLMStage(self.model, chat=True)(ds, preprocess=prompts, postprocess=_answer_row)
        return [to_answer(r) for r in results.iter_rows()]
