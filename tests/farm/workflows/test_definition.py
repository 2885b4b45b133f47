"""Workflow definitions: refused at submit naming the step and field; references resolved to what the run needs."""

from __future__ import annotations

from typing import Any

import pytest

from farm.workflows.definition import DefinitionError, RetryPolicy, check_specs, load, resolve_params, resolve_spec, template, validate


def definition(*steps: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"name": "t", "params": params, "steps": list(steps)}


def refused(data: Any) -> str:
    with pytest.raises(DefinitionError) as err:
        validate(load(data))
    return str(err.value)


SHOTS = {"id": "shots", "kind": "video.shots", "spec": {"asset_ids": "${params.videos}"}}
VIDEOS = {"videos": {"type": "string_list"}}


@pytest.mark.parametrize(("steps", "message"), [
    # a cycle, through an output reference one way and depends_on the other
    ([{"id": "a", "kind": "debug.sleep", "depends_on": ["b"]}, {"id": "b", "kind": "debug.sleep", "depends_on": ["a"]}],
     "steps.a.depends_on: cycle: a → b → a"),
    ([{"id": "a", "kind": "video.shots", "spec": {"asset_ids": "${steps.c.outputs.clips}"}},
      {"id": "b", "kind": "video.shots", "spec": {"asset_ids": "${steps.a.outputs.clips}"}},
      {"id": "c", "kind": "video.shots", "spec": {"asset_ids": "${steps.b.outputs.clips}"}}],
     "steps.a.depends_on: cycle: a → c → b → a"),
    ([{"id": "a", "kind": "video.nope"}], "steps.a.kind: unknown job kind 'video.nope'; known kinds: batch.chat"),
    ([{"id": "a", "kind": "debug.sleep", "depends_on": ["ghost"]}], "steps.a.depends_on: unknown step 'ghost'"),
    ([{"id": "a", "kind": "video.shots", "spec": {"asset_ids": "${steps.ghost.outputs.clips}"}}], "steps.a.spec.asset_ids: unknown step 'ghost'"),
    ([SHOTS, {"id": "r", "kind": "video.restyle", "spec": {"asset_ids": "${params.videos}", "prompt": "p",
                                                           "shots_asset_ids": "${steps.shots.outputs.shot_lists}"}}],
     "steps.r.spec.shots_asset_ids: step 'shots' (video.shots) has no output 'shot_lists'; it has: shots, keyframes, clips"),
    # video_shots fed where videos go, and videos where shot lists go
    ([SHOTS, {"id": "c", "kind": "video.caption", "spec": {"asset_ids": "${steps.shots.outputs.shots}"}}],
     "steps.c.spec.asset_ids: type mismatch: video.caption's asset_ids takes video assets, steps.shots.outputs.shots is video_shots"),
    ([SHOTS, {"id": "r", "kind": "video.restyle", "spec": {"asset_ids": "${params.videos}", "prompt": "p",
                                                           "shots_asset_ids": "${steps.shots.outputs.clips}"}}],
     "steps.r.spec.shots_asset_ids: type mismatch: video.restyle's shots_asset_ids takes video_shots assets, steps.shots.outputs.clips is video"),
    # a list of asset ids into a text field; a text parameter into a number
    ([SHOTS, {"id": "r", "kind": "video.restyle", "spec": {"asset_ids": "${params.videos}", "prompt": "${steps.shots.outputs.clips}"}}],
     "steps.r.spec.prompt: type mismatch: steps.shots.outputs.clips is a list of video asset ids, the field takes str"),
    ([{"id": "s", "kind": "debug.sleep", "spec": {"delay_s": "${params.videos}"}}],
     "steps.s.spec.delay_s: type mismatch: parameter 'videos' is string_list, the field takes float"),
    ([{"id": "s", "kind": "debug.sleep", "spec": {"itemz": 3}}, {"id": "s", "kind": "debug.sleep"}], "steps.s.id: two steps have this id"),
    ([{"id": "s", "kind": "debug.sleep", "spec": {"itemz": 3}}], "steps.s.spec.itemz: debug.sleep has no field 'itemz'"),
    ([{"id": "s", "kind": "debug.sleep", "when": "steps.ghost.failed_items > 0"}], "steps.s.when: unknown step 'ghost'"),
    ([{"id": "s", "kind": "debug.sleep", "when": "params.x +"}], "steps.s.when: cannot read ' +'"),
    ([{"id": "s", "kind": "workflow"}], "steps.s.kind: a step cannot be a workflow"),
    ([{"id": "S!", "kind": "debug.sleep"}], "steps.S!.id: String should match pattern"),
    ([{"id": "s", "kind": "debug.sleep", "retry": {"max_attempts": 0}}], "steps.s.retry.max_attempts: Input should be greater than or equal to 1"),
])
def test_bad_definitions_are_refused_naming_the_step_and_field(steps: list[dict[str, Any]], message: str) -> None:
    assert refused(definition(*steps, **VIDEOS)).startswith(message)


def test_spec_errors_and_params_are_refused_before_the_run() -> None:
    plan = validate(load(template("footage")))
    with pytest.raises(DefinitionError, match=r"^params.videos: required \(no default\)"):
        resolve_params(plan.definition, {})
    with pytest.raises(DefinitionError, match=r"^params.vidoes: unknown parameter; this workflow takes: videos, prompt"):
        resolve_params(plan.definition, {"vidoes": ["a"]})
    with pytest.raises(DefinitionError, match=r"^params.short_side: must be integer"):
        resolve_params(plan.definition, {"videos": ["a"], "short_side": "big"})
    with pytest.raises(DefinitionError, match=r"^steps.restyle.spec.short_side: Value error, must be a multiple of 8"):
        check_specs(plan, resolve_params(plan.definition, {"videos": ["a"], "short_side": 100}))
    check_specs(plan, resolve_params(plan.definition, {"videos": ["a", "b"]}))  # outputs stand in as placeholders: valid
    with pytest.raises(DefinitionError, match="not valid YAML"):
        load("steps: [")


def test_the_shipped_templates_chain_typed_outputs() -> None:
    footage = validate(load(template("footage")))
    assert footage.order == ["shots", "restyle", "caption"]
    assert footage.needs == {"shots": [], "restyle": ["shots"], "caption": ["restyle", "shots"]}
    params = resolve_params(footage.definition, {"videos": ["asset_v1", "asset_v2"], "short_side": 64})
    outputs = {"shots": {"shots": ["asset_s1", "asset_s2"]}, "restyle": {"video": ["asset_r1", "asset_r2"]}}
    restyle = resolve_spec(footage.definition.step("restyle"), params, outputs)
    assert (restyle["asset_ids"], restyle["shots_asset_ids"], restyle["short_side"]) == (["asset_v1", "asset_v2"], ["asset_s1", "asset_s2"], 64)
    caption = resolve_spec(footage.definition.step("caption"), params, outputs)
    assert (caption["asset_ids"], caption["shots_asset_ids"]) == (["asset_r1", "asset_r2"], ["asset_s1", "asset_s2"])
    stories = validate(load(template("stories")))
    assert stories.needs["caption"] == ["animatic"]
    with pytest.raises(FileNotFoundError, match="there are: footage, stories"):
        template("nope")


def test_references_inside_text_and_lists() -> None:
    plan = validate(load(definition(
        SHOTS, {"id": "c", "kind": "video.caption", "spec": {"asset_ids": ["${steps.shots.outputs.clips}", "asset_extra"],
                                                            "prompt": "Shot {shot}: ${params.style}"}},
        **VIDEOS, style={"type": "string", "default": "noir"},
    )))
    spec = resolve_spec(plan.definition.step("c"), {"videos": [], "style": "noir"}, {"shots": {"clips": ["asset_c1", "asset_c2"]}})
    assert spec == {"asset_ids": ["asset_c1", "asset_c2", "asset_extra"], "prompt": "Shot {shot}: noir"}
    assert "is a list of asset ids: give it as the whole value" in refused(definition(
        SHOTS, {"id": "c", "kind": "video.caption", "spec": {"asset_ids": ["a"], "prompt": "see ${steps.shots.outputs.clips}"}}, **VIDEOS))


def test_conditions_and_explicit_dependencies_order_the_steps() -> None:
    plan = validate(load(definition(
        {"id": "report", "kind": "debug.sleep", "when": "steps.work.failed_items > 0 or params.always"},
        {"id": "work", "kind": "debug.sleep"},
        {"id": "after", "kind": "debug.sleep", "depends_on": ["report"]},
        always={"type": "boolean", "default": False},
    )))
    assert plan.order == ["work", "report", "after"]
    assert plan.reads["report"] == ["work"] and plan.needs["report"] == [] and plan.needs["after"] == ["report"]


def test_backoff_doubles_up_to_the_cap_with_bounded_seeded_jitter() -> None:
    policy = RetryPolicy(max_attempts=6, backoff_base_s=2, backoff_cap_s=10, jitter=0)
    assert [policy.delay(n, "s") for n in range(1, 6)] == [2, 4, 8, 10, 10]
    jittery = RetryPolicy(max_attempts=3, backoff_base_s=4, backoff_cap_s=100, jitter=0.25)
    delays = [jittery.delay(2, f"run:{i}") for i in range(50)]
    assert all(6 <= d <= 10 for d in delays) and len(set(delays)) > 40  # 8 s ± 25 %, spread out
    assert jittery.delay(2, "run:1") == jittery.delay(2, "run:1")  # the same attempt of the same step waits the same
