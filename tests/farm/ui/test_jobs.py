"""The jobs pages without a browser: the filter form's "any", paging links, failed items, a workflow run's steps,
live JSON; the batches page, the OpenAI view of batch jobs; the usage charts' numbers per UTC day."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from datetime import timedelta

from farm.db.models import Asset, Batch, File, Job, JobItem, Project, UsageRecord, WorkflowStep, utcnow
from farm.ids import new_id
from tests.farm.ui.conftest import Site


def test_jobs_and_batches_pages(site: tuple[Site, TestClient]) -> None:
    s, client = site
    assert client.post("/ui/signin", data={"api_key": s.keys["viewer"]}, follow_redirects=False).status_code == 303
    with s.db.session() as db:
        project = Project(id=new_id("proj"), org_id=s.org_id, name="trailer")
        db.add(project)
        db.flush()
        ids = []
        for i in range(53):  # one more than a page and a bit
            job = Job(id=new_id("job"), org_id=s.org_id, project_id=project.id, kind="debug.sleep" if i % 2 else "video.shots",
                      state="succeeded" if i % 3 else "failed", total=4, succeeded=4 if i % 3 else 1, failed=0 if i % 3 else 3)
            db.add(job)
            ids.append(job.id)
        run = Job(id=new_id("job"), org_id=s.org_id, project_id=project.id, kind="workflow", state="running", total=2)
        db.add(run)
        db.flush()
        db.add_all([JobItem(job_id=ids[0], idx=i, ok=False, error=f"item {i}: <script>decode failed</script>") for i in range(3)])
        db.add_all([WorkflowStep(run_id=run.id, step="shots", position=0, state="succeeded", attempts=1, job_ids=[ids[0]]),
                    WorkflowStep(run_id=run.id, step="restyle", position=1, state="running", attempts=2, job_ids=[ids[1], ids[2]],
                                 reason="retrying after <b>node lost</b>")])
        asset = Asset(id=new_id("asset"), org_id=s.org_id, project_id=project.id, name="requests.jsonl", kind="text",
                      content_type="application/jsonl", size=10, sha256="0" * 64, object_key="k")
        db.add(asset)
        db.flush()
        files = [File(id=new_id("file"), org_id=s.org_id, project_id=project.id, asset_id=asset.id, filename=name, purpose="batch", bytes=10)
                 for name in ("requests.jsonl", "output.jsonl")]
        db.add_all(files)
        db.add(Batch(id=new_id("batch"), org_id=s.org_id, job_id=ids[1], input_file_id=files[0].id, output_file_id=files[1].id,
                     endpoint="/v1/chat/completions", completion_window="24h", phase="finalizing", expires_at=utcnow() + timedelta(hours=24)))
        db.add_all([UsageRecord(org_id=s.org_id, project_id=project.id, key_id=s.key_ids["member"], endpoint="chat", model="tiny-llm",
                                prompt_tokens=1200, completion_tokens=300, replica_seconds=2.5, created_at=utcnow() - timedelta(days=d))
                    for d in (0, 1, 1)])
        db.commit()

    any_ = client.get("/ui/jobs", params={"state": "", "kind": "", "project_id": ""})  # what the filter form sends for "any"
    assert any_.status_code == 200
    shown = re.findall(r'<tr data-job="(job_[0-9a-f]+)"', any_.text)
    newest_first = sorted([run.id, *ids], reverse=True)  # ids are time-ordered (ties within a millisecond by their random part)
    assert shown == newest_first[:50]
    older = re.search(r'href="\?(cursor=job_[0-9a-f]+)"', any_.text)
    assert older, "a link to the next page, without the empty filters"
    rest = re.findall(r'<tr data-job="(job_[0-9a-f]+)"', client.get(f"/ui/jobs?{older[1]}").text)
    assert rest == newest_first[50:]

    failed = client.get("/ui/jobs", params={"state": "failed", "kind": "video.shots"}).text
    assert re.findall(r'<tr data-job="(job_[0-9a-f]+)"', failed) == sorted((j for i, j in enumerate(ids) if i % 3 == 0 and i % 2 == 0), reverse=True)
    assert client.get("/ui/jobs", params={"state": "lost"}).status_code == 422

    page = client.get(f"/ui/jobs/{run.id}").text
    steps = re.findall(r"<tr><td>(\w+)</td><td class=\"state state-\w+\">(\w+)</td><td>(\d+)</td>", page)
    assert steps == [("shots", "succeeded", "1"), ("restyle", "running", "2")]
    assert f'href="/ui/jobs/{ids[2]}"' in page and "retrying after &lt;b&gt;node lost&lt;/b&gt;" in page

    failed_page = client.get(f"/ui/jobs/{ids[0]}").text
    messages = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td></tr>", failed_page)
    assert messages == [(str(i), f"item {i}: &lt;script&gt;decode failed&lt;/script&gt;") for i in range(3)]

    batches = client.get("/ui/batches").text
    row = re.search(r"<tr><td><code>batch_[0-9a-f]+</code></td>(.*?)</tr>", batches, re.S)
    assert row and "/v1/chat/completions" in row[1] and "completed" in row[1]  # its job succeeded
    assert "4 / 0 / 4" in row[1]  # requests done / failed / total
    assert row[1].count(f'href="/v1/assets/{asset.id}/content"') == 2 and "requests.jsonl" in row[1] and "output.jsonl" in row[1]

    usage = client.get("/ui/usage", params={"days": 7}).text
    tokens_by_project = usage.split("Tokens per day by project", 1)[1].split("</section>", 1)[0]
    assert "<li>" in tokens_by_project and "trailer" in tokens_by_project  # the project by name in the legend
    cells = re.findall(r"<td>([\d.]+)</td>", tokens_by_project)
    assert [float(c) for c in cells] == [0.0] * 5 + [3000.0, 1500.0]  # 2 records yesterday, 1 today, per UTC day
    assert "member" in usage.split("Tokens per day by key", 1)[1].split("</section>", 1)[0]

    live = client.get("/ui/jobs/live.json", params={"ids": f"{run.id},{ids[0]},not-an-id"}).json()
    assert live == {run.id: {"state": "running", "total": 2, "succeeded": 0, "failed": 0, "terminal": False},
                    ids[0]: {"state": "failed", "total": 4, "succeeded": 1, "failed": 3, "terminal": True}}
