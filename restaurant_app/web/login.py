"""The login of the dashboard and the API when the web server listens beyond loopback.

With ``DASHBOARD_TOKEN`` set, every request needs it, as a bearer token (``Authorization:
Bearer <token>``) or as the password of HTTP Basic authentication (any user name), which a
browser asks for by itself. The probes and metrics stay open: they tell a part's state and
counts, never an order, a customer or a secret. ``POST /api/orders`` has its own token.
"""

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

OPEN_PATHS = frozenset({"/livez", "/readyz", "/health", "/metrics", "/api/orders", "/api/openapi.json"})
REALM = 'Basic realm="restaurant-sales", charset="UTF-8"'


def presented_token(authorization: str | None) -> str:
    """The token an ``Authorization`` header carries, as a bearer token or a Basic password."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


def allowed(path: str, authorization: str | None, token: str) -> bool:
    """Whether a request for ``path`` may be answered: no token set, an open path, or the token."""
    if not token or path in OPEN_PATHS:
        return True
    return hmac.compare_digest(presented_token(authorization).encode(), token.encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def login_middleware(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware that answers 401 to a request ``allowed`` refuses."""

    @web.middleware
    async def require_login(request: web.Request, handler: Handler) -> web.StreamResponse:
        if allowed(request.path, request.headers.get("Authorization"), token):
            return await handler(request)
        return web.json_response({"error": "log in: send the DASHBOARD_TOKEN as a bearer token or"
                                  " as the password of HTTP Basic authentication"},
                                 status=401, headers={"WWW-Authenticate": REALM})

    return require_login
