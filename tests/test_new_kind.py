"""A new kind is one spec module and one pipeline module, each named in one list.

The throwaway kind in ``tests/extra_kinds`` is added through the list of
extra kind modules (``FARM_EXTRA_KINDS``), runs on the real Ray cluster
through the real dispatcher and runner, and its outputs are recorded by type.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PIL import Image

from cluster.local import LocalRayHead
from tests.farm.dispatch.conftest import make_settings, start_job_farm
from tests.kinds.throwaway import isolate_registry

EXTRA = "tests.extra_kinds.echo_kind"


def test_a_throwaway_kind_runs_on_ray_and_records_typed_outputs(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_registry(monkeypatch)  # the extra kind leaves the process-wide registry with the test
    settings = make_settings(tmp_path, postgres_url, ray_cluster).model_copy(update={"extra_kinds": [EXTRA]})
    jf = start_job_farm(settings)
    client = jf.clients["a"]
    try:
        listed = {k["kind"]: k for k in client.get("/v1/job-kinds").json()}
        assert {o["name"]: o["type"] for o in listed["test.echo"]["outputs"]} == {"card": "image", "summary": "table"}
        refused = client.post("/v1/jobs", json={"kind": "test.echo", "project_id": jf.projects["a"], "spec": {"words": []}})
        assert refused.status_code == 422 and "words" in refused.text

        words = ["dawn", "dusk", "night"]
        job = jf.submit(kind="test.echo", spec={"words": words})
        done = jf.wait_done(job["id"], timeout=240)
        assert done["state"] == "succeeded", done
        assert done["counts"] == {"total": 3, "succeeded": 3, "failed": 0}

        cards = sorted((o for o in done["outputs"] if o["output"] == "card"), key=lambda o: o["item"])
        assert [(o["item"], o["type"]) for o in cards] == [(0, "image"), (1, "image"), (2, "image")]
        for o in cards:  # a worker wrote the bytes; the driver recorded them as the item's card
            image = Image.open(io.BytesIO(client.get(f"/v1/assets/{o['asset_id']}/content").content))
            assert image.size == (8 + o["item"], 8)
        (summary,) = [o for o in done["outputs"] if o["output"] == "summary"]
        assert summary["item"] is None and summary["type"] == "table"
        rows = list(csv.DictReader(io.StringIO(client.get(f"/v1/assets/{summary['asset_id']}/content").text)))
        assert [(int(r["index"]), r["word"], r["asset_id"]) for r in rows] == [(o["item"], words[o["item"]], o["asset_id"]) for o in cards]
        assert set(done["result_asset_ids"]) == {o["asset_id"] for o in done["outputs"]}
    finally:
        jf.close()
