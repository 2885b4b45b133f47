"""Reading and validating a batch input file, line by line, without holding it whole.

Line numbers are 1-based, as an editor shows them. A line that cannot run
is reported by number (and, when it names a custom_id, lands in the error
file); every other line runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LineError:
    line: int
    code: str
    message: str
    custom_id: str | None = None
    param: str | None = None

    def public(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True)
class BatchRequest:
    line: int
    custom_id: str
    body: dict[str, Any]


def split_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) from a byte stream; blank lines are skipped but still counted."""
    number, rest = 0, b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for raw in lines:
            number += 1
            if raw.strip():
                yield number, raw
    if rest.strip():
        yield number + 1, rest


@dataclass
class Validator:
    endpoint: str
    models: set[str]
    max_lines: int
    seen: set[str] = field(default_factory=set)
    count: int = 0

    def check(self, line: int, raw: bytes) -> BatchRequest | LineError:
        self.count += 1
        if self.count > self.max_lines:
            return LineError(line, "too_many_requests", f"the file has more than {self.max_lines} requests")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return LineError(line, "invalid_json_line", f"line {line} is not valid JSON: {exc}")
        if not isinstance(obj, dict):
            return LineError(line, "invalid_request", f"line {line} is not a JSON object")
        cid = obj.get("custom_id")
        if not isinstance(cid, str) or not cid or len(cid) > 512:
            return LineError(line, "missing_custom_id", f"line {line}: custom_id must be a non-empty string", param="custom_id")
        if cid in self.seen:
            return LineError(line, "duplicate_custom_id", f"line {line}: custom_id '{cid}' appears earlier in the file", None, "custom_id")
        self.seen.add(cid)
        if obj.get("method", "POST") != "POST":
            return LineError(line, "invalid_method", f"line {line}: method must be POST", cid, "method")
        if obj.get("url") != self.endpoint:
            return LineError(line, "mismatched_url", f"line {line}: url {obj.get('url')!r} does not match the batch's endpoint {self.endpoint}", cid, "url")
        body = obj.get("body")
        if not isinstance(body, dict):
            return LineError(line, "invalid_body", f"line {line}: body must be an object", cid, "body")
        model = body.get("model")
        if model not in self.models:
            return LineError(line, "model_not_found", f"line {line}: unknown model {model!r}; served: {', '.join(sorted(self.models))}", cid, "body.model")
        problem = _body_problem(self.endpoint, body)
        if problem:
            return LineError(line, "invalid_body", f"line {line}: {problem}", cid, "body")
        return BatchRequest(line, cid, body)


def _body_problem(endpoint: str, body: dict[str, Any]) -> str | None:
    if endpoint == "/v1/chat/completions":
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
            return "messages must be a non-empty list of {role, content}"
    elif endpoint == "/v1/completions":
        if not isinstance(body.get("prompt"), str):
            return "prompt must be a string"
    elif endpoint == "/v1/images/generations":
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "prompt must be a non-empty string"
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return "max_tokens must be a positive integer"
    return None
