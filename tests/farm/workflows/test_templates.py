"""The shipped `footage` template on the real cluster: shots → restyle → caption, shots detected once."""

from __future__ import annotations

import json
from typing import Any

from tests.farm.dispatch.conftest import JobFarm
from tests.farm.workflows.conftest import steps, wait_run
from tests.pipelines.test_video_shots import content, progress_events


def test_footage_restyles_by_the_shots_step_and_captions_the_restyled_videos(wf_farm: JobFarm, runs: dict[str, Any]) -> None:
    jf, run = wf_farm, runs["footage"]
    done = wait_run(jf, run["id"], timeout=900)
    assert done["state"] == "succeeded", done
    s = steps(done)
    assert [x["state"] for x in done["steps"]] == ["succeeded"] * 3
    shot_lists = s["shots"]["outputs"]["shots"]
    assert len(shot_lists) == 2 and s["shots"]["counts"] == {"total": 2, "succeeded": 2, "failed": 0}
    # restyle took the shots step's shot lists, aligned with the source videos: it detected nothing itself
    restyle = jf.job(s["restyle"]["job_id"])
    assert restyle["spec"]["asset_ids"] == run["videos"] and restyle["spec"]["shots_asset_ids"] == shot_lists
    for shots_asset, report_asset in zip(shot_lists, s["restyle"]["outputs"]["report"], strict=True):
        detected = [(x["start_frame"], x["end_frame"]) for x in json.loads(content(jf, shots_asset))["shots"]]
        rendered = [(x["start_frame"], x["end_frame"]) for x in json.loads(content(jf, report_asset))["shots"]]
        assert rendered == detected == [(0, 16), (16, 21), (21, 32)]
    # caption captioned the restyled videos with the same shots, and detected none
    caption = jf.job(s["caption"]["job_id"])
    assert caption["spec"]["asset_ids"] == s["restyle"]["outputs"]["video"] and caption["spec"]["shots_asset_ids"] == shot_lists
    shots_phase = next(e for e in progress_events(jf, caption["id"]) if e.get("phase") == "shots")
    assert shots_phase["videos_detected"] == 0 and shots_phase["shots_from_assets"] == 2
    for captions in s["caption"]["outputs"]["captions"]:
        doc = json.loads(content(jf, captions))
        assert len(doc["shots"]) == 3 and all(shot["caption"] for shot in doc["shots"]), doc
