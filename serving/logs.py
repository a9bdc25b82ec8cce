"""vslim-serve's log on stderr: its level, its format, and one access line per request.

stdout carries nothing (the start-up lines that tools wait for, ``listening on`` and
``ready in``, are on stderr too, printed at every level). Everything else goes
through the ``vslim.serving`` logger: warnings, errors with their tracebacks, and
the access lines of ``vslim.serving.access`` at INFO, so ``--log-level warning``
hides them and ``--no-access-log`` does not even install them. Access lines read::

    vslim-serve: access 10.0.0.7:51234 HTTP POST /v2/models/small/infer 200 3.1 ms
    vslim-serve: access 10.0.0.7:51236 gRPC /inference.GRPCInferenceService/ModelInfer OK 2.8 ms

The peer is the client's address as the public port saw it (``peers.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import time

import grpc

from .peers import format_peer, grpc_peer, relayed_peer

LOGGER = "vslim.serving"
ACCESS = logging.getLogger(LOGGER + ".access")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Format(logging.Formatter):
    """``vslim-serve: message`` at INFO, ``vslim-serve: warning: message`` above and below it."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        level = "" if record.levelno == logging.INFO else record.levelname.lower() + ": "
        return f"vslim-serve: {level}{text}"


class _Handler(logging.StreamHandler):
    """The stderr handler ``configure_logging`` installs; ``_vslim`` marks it so it is installed once."""

    _vslim = True


def configure_logging(level: str = "info") -> None:
    """Route the ``vslim.serving`` loggers to stderr at ``level`` (``--log-level``); once per process."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(LEVELS[level])
    if not any(getattr(h, "_vslim", False) for h in logger.handlers):
        handler = _Handler(sys.stderr)
        handler.setFormatter(_Format("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


def access_line(peer: str, protocol: str, what: str, status, ms: float) -> str:
    return f"access {peer} {protocol} {what} {status} {ms:.1f} ms"


class HttpAccessLog:
    """ASGI middleware: one line per HTTP request once its answer is sent (a failure counts as 500)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not ACCESS.isEnabledFor(logging.INFO):
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            ACCESS.info(
                access_line(
                    format_peer(scope.get("client")),
                    "HTTP",
                    f"{scope['method']} {scope['path']}",
                    status,
                    (time.perf_counter() - t0) * 1e3,
                )
            )


class GrpcAccessLog(grpc.aio.ServerInterceptor):
    """One line per unary gRPC call (every inference and metadata call); streaming calls pass unlogged."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not ACCESS.isEnabledFor(logging.INFO):
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._logged(handler.unary_unary, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._logged(handler.stream_unary, method))
        return handler

    @staticmethod
    def _logged(behavior, method: str):
        async def call(request, context):
            t0 = time.perf_counter()
            code = None
            try:
                answer = behavior(request, context)
                return await answer if inspect.isawaitable(answer) else answer
            except grpc.aio.AbortError:
                raise  # context.code() holds what the handler aborted with
            except BaseException as exc:  # what gRPC answers for an escaped exception or a cancelled call
                code = grpc.StatusCode.CANCELLED if isinstance(exc, asyncio.CancelledError) else grpc.StatusCode.UNKNOWN
                raise
            finally:
                code = code or context.code() or grpc.StatusCode.OK
                ACCESS.info(
                    access_line(
                        grpc_peer(context.peer()),
                        "gRPC",
                        method,
                        getattr(code, "name", code),
                        (time.perf_counter() - t0) * 1e3,
                    )
                )

        return call


def relayed_http_protocol():
    """uvicorn's HTTP protocol, told the relayed client's address (see ``peers.py``) as the ASGI ``client``."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    # uvicorn picks AutoHTTPProtocol at import time: a variable typed type[asyncio.Protocol], not a class
    class RelayedHTTP(AutoHTTPProtocol):  # type: ignore[valid-type, misc]
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            peer = relayed_peer(transport.get_extra_info("peername"))
            if peer is not None:
                self.client = peer

    return RelayedHTTP
