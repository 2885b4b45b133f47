"""`story.animatic` end to end: stories through the API, the tiny random-weight LLM and diffusion model on the real Ray cluster.

One job carries everything the acceptance asks, asserted many ways: ten
short stories (one of them a Markdown asset) and one story longer than the
LLM's 1,024-token context (yet within the submit limit). Why random weights
give valid shot lists at all: the schema is flat and bounded (every string a
maxLength, the shot array a maxItems), so vLLM's grammar lets the model write
nothing but a complete shot list within max_tokens; what the strings say is
noise, which the assertions never rely on. Sizes are tiny (64×64 keyframes, 2
diffusion steps, 8 fps, 2–3 shots of 1–3 s, texts of at most 24 characters)
so the job takes seconds after the engines start; nothing asserted depends on
size.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import uuid
from collections import defaultdict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from cluster.local import LocalRayHead
from pipelines.stages.story.shotlist import CAMERAS, ShotList
from pipelines.story_animatic import slug, story_from_text
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm
from tests.fixtures.models import model_cache_dir
from tests.pipelines.test_video_shots import content, item_errors, upload

FPS = 8
SPEC: dict[str, Any] = {
    "min_shots": 2, "max_shots": 3, "shot_text_chars": 24, "min_shot_s": 1, "max_shot_s": 3, "width": 64, "height": 64,
    "fps": FPS, "steps": 2, "variants": 2, "style": "watercolor", "llm_model": "tiny-llama", "diffusion_model": "tiny-sd",
    "seed": 7, "preset": "ultrafast",
}
SHORT = [
    ("The Girl Who Wanted to Fly", "She built wings from paper and wood and climbed the highest hill to try them."),
    ("The Lonely Dragon", "The dragon was not angry; it was only lonely, and the knight became its friend."),
    ("Morning at the Studio", "Every morning the artists came in, made coffee, and sat down to draw."),
    ("Rain Later", "It is sunny with a few clouds, and it will rain later in the afternoon."),
    ("The Boat in the Fog", "A boat on a lake in the morning fog, and an old man walking with his dog."),
    ("Neon City", "A futuristic city at night with neon signs and flying cars."),
    ("Castle at Sunset", "A castle on a mountain at sunset; the wind took her over the river."),
    ("The Red Chair", "A cat sitting on a red chair, then the cat jumps over the lazy dog."),
    ("Autumn Forest", "An old man walking with his dog through a forest in autumn, warm yellow light."),
]
MARKDOWN = "# The Third Time\n\nThe first time she fell, and the second time she fell again, but the third time she flew.\n"
WORDS = ("the sea the sky the sun and the moon a shot is a piece of film between two cuts "
         "light and colour set the mood warm yellow light in the evening cold blue light at night ").split()
LONG = " ".join(WORDS[i % len(WORDS)] for i in range(1500))  # ~1,500 tokens: past the 1,024-token context, under 20,000 characters
STORIES = 11
# one job starts a vLLM engine, a diffusion engine and the runner: minutes on two busy cores
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def animatic_db(postgres_server: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL, for this module's one farm (its job is shared by the tests)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{postgres_server}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def animatic_farm(animatic_db: str, ray_cluster: LocalRayHead, tmp_path_factory: pytest.TempPathFactory,
                  demo_models: dict[str, Path]) -> Iterator[JobFarm]:
    tmp = tmp_path_factory.mktemp("animatic")
    settings = make_settings(tmp, animatic_db, ray_cluster)
    settings.models.cache_dir = model_cache_dir()
    jf = start_job_farm(settings)
    yield jf
    jf.close()
    shutil.rmtree(tmp / "home" / "cache", ignore_errors=True)


@pytest.fixture(scope="module")
def job(animatic_farm: JobFarm, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The one job: 9 inline stories, the over-long one (item 9), and a Markdown asset (item 10)."""
    jf = animatic_farm
    md = tmp_path_factory.mktemp("stories") / "third-time.md"
    md.write_text(MARKDOWN)
    assert len(LONG) < 20_000
    stories = [{"title": t, "text": x} for t, x in SHORT] + [{"title": "The Long One", "text": LONG}]
    submitted = jf.submit(kind="story.animatic", spec={**SPEC, "stories": stories, "asset_ids": [upload(jf, md)]})
    return jf.wait_done(submitted["id"], timeout=840)


def outputs(job: dict[str, Any]) -> dict[int | None, dict[str, list[dict[str, Any]]]]:
    by_item: dict[int | None, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for o in job["outputs"]:
        by_item[o["item"]][o["output"]].append(o)
    return by_item


def name_of(jf: JobFarm, asset_id: str) -> str:
    return str(jf.clients["a"].get(f"/v1/assets/{asset_id}").json()["name"])


def mov_text_cues(path: Path) -> list[tuple[int, int, str]]:
    """The MP4's subtitle track read back with PyAV: (start ms, end ms, text) of each non-empty sample (tx3g: length + UTF-8)."""
    with av.open(str(path)) as c:
        (stream,) = c.streams.subtitles
        assert stream.codec_context.name == "mov_text"
        cues = []
        for p in c.demux(stream):
            data = bytes(p)
            if p.pts is None or len(data) <= 2:
                continue
            (length,) = struct.unpack(">H", data[:2])
            ms = Fraction(p.time_base) * 1000
            cues.append((round(p.pts * ms), round((p.pts + p.duration) * ms), data[2:2 + length].decode()))
        return cues


def srt_cues(path: Path) -> list[tuple[int, int, str]]:
    """The SRT sidecar read back with FFmpeg's SRT demuxer (through PyAV)."""
    with av.open(str(path)) as c:
        stream = c.streams.subtitles[0]
        ms = Fraction(stream.time_base) * 1000
        return [(round(p.pts * ms), round((p.pts + p.duration) * ms), bytes(p).decode().strip()) for p in c.demux(stream) if p.size]


def test_ten_stories_become_animatics_and_the_long_one_fails_as_an_item(animatic_farm: JobFarm, job: dict[str, Any], tmp_path: Path) -> None:
    jf = animatic_farm
    assert job["state"] == "succeeded" and job["counts"] == {"total": STORIES, "succeeded": 10, "failed": 1}, job
    errors = item_errors(jf, job["id"])
    assert list(errors) == [9], errors
    assert "longer than model tiny-llama's context" in (errors[9] or "") and "1024" in (errors[9] or ""), errors

    by_item = outputs(job)
    types = {(o["output"], o["type"]) for o in job["outputs"]}
    assert {("shotlist", "story_shotlist"), ("animatic", "video"), ("subtitles", "captions"), ("keyframes", "image"),
            ("storyboard", "image"), ("shots", "video_shots"), ("report", "report")} == types
    assert set(by_item) == {None, *range(9), 10}, "the failed story has no outputs"

    stems = [slug(t) for t, _ in SHORT] + ["the-third-time"]
    for item, stem in zip([*range(9), 10], stems, strict=True):
        out = by_item[item]
        doc = json.loads(content(jf, out["shotlist"][0]["asset_id"]))
        shotlist = ShotList.model_validate({k: doc[k] for k in ("title", "fps", "timing", "shots")})
        shots = shotlist.shots
        # schema-valid: the bounds of the schema hold in what came back
        assert 2 <= len(shots) <= 3 and [s.index for s in shots] == list(range(1, len(shots) + 1)), doc
        assert all(s.camera in CAMERAS and 1 <= s.duration_s <= 3 and len(s.visual) <= 24 and len(s.narration) <= 24 for s in shots), doc
        assert all(a.end_frame == b.start_frame for a, b in zip(shots, shots[1:], strict=False)) and shots[0].start_frame == 0
        assert name_of(jf, out["shotlist"][0]["asset_id"]) == f"{stem}.shotlist.json"
        if item == 10:
            assert doc["story"]["title"] == "The Third Time" and doc["story"]["asset_id"]

        # one keyframe per shot, plus its variant
        names = {name_of(jf, o["asset_id"]): o["asset_id"] for o in out["keyframes"]}
        expected = {f"{stem}.shot-{s.index:02d}.png" for s in shots} | {f"{stem}.shot-{s.index:02d}.v2.png" for s in shots}
        assert set(names) == expected, (names, expected)
        first = Image.open(io.BytesIO(content(jf, names[f"{stem}.shot-01.png"])))
        assert first.size == (64, 64)

        # the MP4 lasts the sum of the shot durations (within a frame), and its subtitles are the shots' narration
        (animatic,) = out["animatic"]
        assert name_of(jf, animatic["asset_id"]) == f"{stem}.animatic.mp4"
        mp4 = tmp_path / f"{stem}.mp4"
        mp4.write_bytes(content(jf, animatic["asset_id"]))
        total = sum(s.duration_s for s in shots)
        with av.open(str(mp4)) as c:
            v = c.streams.video[0]
            assert v.codec_context.name == "h264" and (v.codec_context.width, v.codec_context.height) == (64, 64)
            frames = sum(1 for _ in c.decode(v))
            duration = float(v.duration * v.time_base)
        assert frames == shotlist.frames and abs(duration - total) <= 1 / FPS, (duration, total)
        expected_cues = [(round(s.start_s * 1000), round(s.end_s * 1000)) for s in shots if s.narration]
        track = mov_text_cues(mp4)
        assert [(a, b) for a, b, _ in track] == expected_cues, (track, shots)
        srt_path = tmp_path / f"{stem}.srt"
        (sub,) = out["subtitles"]
        assert name_of(jf, sub["asset_id"]) == f"{stem}.srt"
        srt_path.write_bytes(content(jf, sub["asset_id"]))
        assert srt_cues(srt_path) == track, "the sidecar and the track hold the same cues"

        # the animatic's shots in video.shots' format, pointing at the MP4
        (shots_out,) = out["shots"]
        shots_doc = json.loads(content(jf, shots_out["asset_id"]))
        assert shots_doc["video"]["asset_id"] == animatic["asset_id"] and shots_doc["frames"] == frames
        assert [(x["start_frame"], x["end_frame"]) for x in shots_doc["shots"]] == [(s.start_frame, s.end_frame) for s in shots]

        (board,) = out["storyboard"]
        assert name_of(jf, board["asset_id"]) == f"{stem}.storyboard.jpg"
        assert Image.open(io.BytesIO(content(jf, board["asset_id"]))).format == "JPEG"


def test_shot_lists_in_one_llm_pass_and_keyframes_batched_across_stories(animatic_farm: JobFarm, job: dict[str, Any]) -> None:
    (report_out,) = outputs(job)[None]["report"]
    report = json.loads(content(animatic_farm, report_out["asset_id"]))
    passes = report["llm"]["passes"]
    # every story went into the first pass, through one engine; a retry pass (if any) holds only stories whose answer was invalid
    assert passes[0]["stories"] == STORIES and passes[0]["items"] == list(range(STORIES)), passes
    assert passes[0]["requests"] == STORIES, "one request per story (candidates=1)"
    assert all(set(p["items"]) <= set(passes[i]["items"]) for i, p in enumerate(passes[1:])), passes
    assert len(passes) <= 1 + 2  # the default retries
    assert report["llm"]["schema"]["properties"]["shots"]["maxItems"] == 3
    diffusion = report["diffusion"]
    keyframes = sum(len(v["keyframes"]) for k, v in outputs(job).items() if k is not None)
    assert diffusion["images"] == keyframes
    assert diffusion["mean_batch_images"] > 1, diffusion
    assert diffusion["batches_across_stories"] >= 1, diffusion


def test_bad_specs_are_refused_at_submit_naming_the_field(animatic_farm: JobFarm) -> None:
    c, project = animatic_farm.clients["a"], animatic_farm.projects["a"]
    story = {"title": "A", "text": "Once upon a time."}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"stories": [{"title": "A", "text": ""}]}, "spec.stories.0.text", "at least 1 character"),
        ({"stories": [story, {"title": "B", "text": "  \n "}]}, "spec.stories.1.text", "must not be empty"),
        ({"stories": [story, {"title": "B", "text": "x" * 101}], "max_story_chars": 100}, "spec.stories",
         "stories[1].text has 101 characters, more than max_story_chars (100)"),
        ({"stories": [story], "llm_model": "no-such-model"}, "spec.llm_model", "unknown llm model 'no-such-model'"),
        ({"stories": [story], "diffusion_model": "tiny-llama"}, "spec.diffusion_model", "unknown diffusion model 'tiny-llama'"),
        ({"stories": [story], "min_shots": 0}, "spec.min_shots", "greater than or equal to 1"),
        ({"stories": [story], "max_shots": 25}, "spec.max_shots", "less than or equal to 24"),
        ({"stories": [story], "min_shots": 5, "max_shots": 3}, "spec", "min_shots (5) is above max_shots (3)"),
        ({"stories": [story], "variants": 9}, "spec.variants", "less than or equal to 4"),
        ({"stories": [story], "width": 100}, "spec.width", "multiple of 8"),
        ({}, "spec", "give stories or asset_ids"),
    ]
    for spec, field, words in cases:
        r = c.post("/v1/jobs", json={"kind": "story.animatic", "project_id": project, "spec": spec})
        assert r.status_code == 422, (spec, r.text)
        message = r.json()["error"]["message"]
        assert message.startswith(f"{field}:") and words in message, (field, message)
    listed = {k["kind"]: k for k in c.get("/v1/job-kinds").json()}
    assert "story.animatic" in listed and "max_story_chars" in json.dumps(listed["story.animatic"])


def test_story_names_and_markdown_titles() -> None:
    assert slug("The Girl Who Wanted to Fly!") == "the-girl-who-wanted-to-fly" and slug("¿?") == "story"
    assert story_from_text("third-time.md", MARKDOWN) == ("The Third Time", MARKDOWN.split("\n", 2)[2].strip())
    assert story_from_text("plain.txt", "  just text \n") == ("plain", "just text")
