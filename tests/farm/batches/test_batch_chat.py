"""OpenAI Batch API end to end with the official client: files → batch → poll → output files."""

from __future__ import annotations

from typing import Any

from tests.farm.batches.conftest import JOB, OFFLINE, SERVE, BatchFarm

GOOD = 64  # runnable requests of the job-engine batch: one 64-row block of the engine and a bit


def chat(i: int, content: str = "", max_tokens: int = 4, model: str = SERVE) -> dict[str, Any]:
    return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": content or f"tell me about shot {i}"}],
                     "max_tokens": max_tokens, "temperature": 0}}


def stop_probe(i: int, model: str = SERVE) -> dict[str, Any]:
    """A request that ends on a stop string: the tiny model answers this prompt " after…" at temperature 0."""
    line = {**chat(i, content="tell me about shot 1", max_tokens=16, model=model), "custom_id": f"stop-{i}"}
    line["body"]["stop"] = "e"
    return line


def assert_stopped(body: dict[str, Any]) -> None:
    """An answer cut at its stop string: finish_reason stop, the string left out of the text, as OpenAI does."""
    assert body["choices"][0]["finish_reason"] == "stop", body
    assert "e" not in body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] < 16, body


def test_chat_batch_with_poison_and_malformed_line(batch_farm: BatchFarm) -> None:
    """On a job-scoped engine: a malformed line and a request past the context fail alone; finish_reason from the tokens."""
    lines: list[dict[str, Any] | str] = [chat(i, model=JOB) for i in range(GOOD - 1)]
    lines.append(stop_probe(GOOD - 1, model=JOB))
    lines.insert(10, '{"custom_id": "broken", "method": "POST", ')  # line 11: malformed JSON
    lines.append(chat(9999, content="word " * 3000, model=JOB))  # poison: longer than the 1024-token context
    batch = batch_farm.submit(lines)
    assert batch.status == "validating" and batch.request_counts.total == 0
    done = batch_farm.wait(batch.id)
    assert done.status == "completed", done
    errs = batch_farm.lines(done.error_file_id)
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (GOOD + 2, GOOD, 2), errs[:2]
    assert done.errors is not None
    bad = [e for e in done.errors.data if e.line == 11]
    assert bad and bad[0].code == "invalid_json_line"
    out = batch_farm.lines(done.output_file_id)
    ids = [o["custom_id"] for o in out]
    assert sorted(ids) == sorted([f"req-{i}" for i in range(GOOD - 1)] + [f"stop-{GOOD - 1}"]) and len(ids) == len(set(ids))
    first = next(o for o in out if o["custom_id"] == "req-0")
    body = first["response"]["body"]
    assert first["response"]["status_code"] == 200 and body["object"] == "chat.completion" and body["model"] == JOB
    assert body["usage"]["completion_tokens"] == 4 and body["usage"]["prompt_tokens"] > 0
    assert body["choices"][0]["finish_reason"] == "length"  # stopped by its own max_tokens (4)
    assert_stopped(next(o for o in out if o["custom_id"] == f"stop-{GOOD - 1}")["response"]["body"])
    assert [e["custom_id"] for e in errs] == ["req-9999"]
    assert "context" in errs[0]["error"]["message"]
    assert done.metadata == {"test": "yes"}


def test_a_serve_model_without_its_deployment_fails_before_any_request_runs(serve_batch_farm: BatchFarm) -> None:
    batch_farm = serve_batch_farm
    done = batch_farm.wait(batch_farm.submit([chat(i, model=OFFLINE) for i in range(3)]).id)
    assert done.status == "failed" and done.request_counts.completed == 0, done
    (error,) = done.errors.data
    assert (error.code, error.param) == ("model_unavailable", "model"), error  # the model, not the input file
    # names the model, the Serve application and its missing deployment, and what to do
    for part in (f"model '{OFFLINE}'", "Serve application 'llm'", f"'LLMServer:{OFFLINE}'", "batch_engine: job"):
        assert part in error.message, error.message
    assert batch_farm.lines(done.output_file_id) == []
    job = batch_farm.jf.job(done.job_id)
    assert job["state"] == "failed" and job["attempts"] == 1 and job["error"].startswith("model unavailable: "), job["error"]
    assert OFFLINE in job["error"]


def test_validation_reports_lines_before_any_compute(batch_farm: BatchFarm) -> None:
    ok = chat(1)
    lines: list[dict[str, object] | str] = [
        ok,
        chat(1),  # line 2: duplicate custom_id
        {**chat(3), "url": "/v1/completions"},  # line 3: wrong endpoint
        {**chat(4), "body": {"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}},  # line 4: unknown model
        "not json",  # line 5
    ]
    batch_farm.jf.settings.batch.max_lines = 100
    # only line 1 could run; make it unrunnable too so no engine starts: a model the registry lacks
    lines[0] = {**ok, "body": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}}
    done = batch_farm.wait(batch_farm.submit(lines).id)
    assert done.status == "completed" and done.request_counts.total == 5 and done.request_counts.failed == 5
    codes = {e.line: e.code for e in done.errors.data}
    assert codes == {1: "model_not_found", 2: "duplicate_custom_id", 3: "mismatched_url", 4: "model_not_found", 5: "invalid_json_line"}
    assert batch_farm.lines(done.output_file_id) == []
    assert sorted(e["custom_id"] for e in batch_farm.lines(done.error_file_id)) == ["req-1", "req-3", "req-4"]
    events = batch_farm.jf.clients["a"].get(f"/v1/jobs/{done.job_id}").json()
    assert events["attempts"] == 1


def test_file_over_the_limits_fails_the_batch(batch_farm: BatchFarm) -> None:
    batch_farm.jf.settings.batch.max_lines = 3
    done = batch_farm.wait(batch_farm.submit([chat(i) for i in range(5)]).id)
    assert done.status == "failed" and done.errors.data[0].code == "invalid_file"
    assert "more than 3 requests" in done.errors.data[0].message
    assert done.output_file_id is None


def test_a_body_the_online_route_refuses_is_reported_with_its_param(batch_farm: BatchFarm) -> None:
    changes = [{"max_tokens": 0}, {"temperature": "hot"}, {"messages": []}, {"messages": [{"content": "no role"}]}]
    lines = [{**chat(i), "body": {**chat(i)["body"], **change}} for i, change in enumerate(changes, start=1)]
    online = [batch_farm.jf.clients["a"].post("/v1/chat/completions", json=line["body"]) for line in lines]
    assert [r.status_code for r in online] == [400] * len(lines), [r.text for r in online]
    done = batch_farm.wait(batch_farm.submit(lines).id)
    assert done.status == "completed" and done.request_counts.failed == len(lines), done
    reported = {e.line: (e.code, e.param) for e in done.errors.data}
    assert reported == {n: ("invalid_body", r.json()["error"]["param"]) for n, r in enumerate(online, start=1)}
    assert sorted(e["custom_id"] for e in batch_farm.lines(done.error_file_id)) == [f"req-{i}" for i in range(1, len(lines) + 1)]
