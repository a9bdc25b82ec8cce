"""Why a server refuses a request, said once for every protocol.

The engine, the validators and the models raise :class:`RequestError` with a
``kind``; each protocol turns the kind into its own status (see
``protocols/*/errors.py``), so a new protocol never changes the core.
"""

from __future__ import annotations

import logging

from vslim.errors import VslimError

INVALID = "invalid"  # the request is malformed or does not fit the model
NOT_FOUND = "not_found"  # unknown model or version
TOO_LARGE = "too_large"  # over a body, element or batch limit
UNSUPPORTED = "unsupported"  # a media type or encoding the endpoint does not take
UNAUTHENTICATED = "unauthenticated"
UNAVAILABLE = "unavailable"  # still loading, or draining
INTERNAL = "internal"  # inference failed
KINDS = (INVALID, NOT_FOUND, TOO_LARGE, UNSUPPORTED, UNAUTHENTICATED, UNAVAILABLE, INTERNAL)


class ServingError(VslimError):
    """A serving bundle, server or client cannot do what was asked."""


class BundleError(ServingError):
    """A serving bundle is incomplete, changed or malformed."""


class ClientError(ServingError):
    """A client's request refused by the server, or never answered.

    ``kind`` is one of :data:`KINDS`, the same whatever the protocol (what a caller branches on: retry on
    UNAVAILABLE, fix the input on INVALID); ``status`` is the protocol's own code (an HTTP status, a gRPC code
    name, Paddle Serving's err_no), None when no server answered.
    """

    def __init__(self, message: str, kind: str = INTERNAL, status: int | str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.status = status


class ServerUnreachableError(ClientError):
    """Nothing answered at the client's address (refused, unknown host, no connection in time).

    Its own exit code (3) lets scripts tell "start the server first" from a request the server refused.
    """

    exit_code = 3

    def __init__(self, message: str):
        super().__init__(message, UNAVAILABLE)


class RequestError(ServingError):
    """A request the server must refuse; the message names the problem and the fix."""

    def __init__(self, message: str, kind: str = INVALID):
        if kind not in KINDS:
            raise ValueError(f"unknown request error kind {kind!r}")
        super().__init__(message)
        self.kind = kind


def unexpected(exc: BaseException, where: str) -> RequestError:
    """A bug met while answering: logged with its traceback, answered as INTERNAL (never a bare 500)."""
    logging.getLogger("vslim.serving").error("unexpected error in %s", where, exc_info=exc)
    return RequestError(f"internal error in {where}: {type(exc).__name__}: {exc}", INTERNAL)
