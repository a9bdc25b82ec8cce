"""The HTTP side of the server: every protocol's routes on one FastAPI app, with the shared parts.

Shared here: bearer-token auth (one middleware for every route), ``/health``,
``/health/live``, ``/metrics`` (Prometheus, every model's series), ``/model`` (what is served) and the
OpenAPI document at ``/openapi.json``, shown by ``/docs`` (Swagger UI, its files served from here) with every
protocol's routes.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from .auth import DENIED, OPEN_HTTP_PATHS, authorized
from .errors import RequestError
from .logs import HttpAccessLog
from .openapi import TEXT, add_docs, responses
from .protocols import Frontend
from .protocols.v2.errors import HTTP_STATUS
from .repository import ModelRepository


def _label(frontends: list[Frontend], path: str) -> str:
    return next((f.http_label for f in frontends if f.owns_path(path)), "http")


def make_http_app(
    repo: ModelRepository, frontends: list[Frontend], token: str | None = None, access_log: bool = False
) -> FastAPI:
    """``access_log``: one line per request (``logs.py``); vslim-serve asks for it, Ray's replicas leave it to Ray."""
    server_metrics = repo.metrics.for_model("")
    app = FastAPI(
        title="vslim serving",
        version="1",
        docs_url=None,
        redoc_url=None,
        description=f"Models {', '.join(f'`{n}`' for n in repo.names()) or '(none loaded yet)'} over "
        "Paddle Serving's protocol and the Open Inference Protocol (KServe v2); gRPC on the "
        "same port.",
    )
    add_docs(app)

    if token:

        def is_open(path: str) -> bool:
            return path in OPEN_HTTP_PATHS or any(f.open_http(path) for f in frontends)

        @app.middleware("http")
        async def require_token(request: Request, call_next):
            path = request.url.path
            if is_open(path) or authorized(request.headers.get("authorization"), token):
                return await call_next(request)
            server_metrics.errors.labels(_label(frontends, path), "unauthenticated").inc()
            # {"error": ...} is both the v2 error body and what Paddle Serving clients print
            return JSONResponse(
                {"error": f"{DENIED}: send 'Authorization: Bearer <token>'"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(HTTPException)
    async def routing_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Unknown path, wrong method: v2's ``{"error": ...}`` (as Triton says it), FastAPI's ``detail`` kept."""
        return JSONResponse(
            {"error": str(exc.detail), "detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    for frontend in frontends:
        app.include_router(frontend.http_router(repo))

    @app.get(
        "/health",
        summary="200 once the models are loaded and taking requests, else 503",
        responses=responses((503,)),
        tags=["health"],
    )
    async def health() -> JSONResponse:
        status = "ready" if repo.ready else ("draining" if repo.draining else "loading")
        names = repo.names()
        doc = {
            "status": status,
            "model": repo.default or (names[0] if len(names) == 1 else None),
            "models": {n: repo.versions(n) for n in names},
        }
        return JSONResponse(doc, status_code=200 if repo.ready else 503)

    @app.get("/health/live", summary="200 while the process runs", tags=["health"])
    async def live() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        tags=["server"],
        responses={200: {"description": "Prometheus text exposition format", "content": TEXT}, **responses((401,))},
    )
    async def metrics() -> Response:
        for service in repo.services():
            if service.engine is not None:
                service.metrics.queue_depth.set(service.engine.queue_depth)
        return Response(repo.metrics.render(), media_type=repo.metrics.content_type)

    @app.get(
        "/model",
        summary="What is served: inputs, outputs, precision, preprocessing, labels (the default model, or ?name=)",
        responses=responses((401, 404, 503)),
        tags=["server"],
    )
    async def model(name: str | None = None) -> JSONResponse:
        try:
            service = repo.get(name) if name else repo.default_service()
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=HTTP_STATUS[exc.kind])
        sig, meta = service.signature, service.bundle.meta
        return JSONResponse(
            {
                "name": service.name,
                "version": service.version,
                "precision": service.engine.predictor.precision if service.engine else service.bundle.info.precision,
                "runtime": service.engine.predictor.runtime if service.engine else None,
                "inputs": [
                    {"name": s.name, "alias": s.alias, "dtype": s.dtype.name, "shape": [-1, *s.shape]}
                    for s in sig.feeds
                ],
                "outputs": [
                    {"name": s.name, "alias": s.alias, "dtype": s.dtype.name, "shape": [-1, *s.shape]}
                    for s in sig.fetches
                ],
                "preprocess": {
                    k: getattr(meta.preprocess, k)
                    for k in ("num_seg", "seg_len", "short_size", "target_size", "fixed_ratio", "mean", "std")
                },
                "labels": meta.labels,
                "verified_manifest": service.bundle.manifest is not None,
                "protocols": [f.name for f in frontends],
            }
        )

    if access_log:  # added last, so outermost: it sees what the token check refuses too
        app.add_middleware(HttpAccessLog)
    return app
