"""The jobs pages without a browser: the filter form's "any", paging links, a workflow run's steps, live JSON."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from farm.db.models import Job, Project, WorkflowStep
from farm.ids import new_id
from tests.farm.ui.conftest import Site


def test_filters_pages_workflow_steps_and_live_states(site: tuple[Site, TestClient]) -> None:
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
        db.add_all([WorkflowStep(run_id=run.id, step="shots", position=0, state="succeeded", attempts=1, job_ids=[ids[0]]),
                    WorkflowStep(run_id=run.id, step="restyle", position=1, state="running", attempts=2, job_ids=[ids[1], ids[2]],
                                 reason="retrying after <b>node lost</b>")])
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

    live = client.get("/ui/jobs/live.json", params={"ids": f"{run.id},{ids[0]},not-an-id"}).json()
    assert live == {run.id: {"state": "running", "total": 2, "succeeded": 0, "failed": 0, "terminal": False},
                    ids[0]: {"state": "failed", "total": 4, "succeeded": 1, "failed": 3, "terminal": True}}
