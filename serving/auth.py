"""Who may talk to the server: an optional bearer token on every endpoint but health.

The token lives in a file (never on the command line, where ``ps`` shows it) and is
compared in constant time. gRPC clients send ``authorization: Bearer <token>``
metadata, HTTP clients the same header. Health checks stay open so orchestrators
can probe readiness without the secret: ``/health``, gRPC health, and what each
protocol front end declares open (v2: live, ready and model ready). Metadata and
inference always need the token.
"""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc

from .errors import ServingError

OPEN_HTTP_PATHS = ("/health", "/health/live")
OPEN_GRPC_PREFIX = "/grpc.health.v1.Health/"
DENIED = "missing or wrong bearer token"


def load_token(path: Path | str) -> str:
    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServingError(f"auth token file {path} cannot be read: {exc}") from exc
    if len(token) < 16 or not all("!" <= c <= "~" for c in token):
        # printable ASCII only: gRPC metadata cannot carry anything else
        raise ServingError(
            f"auth token in {path} must be one line of at least 16 printable ASCII characters without spaces"
        )
    return token


def authorized(header: str | None, token: str) -> bool:
    """``Bearer <token>``, compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


class GrpcAuth(grpc.aio.ServerInterceptor):
    """Refuses every call without the token but gRPC health and the ``open_methods`` (full method names)."""

    def __init__(self, token: str, open_methods: tuple[str, ...] = (), on_denied=None):
        self.token = token
        self.open_methods = frozenset(open_methods)
        self.on_denied = on_denied

        async def deny(request, context):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"{DENIED}: send metadata 'authorization: Bearer <token>'"
            )

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_GRPC_PREFIX) or method in self.open_methods:
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if authorized(metadata.get("authorization"), self.token):
            return await continuation(handler_call_details)
        if self.on_denied:
            self.on_denied(method)
        return self._deny
