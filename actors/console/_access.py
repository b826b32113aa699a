"""Who may use the console: a token off localhost, and no request a foreign page can forge.

Bound to a loopback address the console trusts the machine's users (like the daemon's local
socket would) but still checks the ``Host`` header, so a web page elsewhere cannot reach it by
pointing a name of its own at 127.0.0.1 (DNS rebinding). Bound anywhere else every request needs
the token printed at start: in the ``token`` query parameter of the first URL (the answer sets it
as a same-site cookie), the cookie, or an ``Authorization: Bearer`` header. Requests that change
anything are POSTs with a JSON body, the page's CSRF value in a header and, when the browser says
where the request comes from, an ``Origin`` of the console itself: a form or script on another
site can send none of these.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

TOKEN_COOKIE: Final = "sd_console_token"  # noqa: S105 (the cookie's name, not a secret)
CSRF_HEADER: Final = "X-SD-Console-CSRF"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """The rules for one console: ``token`` is None when bound to loopback."""

    token: str | None
    allowed_hosts: frozenset[str]
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def for_address(cls, host: str, port: int) -> AccessPolicy:
        if is_loopback(host):
            names = {"127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host.strip('[]')}]"}
            return cls(token=None, allowed_hosts=frozenset(f"{name}:{port}" for name in names))
        return cls(token=secrets.token_urlsafe(24), allowed_hosts=frozenset())

    def refusal(self, request: web.Request) -> str | None:
        """Why ``request`` is refused, or None when it may go on."""
        if self.token is None:
            if request.host not in self.allowed_hosts:
                return (f"this console answers only to {', '.join(sorted(self.allowed_hosts))}, not to Host "
                        f"{request.host!r}; open it by one of those names")
        elif not any(hmac.compare_digest(given.encode(), self.token.encode()) for given in _tokens(request)):
            return ("this console needs the token printed when it started: open the URL it printed "
                    "(…/?token=…) or send 'Authorization: Bearer TOKEN'")
        if request.method not in ("GET", "HEAD"):
            return self._forgery(request)
        return None

    def _forgery(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return f"a request from {origin} may not change anything here (cross-site request refused)"
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), self.csrf.encode()):
            return f"a request that changes something needs the page's {CSRF_HEADER} header; reload the console"
        if request.content_type != "application/json":
            return "a request that changes something sends JSON (Content-Type: application/json)"
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self.refusal(request)
        if refusal is not None:
            status = 401 if self.token is not None and "token" in refusal else 403
            return web.json_response({"error": refusal}, status=status)
        response = await handler(request)
        if self.token is not None and request.query.get("token") == self.token:
            # The first URL carried the token: the page's own requests carry it as a cookie from now on.
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response


def _tokens(request: web.Request) -> list[str]:
    given = [request.query.get("token", ""), request.cookies.get(TOKEN_COOKIE, "")]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given.append(value.strip())
    return [token for token in given if token]
