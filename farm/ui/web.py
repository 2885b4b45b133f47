"""Rendering dashboard pages: one template environment, the security headers every page carries, page errors.

Jinja's autoescape is on for every template, so names, prompts and error
messages are text, never markup. Pages run no inline script: the CSP forbids
it, and every script is a file under /ui/static.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True))

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "media-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No valid dashboard session: the page sends the browser to the sign-in form."""


class PageError(Exception):
    """A page that cannot be shown: rendered as the error page with this status (404 reads the same for any reason)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def not_found() -> PageError:
    return PageError(404, "Nothing here: the page does not exist, or it is not yours to see.")


def secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    user = getattr(request.state, "ui_user", None)
    response = templates.TemplateResponse(request, template, {"user": user, "nav": template.split(".")[0], **context}, status_code=status)
    return secure(response)  # type: ignore[return-value]


def redirect(url: str) -> Response:
    return secure(RedirectResponse(url, status_code=303))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/ui/signin?next={quote(target)}")

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        return render(request, "error.html", status=exc.status, status_code=exc.status, message=exc.message)
