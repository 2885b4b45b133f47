"""The front door's one way to Serve: HTTP to Serve's internal proxy.

Why HTTP and not Serve handles: the control plane stays a plain web process
(no Ray driver, no Ray version coupling, restarts independently of the
cluster), streaming passes straight through, and the same client works
against a local head, a remote cluster or a KubeRay Serve service. The proxy
listens on loopback / a cluster-internal service only; this module is the
only caller. One pooled ``httpx.AsyncClient`` keeps connections warm.

Upstream answers are mapped to what an OpenAI client expects: Serve's
back-pressure (503/429) keeps its status and gains ``Retry-After``; a Serve
that refuses connections, or has no application at the path yet, is a 503;
other upstream failures are a 502, never a hang (timeouts are configured).
"""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from typing import Any

import httpx

from farm.api.routes.openai.errors import retry_after, unavailable
from farm.openai.errors import OpenAIError
from farm.settings import ServeSettings

#: Seconds this request spent waiting on Serve (to response headers), for ``Server-Timing``.
UPSTREAM_SECONDS: ContextVar[float] = ContextVar("upstream_seconds", default=0.0)


def _add_upstream(start: float) -> None:
    UPSTREAM_SECONDS.set(UPSTREAM_SECONDS.get() + time.perf_counter() - start)


class ServeClient:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )

    def url(self, path: str) -> str:
        base = self.settings.url
        if not base:
            raise unavailable("online generation is not configured on this farm (FARM_SERVE__URL is unset)", code="serve_not_configured", retry_after_s=60)
        return base.rstrip("/") + path

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST JSON and read the whole answer; an error answer raises :class:`OpenAIError`."""
        url = self.url(path)
        start = time.perf_counter()
        try:
            response = await self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        finally:
            _add_upstream(start)
        if response.status_code >= 400:
            raise upstream_error(response)
        return response

    async def stream(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST JSON and return the open response (the caller closes it); errors raise before any byte is relayed."""
        url = self.url(path)
        request = self._http.build_request("POST", url, json=body)
        start = time.perf_counter()
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        finally:
            _add_upstream(start)
        if response.status_code >= 400:
            try:
                await response.aread()
            except httpx.HTTPError:
                pass
            finally:
                await response.aclose()
            raise upstream_error(response)
        return response

    async def aclose(self) -> None:
        await self._http.aclose()


def _transport_error(exc: httpx.HTTPError) -> OpenAIError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return OpenAIError(504, "the generation backend did not answer in time", code="timeout")
    return unavailable(f"the generation service is not reachable ({exc.__class__.__name__}); retry shortly", code="serve_unreachable")


def _message(response: httpx.Response) -> tuple[str, str | None, bool]:
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


def upstream_error(response: httpx.Response) -> OpenAIError:
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
