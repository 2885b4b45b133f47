"""The `story.animatic` spec on its own: items, models, limits (the API's 422s are in tests/pipelines/test_story_animatic.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kinds.base import ModelUse
from kinds.story_animatic import StoryAnimaticSpec

STORY = {"title": "Wings", "text": "She built wings from paper and wood."}


def test_items_are_the_inline_stories_then_the_assets() -> None:
    spec = StoryAnimaticSpec.model_validate({"stories": [STORY, STORY], "asset_ids": ["asset_1"]})
    assert spec.total_items() == 3 and spec.subtitles == ["srt", "soft"] and spec.crossfade_s == 0


def test_the_job_names_its_two_models() -> None:
    spec = StoryAnimaticSpec.model_validate({"stories": [STORY], "llm_model": "tiny-llama"})
    assert spec.models_used() == [ModelUse("llm", "tiny-llama"), ModelUse("diffusion", None)]


def test_models_are_checked_against_the_registry_given_as_context() -> None:
    context = {"models": {"tiny-llama": "llm", "tiny-sd": "diffusion"}}
    StoryAnimaticSpec.model_validate({"stories": [STORY], "llm_model": "tiny-llama", "diffusion_model": "tiny-sd"}, context=context)
    with pytest.raises(ValidationError, match="unknown llm model 'tiny-sd'"):
        StoryAnimaticSpec.model_validate({"stories": [STORY], "llm_model": "tiny-sd"}, context=context)


def test_limits() -> None:
    with pytest.raises(ValidationError, match="more than max_story_chars"):
        StoryAnimaticSpec.model_validate({"stories": [STORY], "max_story_chars": 10})
    with pytest.raises(ValidationError, match=r"min_shot_s \(5\) is above max_shot_s \(2\)"):
        StoryAnimaticSpec.model_validate({"stories": [STORY], "min_shot_s": 5, "max_shot_s": 2})
    with pytest.raises(ValidationError, match="name each subtitle form once"):
        StoryAnimaticSpec.model_validate({"stories": [STORY], "subtitles": ["srt", "srt"]})
