"""The front door's one way to Serve: HTTP to Serve's internal proxy.

Why HTTP and not Serve handles: the control plane stays a plain web process
(no Ray driver, no Ray version coupling, restarts independently of the
cluster), streaming passes straight through, and the same client works
against a local head, a remote cluster or a KubeRay Serve service. The proxy
listens on loopback / a cluster-internal service only; this module is the
only caller. One pooled aiohttp session keeps connections warm.

Upstream answers are mapped to what an OpenAI client expects: Serve's
back-pressure (503/429) keeps its status and gains ``Retry-After``; a Serve
that refuses connections, or has no application at the path yet, is a 503;
other upstream failures are a 502, never a hang (timeouts are configured).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp

from farm.api.routes.openai.errors import retry_after, unavailable
from farm.openai.errors import OpenAIError
from farm.settings import ServeSettings

#: Seconds this request spent waiting on Serve (to response headers), for ``Server-Timing``.
UPSTREAM_SECONDS: ContextVar[float] = ContextVar("upstream_seconds", default=0.0)


def _add_upstream(start: float) -> None:
    UPSTREAM_SECONDS.set(UPSTREAM_SECONDS.get() + time.perf_counter() - start)


@dataclass(frozen=True)
class Answer:
    """A whole answer from Serve."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]  # case-insensitive (Serve's Retry-After)
    content: bytes

    @classmethod
    def of(cls, response: aiohttp.ClientResponse, content: bytes) -> Answer:
        return cls(response.status, response.reason or "", response.headers.copy(), content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Stream:
    """An open streamed answer from Serve; the caller closes it."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _transport_error(exc) from None

    async def aclose(self) -> None:
        self._response.release()


class ServeClient:
    """One pooled aiohttp session to Serve's proxy.

    aiohttp rather than httpx on this path: httpx's pool checks every idle
    connection's socket on each request it places (a ``poll`` per
    connection), which at 32 concurrent streams made the pool the front
    door's largest cost after authentication.
    """

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._timeout = aiohttp.ClientTimeout(total=None, connect=settings.connect_timeout_s, sock_read=settings.request_timeout_s)
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp binds a session to the running event loop.
        if self._http is None:
            connector = aiohttp.TCPConnector(limit=512, limit_per_host=512, keepalive_timeout=30)
            self._http = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False)
        return self._http

    def url(self, path: str) -> str:
        base = self.settings.url
        if not base:
            raise unavailable("online generation is not configured on this farm (FARM_SERVE__URL is unset)", code="serve_not_configured", retry_after_s=60)
        return base.rstrip("/") + path

    async def _open(self, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        url = self.url(path)
        start = time.perf_counter()
        try:
            return await self._session().post(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _transport_error(exc) from None
        finally:
            _add_upstream(start)

    async def post(self, path: str, body: dict[str, Any]) -> Answer:
        """POST JSON and read the whole answer; an error answer raises :class:`OpenAIError`."""
        response = await self._open(path, body)
        try:
            content = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _transport_error(exc) from None
        finally:
            response.release()
        answer = Answer.of(response, content)
        if answer.status_code >= 400:
            raise upstream_error(answer)
        return answer

    async def stream(self, path: str, body: dict[str, Any]) -> Stream:
        """POST JSON and return the open answer (the caller closes it); errors raise before any byte is relayed."""
        response = await self._open(path, body)
        if response.status >= 400:
            try:
                content = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                content = b""
            finally:
                response.release()
            raise upstream_error(Answer.of(response, content))
        return Stream(response)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _transport_error(exc: BaseException) -> OpenAIError:
    connecting = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    if isinstance(exc, asyncio.TimeoutError) and not connecting:
        return OpenAIError(504, "the generation backend did not answer in time", code="timeout")
    return unavailable(f"the generation service is not reachable ({exc.__class__.__name__}); retry shortly", code="serve_unreachable")


def _message(response: Answer) -> tuple[str, str | None, bool]:
    """The upstream error's message, its param, and whether it was a JSON error at all."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text.strip()[:500] or response.reason_phrase, None, False
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            param = err.get("param")
            return str(err.get("message") or err)[:2000], param if isinstance(param, str) else None, True
        if "message" in data:
            return str(data["message"])[:2000], None, True
        if "detail" in data:
            return str(data["detail"])[:2000], None, True
    return str(data)[:500], None, True


def upstream_error(response: Answer) -> OpenAIError:
    status = response.status_code
    message, param, is_json = _message(response)
    wait = response.headers.get("retry-after")
    try:
        wait_s = float(wait) if wait is not None else 1.0
    except ValueError:
        wait_s = 1.0
    if status in (429, 503):
        code = "rate_limit_exceeded" if status == 429 else "overloaded"
        return OpenAIError(status, f"the model is overloaded; retry shortly ({message})", code=code, headers=retry_after(wait_s))
    if status == 404 and not is_json:  # Serve's proxy has no application at that path (yet)
        return unavailable("the model is not deployed on Serve yet; retry shortly", code="model_not_deployed")
    if status in (400, 413, 422):
        return OpenAIError(400, message, param=param)
    if status == 408:
        return OpenAIError(504, message, code="timeout")
    if status < 500:
        return OpenAIError(status, message, param=param)
    return OpenAIError(502, f"the generation backend failed: {message}", code="upstream_error")
