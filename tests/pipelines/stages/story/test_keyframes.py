"""Keyframe requests: per-shot seeds a re-run reproduces, prompts with the style, the job's look."""

from __future__ import annotations

from pathlib import Path

from farm.runner.objects import FolderObjects
from pipelines.stages.story.keyframes import KeyframeStage, KeyframeTask, Look, keyframe_prompt, shot_seed
from serve.demo import demo_registry


def test_seeds_are_fixed_per_shot() -> None:
    assert shot_seed(7, "wings", 1) == shot_seed(7, "wings", 1)
    assert len({shot_seed(7, "wings", 1), shot_seed(7, "wings", 2), shot_seed(7, "dragon", 1), shot_seed(8, "wings", 1)}) == 4


def test_prompts_carry_the_camera_and_style() -> None:
    assert keyframe_prompt("a hill", "pan left", " watercolor ") == "a hill, pan left shot, watercolor"
    assert keyframe_prompt("a hill", "static", "") == "a hill" and keyframe_prompt("", "static", "") == "an empty scene"


def test_requests_use_the_jobs_look_and_the_shots_seed(tmp_path: Path) -> None:
    stage = KeyframeStage(demo_registry(tmp_path).get("tiny-sd"), FolderObjects(tmp_path), Look(64, 96, 2, 5.0, "blurry"))
    task = KeyframeTask(3, "wings", 2, "a hill", 1234, variants=2)
    request = stage.request(task)
    assert (request.item, request.name) == (3, "wings.shot-02")
    r = request.request
    assert (r.prompt, r.negative_prompt, r.n, r.width, r.height, r.steps, r.guidance_scale, r.seed) == ("a hill", "blurry", 2, 64, 96, 2, 5.0, 1234)
