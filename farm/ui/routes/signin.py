"""Sign in with an API key, sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from farm.api.deps import RuntimeDep, SessionDep
from farm.ratelimit import RateLimiter
from farm.ui import sessions
from farm.ui.auth import CSRF_FIELD, clear_cookie, set_cookie, sign_in_limiter
from farm.ui.web import redirect, render

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard: never another site (an open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/jobs"


@router.get("/signin")
def signin_page(request: Request, next: str | None = None) -> Response:
    return render(request, "signin.html", next=_safe_next(next))


@router.post("/signin")
def signin(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    limiter: Annotated[RateLimiter, Depends(sign_in_limiter)],
    api_key: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        # another site posting a key of its own (login CSRF): the form has no session yet to carry a token
        return render(request, "error.html", status=403, status_code=403, message="Sign in from this dashboard's own page.")
    client = request.client.host if request.client else "unknown"
    decision = limiter.check(client)
    if not decision.allowed:
        response = render(request, "signin.html", status=429, next=_safe_next(next),
                          error=f"Too many sign-in attempts. Try again in {decision.retry_after_header} s.")
        response.headers["Retry-After"] = decision.retry_after_header
        return response
    signed = sessions.sign_in(session, api_key, rt.settings.ui.session_ttl)
    if signed is None:
        return render(request, "signin.html", status=401, next=_safe_next(next), error="That key is not valid, or it was revoked.")
    response = redirect(_safe_next(next))
    set_cookie(response, request, signed[0], rt.settings.ui)
    return response


@router.post("/signout")
async def signout(request: Request, session: SessionDep, rt: RuntimeDep) -> Response:
    """Needs the session's CSRF token too: a forged sign-out is refused like any forged form."""
    found = sessions.resolve(session, request.cookies.get(sessions.COOKIE))
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if found is not None and not sessions.csrf_ok(found[1], token if isinstance(token, str) else None):
        return render(request, "error.html", status=403, status_code=403, message="Sign-out refused: CSRF check failed.")
    sessions.sign_out(session, request.cookies.get(sessions.COOKIE))
    response = redirect("/ui/signin")
    clear_cookie(response, request, rt.settings.ui)
    return response
