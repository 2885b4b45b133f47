"""Reading and validating a batch input file, line by line, without holding it whole.

Line numbers are 1-based, as an editor shows them. A line that cannot run
is reported by number (and, when it names a custom_id, lands in the error
file); every other line runs. Each line's body is checked with the online
route's own request model (:data:`farm.openai.batch_lines.BODY_MODELS`), so
a body the front door refuses is refused here too, naming the same ``param``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from farm.openai.batch_lines import BODY_MODELS, BatchRequestLine
from farm.openai.errors import describe


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


# A line's own fields (not its body), by the code their problem is reported with.
LINE_CODES = {"custom_id": "missing_custom_id", "method": "invalid_method", "url": "mismatched_url", "body": "invalid_body"}


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
        try:
            request = BatchRequestLine.model_validate(obj)
        except ValidationError as exc:
            return self._bad_line(line, obj, exc.errors()[0])
        cid = request.custom_id
        if duplicate := self._claim(line, cid):
            return duplicate
        if request.url != self.endpoint:
            return LineError(line, "mismatched_url", f"line {line}: url {request.url!r} does not match the batch's endpoint {self.endpoint}", cid, "url")
        try:
            body = BODY_MODELS[self.endpoint].model_validate(request.body)
        except ValidationError as exc:
            param, message = describe(exc.errors())
            return LineError(line, "invalid_body", f"line {line}: {message}", cid, param)
        if body.model not in self.models:
            served = ", ".join(sorted(self.models))
            return LineError(line, "model_not_found", f"line {line}: unknown model {body.model!r}; served: {served}", cid, "model")
        return BatchRequest(line, cid, body.model_dump(mode="json", exclude_unset=True))

    def _claim(self, line: int, cid: str) -> LineError | None:
        """Reserve ``cid`` for this line; a custom_id seen before is an error (its first line keeps it)."""
        if cid in self.seen:
            return LineError(line, "duplicate_custom_id", f"line {line}: custom_id '{cid}' appears earlier in the file", None, "custom_id")
        self.seen.add(cid)
        return None

    def _bad_line(self, line: int, obj: dict[str, Any], problem: ErrorDetails) -> LineError:
        """A line whose own fields are wrong; with a usable custom_id, that id is still claimed."""
        name = str(problem["loc"][0])
        message = f"line {line}: {name}: {problem['msg']}"
        if name == "custom_id":
            return LineError(line, LINE_CODES[name], message, param=name)
        cid: str = obj["custom_id"]
        return self._claim(line, cid) or LineError(line, LINE_CODES[name], message, cid, name)
