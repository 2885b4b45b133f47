"""batch.chat's lines on both engines: sampling parameters, and answers whose ids are unique across batches (no Ray needed)."""

from __future__ import annotations

import json

from pipelines.batch_chat import CHAT, _serve_request, postprocess, sampling_params, serve_postprocess, to_line


def test_stop_strings_reach_the_engine_and_are_kept_in_the_text() -> None:
    assert sampling_params({"max_tokens": 8, "stop": "e", "temperature": 0}) == {
        "temperature": 0, "max_tokens": 8, "stop": ["e"], "include_stop_str_in_output": True}
    assert "stop" not in sampling_params({"max_completion_tokens": 8})


def test_an_engine_row_becomes_an_answer_with_its_finish_reason() -> None:
    convert = postprocess(frozenset({925}), 1024)
    engine = {"line": 3, "custom_id": "a", "served_model": "tiny-llama", "num_input_tokens": 9, "max_tokens": 16}
    stopped = convert({**engine, "generated_tokens": [439], "generated_text": " afte", "num_generated_tokens": 1, "stop": '["e"]'})
    cut = convert({**engine, "generated_tokens": list(range(16)), "generated_text": "x" * 16, "num_generated_tokens": 16, "stop": "[]"})
    assert (stopped["finish_reason"], stopped["text"], stopped["completion_tokens"]) == ("stop", " aft", 1)
    assert (cut["finish_reason"], cut["prompt_tokens"]) == ("length", 9)


def test_response_ids_are_unique_across_batches_with_the_same_custom_ids() -> None:
    row = {"line": 1, "custom_id": "req-1", "model": "tiny-llama", "text": "hi", "finish_reason": "stop",
           "prompt_tokens": 3, "completion_tokens": 1}
    # two batches, each with its line 1 named req-1: every id differs
    lines = [json.loads(to_line(endpoint)(row)[1]) for endpoint in (CHAT, CHAT, "/v1/completions", "/v1/completions")]
    for ids in ([x["id"] for x in lines], [x["response"]["body"]["id"] for x in lines], [x["response"]["request_id"] for x in lines]):
        assert len(set(ids)) == len(ids), ids
    assert lines[0]["response"]["body"]["choices"][0]["finish_reason"] == "stop"


def test_a_serve_request_carries_the_job_engines_sampling_and_its_answer_the_same_line() -> None:
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stop": "e",
            "temperature": 0, "stream": True, "n": 3}
    row = _serve_request({"line": 4, "custom_id": "a", "body": json.dumps(body)})
    # the sampling parameters the job engine gets; vLLM's own stop handling (the string left out of the text)
    assert row["request"] == {"model": "tiny-llama", "messages": body["messages"], "temperature": 0, "max_tokens": 8, "stop": ["e"]}
    assert row["request_id"] != _serve_request({"line": 4, "custom_id": "a", "body": json.dumps(body)})["request_id"]
    answer = serve_postprocess({**row, "generated_text": " aft", "finish_reason": "stop", "num_input_tokens": 9,
                                "num_generated_tokens": 1, "error": None})
    line = json.loads(to_line(CHAT)(answer)[1])
    assert line["custom_id"] == "a" and line["response"]["body"]["choices"][0] == {
        "index": 0, "message": {"role": "assistant", "content": " aft"}, "finish_reason": "stop"}
    assert line["response"]["body"]["usage"] == {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    refused = serve_postprocess({**row, "error": "maximum context length is 1024 tokens"})
    ok, error = to_line(CHAT)(refused)
    assert not ok and "context length" in json.loads(error)["error"]["message"]
