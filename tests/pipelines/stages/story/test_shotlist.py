"""The shot list's schema is flat and bounded, its output parsed leniently and laid on the frame clock."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, Field

from pipelines.stages.story.shotlist import (
    CAMERAS, Bounds, ShotListError, check_bounded, draft_model, flat_schema, frames_of, messages, narration_seconds, parse, timed,
    token_bound,
)

B = Bounds(min_shots=2, max_shots=4, text_chars=40, min_s=1, max_s=6)


def answer(*shots: dict[str, object]) -> str:
    return json.dumps({"shots": list(shots)})


def shot(visual: str = "a hill", narration: str = "she climbs", camera: str = "pan left", duration_s: int = 3) -> dict[str, object]:
    return {"visual": visual, "narration": narration, "camera": camera, "duration_s": duration_s}


def test_the_schema_is_flat_and_every_string_and_array_is_bounded() -> None:
    schema = flat_schema(draft_model(B))
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text and "anyOf" not in text and '"title"' not in text
    shots = schema["properties"]["shots"]
    assert (shots["minItems"], shots["maxItems"]) == (2, 4)
    props = shots["items"]["properties"]
    assert props["visual"]["maxLength"] == props["narration"]["maxLength"] == 40
    assert props["camera"]["enum"] == list(CAMERAS)
    assert props["duration_s"]["enum"] == [1, 2, 3, 4, 5, 6]
    assert shots["items"]["additionalProperties"] is False and schema["additionalProperties"] is False
    # narration timing: the LLM proposes no duration
    assert "duration_s" not in flat_schema(draft_model(Bounds(2, 4, 40, 1, 6, llm_durations=False)))["properties"]["shots"]["items"]["properties"]


def test_an_unbounded_schema_is_refused() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(extra="forbid")
        words: list[str] = Field(max_length=3)

    with pytest.raises(ValueError, match=r"\$.words\[\]: a string without maxLength"):
        flat_schema(Loose)
    with pytest.raises(ValueError, match="an array without maxItems"):
        check_bounded({"type": "array", "items": {"type": "string", "maxLength": 3}})


def test_the_token_bound_covers_the_longest_answer() -> None:
    schema = flat_schema(draft_model(B))
    longest = answer(*[shot("x" * 40, "y" * 40, "pull out", 6)] * 4)
    assert len(longest) <= token_bound(schema)
    assert token_bound(flat_schema(draft_model(Bounds(2, 8, 40, 1, 6)))) > token_bound(schema)


def test_parse_accepts_control_characters_inside_strings_and_validates() -> None:
    model = draft_model(B)
    raw = '{"shots":[{"visual":"a\x01\x02 hill","narration":"she\tclimbs","camera":"pan left","duration_s":3},' \
          '{"visual":"b","narration":"c","camera":"static","duration_s":1}]}'
    draft = parse(raw, model)
    shots = timed(draft, "Story", B, fps=24, words_per_minute=150).shots
    assert [s.visual for s in shots] == ["a hill", "b"] and shots[0].narration == "she climbs"
    with pytest.raises(ShotListError, match="not complete JSON"):
        parse(raw[:-5], model)
    with pytest.raises(ShotListError, match=r"shots: List should have at least 2 items"):
        parse(answer(shot()), model)
    with pytest.raises(ShotListError, match=r"shots.0.duration_s: Input should be 1, 2, 3, 4, 5 or 6"):
        parse(answer(shot(duration_s=9), shot()), model)
    with pytest.raises(ShotListError, match=r"shots.1.camera"):
        parse(answer(shot(), shot(camera="dolly")), model)


def test_shots_are_laid_end_to_end_in_whole_frames() -> None:
    draft = parse(answer(shot(duration_s=2), shot(duration_s=1), shot(duration_s=3)), draft_model(B))
    listed = timed(draft, "Story", B, fps=12, words_per_minute=150)
    assert [(s.index, s.start_frame, s.end_frame) for s in listed.shots] == [(1, 0, 24), (2, 24, 36), (3, 36, 72)]
    assert [s.duration_s for s in listed.shots] == [2.0, 1.0, 3.0] and listed.frames == 72
    assert (listed.shots[2].start_s, listed.shots[2].end_s) == (3.0, 6.0)


def test_narration_timing_reads_the_words() -> None:
    b = Bounds(2, 4, 40, 1, 6, llm_durations=False)
    assert narration_seconds("one two three four five", 150, b) == 2.0  # 5 words at 150 wpm
    assert narration_seconds("hi", 150, b) == 1.0 and narration_seconds("w " * 40, 150, b) == 6.0  # within the bounds
    draft = parse(json.dumps({"shots": [{"visual": "a", "narration": "one two three four five", "camera": "static"}] * 2}), draft_model(b))
    listed = timed(draft, "S", b, fps=10, words_per_minute=150)
    assert [s.end_frame for s in listed.shots] == [20, 40] and listed.timing == "narration"
    assert frames_of(0.01, 24) == 1 and frames_of(1.49, 2) == 3


def test_the_prompt_states_the_bounds_and_carries_the_story() -> None:
    system, user = messages("Wings", "She built wings.", B)
    assert "2 to 4 shots" in system["content"] and "at most 40 characters" in system["content"] and "(1 to 6)" in system["content"]
    assert user == {"role": "user", "content": "Title: Wings\n\nShe built wings."}
