"""Who is looking at a page: the session cookie, its CSRF token, its role; and signing in and out.

Pages take ``UiUserDep`` (signed in, any role); forms that change something
take ``csrf_member`` (the form's or header's CSRF token must match the
session's, and the key must be a member or admin), so a viewer's or a
forged POST is a 403 whatever the page showed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from farm.accounts import Principal
from farm.api.deps import RuntimeDep, SessionDep
from farm.db.models import Role
from farm.ratelimit import RateLimiter
from farm.settings import UiSettings
from farm.ui import sessions
from farm.ui.web import PageError, SignInRequired

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class UiUser:
    principal: Principal
    csrf_token: str

    @property
    def role(self) -> str:
        return self.principal.role.value

    @property
    def can_write(self) -> bool:
        return self.principal.can(Role.member)


def current_user(request: Request, session: SessionDep) -> UiUser:
    found = sessions.resolve(session, request.cookies.get(sessions.COOKIE))
    if found is None:
        raise SignInRequired()
    principal, row = found
    user = UiUser(principal, row.csrf_token)
    request.state.ui_user = user
    return user


UiUserDep = Annotated[UiUser, Depends(current_user)]


async def csrf_member(request: Request, session: SessionDep) -> UiUser:
    """A state-changing request: its CSRF token must match the session's, and its key must be allowed to write."""
    found = sessions.resolve(session, request.cookies.get(sessions.COOKIE))
    if found is None:
        raise PageError(403, "Sign in first: this form needs a dashboard session.")
    principal, row = found
    user = UiUser(principal, row.csrf_token)
    request.state.ui_user = user
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not sessions.csrf_ok(row, presented):
        raise PageError(403, "This form has expired or did not come from this dashboard (CSRF check failed). Reload the page and try again.")
    if not user.can_write:
        raise PageError(403, f"This action needs the 'member' role; your key has '{user.role}'.")
    return user


MemberFormDep = Annotated[UiUser, Depends(csrf_member)]


def is_https(request: Request, settings: UiSettings) -> bool:
    """The request came over TLS: the URL's scheme, or the proxy's word when the proxy is trusted."""
    if settings.trusted_proxy:
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if forwarded:
            return forwarded == "https"
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, value: str, settings: UiSettings) -> None:
    response.set_cookie(sessions.COOKIE, value, max_age=settings.session_ttl_s, path="/", httponly=True,
                        samesite="strict", secure=is_https(request, settings))


def clear_cookie(response: Response, request: Request, settings: UiSettings) -> None:
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request, settings))


def sign_in_limiter(request: Request, rt: RuntimeDep) -> RateLimiter:
    """One bucket per client address, held by the app (made on first use)."""
    limiter = getattr(request.app.state, "ui_signin_limiter", None)
    if limiter is None:
        ui = rt.settings.ui
        limiter = request.app.state.ui_signin_limiter = RateLimiter(ui.signin_rate, ui.signin_burst)
    return limiter



