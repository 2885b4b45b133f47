"""The `video.caption` spec on its own: the model it names, for GPU demand and the submit-time check."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kinds.base import ModelUse
from kinds.video_caption import VideoCaptionSpec


def test_the_job_names_its_vision_language_model() -> None:
    assert VideoCaptionSpec.model_validate({"asset_ids": ["asset_1"]}).models_used() == [ModelUse("vlm", None)]
    named = VideoCaptionSpec.model_validate({"asset_ids": ["asset_1"], "model": "tiny-vlm"})
    assert named.models_used() == [ModelUse("vlm", "tiny-vlm")]


def test_a_model_of_another_kind_is_refused() -> None:
    context = {"models": {"tiny-vlm": "vlm", "tiny-sd": "diffusion"}}
    with pytest.raises(ValidationError, match="model"):
        VideoCaptionSpec.model_validate({"asset_ids": ["asset_1"], "model": "tiny-sd"}, context=context)
    assert VideoCaptionSpec.model_validate({"asset_ids": ["asset_1"], "model": "tiny-vlm"}, context=context).model == "tiny-vlm"
