"""OpenAI Batch API end to end with the official client: files → batch → poll → output files."""

from __future__ import annotations

from tests.farm.batches.conftest import BatchFarm


def chat(i: int, content: str = "", max_tokens: int = 4) -> dict[str, object]:
    return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "tiny-llama", "messages": [{"role": "user", "content": content or f"tell me about shot {i}"}],
                     "max_tokens": max_tokens, "temperature": 0}}


def test_chat_batch_with_poison_and_malformed_line(batch_farm: BatchFarm) -> None:
    lines: list[dict[str, object] | str] = [chat(i) for i in range(500)]
    lines.insert(100, '{"custom_id": "broken", "method": "POST", ')  # line 101: malformed JSON
    lines.append(chat(9999, content="word " * 3000))  # poison: longer than the 1024-token context
    batch = batch_farm.submit(lines)
    assert batch.status == "validating" and batch.request_counts.total == 0
    done = batch_farm.wait(batch.id)
    assert done.status == "completed", done
    errs = batch_farm.lines(done.error_file_id)
    assert done.request_counts.total == 502 and done.request_counts.completed == 500 and done.request_counts.failed == 2, errs[:2]
    assert done.errors is not None
    bad = [e for e in done.errors.data if e.line == 101]
    assert bad and bad[0].code == "invalid_json_line"
    out = batch_farm.lines(done.output_file_id)
    ids = [o["custom_id"] for o in out]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(500)) and len(ids) == len(set(ids))
    first = next(o for o in out if o["custom_id"] == "req-0")
    body = first["response"]["body"]
    assert first["response"]["status_code"] == 200 and body["object"] == "chat.completion"
    assert body["usage"]["completion_tokens"] == 4 and body["usage"]["prompt_tokens"] > 0
    assert [e["custom_id"] for e in errs] == ["req-9999"]
    assert "context" in errs[0]["error"]["message"]
    assert done.metadata == {"test": "yes"}
