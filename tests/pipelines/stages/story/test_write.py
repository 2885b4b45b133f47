"""Judging the LLM's answers: valid, worth another try, or failed for a reason a user can act on."""

from __future__ import annotations

import json

from pipelines.stages.story.shotlist import Bounds, draft_model, flat_schema, token_bound
from pipelines.stages.story.write import Answer, PromptRows, Verdict, choose, context_of, judge, story_seed, to_answer
from serve.registry import ModelSpec

B = Bounds(2, 4, 40, 1, 6)
MODEL = draft_model(B)
GOOD = json.dumps({"shots": [{"visual": "a", "narration": "b", "camera": "static", "duration_s": 2}] * 2})


def test_a_valid_answer_is_a_draft() -> None:
    verdict = judge(Answer(0, 0, GOOD, 100, 60), MODEL, context=1024, bound=900, name="tiny-llama")
    assert verdict.draft is not None and verdict.reason is None


def test_a_refused_story_fails_saying_it_is_past_the_context() -> None:
    refused = Answer(3, error="VLLMValidationError: This model's maximum context length is 1024 tokens. However, your request has 1613 input tokens.")
    verdict = judge(refused, MODEL, context=1024, bound=900, name="tiny-llama")
    assert verdict.draft is None and not verdict.retry
    assert "longer than model tiny-llama's context" in (verdict.reason or "") and "1613" in (verdict.reason or "")


def test_an_answer_cut_off_by_the_context_is_not_retried() -> None:
    verdict = judge(Answer(1, 0, GOOD[:50], 900, 124), MODEL, context=1024, bound=917, name="tiny-llama")
    assert not verdict.retry and "takes 900 of model tiny-llama's 1024-token context" in (verdict.reason or "")


def test_an_invalid_answer_is_worth_another_try() -> None:
    verdict = judge(Answer(1, 0, GOOD[:50], 100, 30), MODEL, context=1024, bound=917, name="tiny-llama")
    assert verdict.retry and "not complete JSON" in (verdict.reason or "")
    assert judge(Answer(1, 0, GOOD[:50], 100, 30), MODEL, context=None, bound=917, name="m").retry


def test_rows_the_engine_refused_keep_their_error() -> None:
    assert to_answer({"item": 4, "candidate": 1, "__inference_error__": "too long", "messages": []}) == Answer(4, 1, error="too long")
    row = {"item": 2, "candidate": 0, "text": GOOD, "prompt_tokens": 80, "completion_tokens": 40, "__inference_error__": ""}
    assert to_answer(row) == Answer(2, 0, GOOD, 80, 40)


def test_prompt_rows_carry_the_schema_as_structured_output() -> None:
    schema = flat_schema(MODEL)
    row = PromptRows(B, json.dumps(schema), token_bound(schema), 0.7)({"item": 5, "candidate": 1, "title": "T", "text": "story", "seed": 11})
    params = row["sampling_params"]
    assert (row["item"], row["candidate"]) == (5, 1) and row["messages"][1]["content"] == "Title: T\n\nstory"
    assert json.loads(params["structured_outputs"]["json"]) == schema and params["structured_outputs"]["disable_any_whitespace"]
    assert (params["seed"], params["max_tokens"], params["temperature"]) == (11, token_bound(schema), 0.7)


def test_seeds_are_fixed_per_story_and_new_per_try() -> None:
    assert story_seed(0, "wings", 0) == story_seed(0, "wings", 0)
    assert len({story_seed(0, "wings", 0), story_seed(0, "wings", 1), story_seed(0, "dragon", 0), story_seed(1, "wings", 0)}) == 4


def test_the_context_comes_from_the_registry() -> None:
    assert context_of(ModelSpec(name="m", kind="llm", source="x", engine_kwargs={"max_model_len": 1024})) == 1024
    assert context_of(ModelSpec(name="m", kind="llm", source="x")) is None


def test_the_first_valid_candidate_wins_and_a_wall_beats_a_retry() -> None:
    good, bad, wall = Verdict(draft=MODEL.model_validate_json(GOOD)), Verdict(reason="not JSON", retry=True), Verdict(reason="too long")
    assert choose([bad, good]) is good and choose([good, bad]) is good
    assert choose([bad, wall]) is wall and choose([bad, bad]).retry
