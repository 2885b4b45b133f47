"""The dashboard in a real browser: headless Chromium against a control plane on PostgreSQL and Ray.

One control plane and one browser for the module; each test signs in its own
browser context. Every page visited is screenshotted and checked by axe-core.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.farm.ui.conftest import AXE, Dashboard, ffprobe_duration

XSS_NAME = "<img src=x onerror=alert(1)>"


class Session:
    """A signed-in browser context: its page, the dialogs that fired, the pages it checked."""

    def __init__(self, browser: Any, dash: Dashboard, who: str) -> None:
        self.dash, self.who = dash, who
        # The CSP is lifted in the browser (axe is injected inline), so no dialog proves the escaping on its own;
        # the header itself is asserted on the first response.
        self.context = browser.new_context(base_url=dash.url, bypass_csp=True)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        first = self.page.goto("/ui/jobs")
        assert "/ui/signin" in self.page.url  # no session yet: the sign-in form
        assert first is not None and "frame-ancestors 'none'" in first.headers["content-security-policy"]
        assert "unsafe-inline" not in first.headers["content-security-policy"]
        if "signin" not in dash.extra.get("checked", set()):
            self.check("signin")
        self.page.fill("#api_key", dash.keys[who])
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/ui/jobs")

    def check(self, name: str) -> None:
        """Screenshot the page, then let axe-core judge it: nothing serious or critical."""
        shot = self.dash.shots / f"{self.who}-{name}.png"
        self.page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate("axe.run()")
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
        assert bad == [], f"{name}: {bad}"
        self.dash.extra.setdefault("checked", set()).add(name)

    def csrf(self) -> str:
        return self.page.get_attribute("form.signout input[name=csrf_token]", "value") or ""

    def close(self) -> None:
        assert self.dialogs == [], f"a dialog fired: {self.dialogs}"
        self.context.close()


@pytest.fixture(scope="module")
def echo_job(dashboard: Dashboard) -> dict[str, Any]:
    """A real job whose results are images, started first so it runs while the browser tests do theirs."""
    return dashboard.jf.submit(kind="test.echo", spec={"words": ["dawn"]})


@pytest.fixture
def admin(browser: Any, dashboard: Dashboard, echo_job: dict[str, Any]) -> Iterator[Session]:
    s = Session(browser, dashboard, "a_admin")
    yield s
    s.close()


def test_submit_from_the_page_watch_progress_live_then_cancel(admin: Session, dashboard: Dashboard) -> None:
    page = admin.page
    admin.check("jobs-empty")
    page.select_option("#s-kind", "debug.sleep")
    page.fill("#s-spec", '{"items": 200, "delay_s": 0.25}')  # 50 s of work: it is cancelled long before
    page.click("#submit-job button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/jobs/job_[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.__same_page = true")  # gone if the page reloads

    seen: list[int] = []
    deadline_polls = 1200  # 120 s of 0.1 s looks: a job waits for a Ray Job to start first
    for _ in range(deadline_polls):
        value = int(page.eval_on_selector("#job-progress", "e => e.value"))
        if not seen or value != seen[-1]:
            seen.append(value)
        if len(seen) >= 4:
            break
        page.wait_for_timeout(100)
    assert len(seen) >= 4 and seen == sorted(seen), f"progress seen: {seen}"
    assert page.evaluate("window.__same_page") is True  # moved by the event stream, not by reloads
    assert page.text_content("#job-state") == "running"
    assert int(page.text_content("#job-succeeded") or 0) >= seen[-1] > 0
    admin.check("job-running")

    page.goto("/ui/jobs")
    row = page.locator(f"tr[data-job='{job_id}']")
    assert row.locator("[data-field=state]").text_content() == "running"
    before = row.locator("[data-field=done]").text_content()
    page.wait_for_function(f"document.querySelector(\"tr[data-job='{job_id}'] [data-field=done]\").textContent !== {before!r}")
    admin.check("jobs")

    page.goto(f"/ui/jobs/{job_id}")
    page.click("#cancel-form button")
    page.wait_for_url(f"**/ui/jobs/{job_id}")
    page.wait_for_function("document.getElementById('job-state').textContent === 'cancelled'", timeout=60_000)
    assert page.locator("#cancel-form").is_hidden()
    assert dashboard.jf.job(job_id)["state"] == "cancelled"
    page.reload()
    assert page.locator("#cancel-form").count() == 0 and page.locator("#retry-form").count() == 1
    assert "cancel" in (page.text_content("#events") or "")


def test_an_uploaded_video_plays_and_seeks_and_an_image_result_is_a_thumbnail(admin: Session, dashboard: Dashboard, clip: Path,
                                                                            echo_job: dict[str, Any]) -> None:
    page = admin.page
    project = dashboard.jf.projects["a"]
    page.goto(f"/ui/projects/{project}")
    page.set_input_files("#upload-file", str(clip))
    with page.expect_navigation():  # the page reloads once the upload is in
        page.click("#upload-form button")
    assert page.locator("#upload-progress").count() == 1
    link = page.locator("a.asset-name", has_text="clip.mp4")
    link.click()
    page.wait_for_url(re.compile(r".*/ui/assets/asset_[0-9a-f]+$"))
    page.wait_for_function("document.getElementById('player').readyState >= 3", timeout=30_000)
    duration = page.evaluate("document.getElementById('player').duration")
    assert duration == pytest.approx(ffprobe_duration(clip), abs=0.1)
    seeked = page.evaluate("""() => new Promise((resolve) => {
        const v = document.getElementById('player');
        v.addEventListener('seeked', () => resolve(v.currentTime), { once: true });
        v.currentTime = 0.8;
    })""")
    assert seeked == pytest.approx(0.8, abs=0.1)
    admin.check("asset-video")

    # The content route answers ranges with the session cookie alone: what lets the <video> seek.
    src = page.get_attribute("#player", "src") or ""
    part = page.request.get(src, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and len(part.body()) == 100 and part.headers["content-range"].endswith(f"/{clip.stat().st_size}")

    done = dashboard.jf.wait_done(echo_job["id"], timeout=120)
    assert done["state"] == "succeeded", done
    page.goto(f"/ui/jobs/{echo_job['id']}")
    thumb = page.locator("img.thumb").first
    thumb.wait_for()
    page.wait_for_function("document.querySelector('img.thumb').complete")
    assert page.evaluate("document.querySelector('img.thumb').naturalWidth") > 0
    assert page.text_content("#job-state") == "succeeded"
    admin.check("job-succeeded")


def test_names_are_text_not_markup(admin: Session, dashboard: Dashboard) -> None:
    client = dashboard.jf.clients["a"]
    project = dashboard.jf.projects["a"]
    r = client.post(f"/v1/projects/{project}/assets", files={"file": ("x.txt", b"just text")}, data={"name": XSS_NAME})
    assert r.status_code == 201, r.text
    page = admin.page
    page.goto(f"/ui/projects/{project}?q=onerror")
    names = page.locator("a.asset-name").all_text_contents()
    assert names == [XSS_NAME]  # shown as the characters it is, found by name search
    assert page.locator("main img[src=x]").count() == 0
    page.goto(f"/ui/assets/{r.json()['id']}")
    assert page.text_content("h1 .asset-name") == XSS_NAME
    page.wait_for_timeout(300)  # an onerror would fire as soon as the broken image failed to load
    assert admin.dialogs == []
    admin.check("project")
    page.goto("/ui/projects")
    admin.check("projects")


def test_a_viewer_sees_no_controls_and_cannot_forge_them(browser: Any, dashboard: Dashboard) -> None:
    job = dashboard.jf.submit(spec={"items": 2, "delay_s": 0})
    viewer = Session(browser, dashboard, "a_viewer")
    try:
        page = viewer.page
        assert page.locator("#submit-job").count() == 0
        page.goto(f"/ui/jobs/{job['id']}")
        assert page.locator("#cancel-form, #retry-form, .actions button").count() == 0
        page.goto(f"/ui/projects/{dashboard.jf.projects['a']}")
        assert page.locator("#upload, #upload-form, input[type=file]").count() == 0
        viewer.check("project-viewer")
        token = viewer.csrf()
        forged = page.request.post(f"/ui/jobs/{job['id']}/cancel", form={"csrf_token": token}, max_redirects=0)
        assert forged.status == 403 and "member" in forged.text()
        upload = page.request.post(f"/ui/projects/{dashboard.jf.projects['a']}/assets", headers={"X-CSRF-Token": token},
                                   multipart={"file": {"name": "v.txt", "mimeType": "text/plain", "buffer": b"viewer"}})
        assert upload.status == 403
    finally:
        viewer.close()


def test_another_orgs_job_reads_as_missing_and_forms_need_the_csrf_token(browser: Any, dashboard: Dashboard) -> None:
    job = dashboard.jf.submit(spec={"items": 1, "delay_s": 0})
    other = Session(browser, dashboard, "b_admin")
    try:
        page = other.page
        theirs = page.goto(f"/ui/jobs/{job['id']}")
        theirs_text = page.inner_text("main")
        other.check("not-found")
        missing = page.goto("/ui/jobs/job_" + "0" * 28)
        assert theirs is not None and missing is not None and theirs.status == missing.status == 404
        assert theirs_text == page.inner_text("main")
        assert page.request.get(f"/v1/jobs/{job['id']}").status == 404  # the API's cookie reads are org-bound too

        # Every other page and form with an id of org A's reads as missing too (tests/farm/api/test_isolation.py does the API's).
        project = dashboard.jf.projects["a"]
        upload = dashboard.jf.clients["a"].post(f"/v1/projects/{project}/assets", files={"file": ("a-only.txt", b"org A only")})
        asset = upload.json()["id"]
        for path, missing_path in ((f"/ui/projects/{project}", "/ui/projects/proj_" + "0" * 28),
                                   (f"/ui/assets/{asset}", "/ui/assets/asset_" + "0" * 28)):
            theirs, theirs_text = page.goto(path), page.inner_text("main")
            missing = page.goto(missing_path)
            assert theirs is not None and missing is not None and theirs.status == missing.status == 404, path
            assert theirs_text == page.inner_text("main"), path
        page.goto("/ui/jobs")
        token = other.csrf()
        for path in (f"/ui/jobs/{job['id']}/cancel", f"/ui/jobs/{job['id']}/retry"):
            assert page.request.post(path, form={"csrf_token": token}, max_redirects=0).status == 404, path
        forged_upload = page.request.post(f"/ui/projects/{project}/assets", headers={"X-CSRF-Token": token},
                                          multipart={"file": {"name": "b.txt", "mimeType": "text/plain", "buffer": b"from b"}})
        assert forged_upload.status == 404

        page.goto("/ui/jobs")
        no_token = page.request.post("/ui/projects", form={"name": "forged"}, max_redirects=0)
        wrong = page.request.post("/ui/projects", form={"name": "forged", "csrf_token": "x" * 43}, max_redirects=0)
        assert no_token.status == 403 and wrong.status == 403 and "CSRF" in no_token.text()
        assert page.request.post("/v1/projects", data={"name": "by-cookie"}).status == 401  # API writes need the key
        assert dashboard.jf.clients["b"].get("/v1/projects").json()["data"][0]["name"] != "forged"
    finally:
        other.close()


def test_usage_cluster_batches_and_webhooks_pages(admin: Session, dashboard: Dashboard, ray_cluster: Any) -> None:
    client = dashboard.jf.clients["a"]
    hook = client.post("/v1/webhooks", json={"url": "https://hooks.example.com/farm?x=<b>"})
    assert hook.status_code == 201, hook.text
    page = admin.page
    page.goto("/ui/usage")
    assert "test.echo" in page.inner_text("main")  # the finished image job, in the jobs-per-kind charts
    admin.check("usage")
    page.goto("/ui/cluster")
    nodes = page.locator("#nodes tbody tr")
    assert nodes.count() >= 1 and "(head)" in nodes.first.inner_text()
    assert "/ 8" in nodes.first.inner_text()  # the session's head has 8 logical CPUs
    assert page.get_attribute("#ray-dashboard", "href") == ray_cluster.dashboard_url
    admin.check("cluster")
    page.goto("/ui/batches")
    admin.check("batches")
    page.goto("/ui/webhooks")
    assert "https://hooks.example.com/farm?x=<b>" in page.inner_text("main")
    admin.check("webhooks")
    page.click("form.signout button")
    page.wait_for_url("**/ui/signin")
    page.goto("/ui/jobs")
    assert "/ui/signin" in page.url  # signed out: the session is gone
