"""v2 over HTTP/REST: health, server and model metadata, model configuration, statistics, inference.

Routes (``[/versions/{v}]`` optional; vslim serves version ``1``):
``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/stats``,
``/v2/models/{m}[/versions/{v}]``, ``.../ready``, ``.../config``, ``.../stats``;
``POST /v2/models/{m}[/versions/{v}]/infer``. Errors are ``{"error": "..."}``.
"""
from __future__ import annotations

import time

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from ...errors import RequestError, unexpected
from ...httpbody import parse_off_loop, read_decoded
from ...openapi import BINARY, JSON_ANY, responses
from ...service import ModelService
from . import rest
from .errors import HTTP_STATUS
from .models import Repository, server_metadata

PROTOCOL = "v2-http"  # the metrics label
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"], "description":
                                    'e.g. {"inputs":[{"name":"data_batch_0","shape":[1,8,3,64,64],'
                                    '"datatype":"FP32","data":[...]}],"parameters":{"top_k":3}}'}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description":
                                            "JSON header, then raw tensor bytes (binary tensor data extension; "
                                            "header length in Inference-Header-Content-Length)"}}}}}
INFER_RESPONSES = {200: {"description": "outputs, as JSON or JSON header + raw bytes",
                         "content": {**JSON_ANY, "application/octet-stream": BINARY}},
                   **responses((400, 401, 404, 413, 415, 500, 503))}
MODEL_RESPONSES = responses((401, 404))
HEALTH_RESPONSES = {200: {"description": "yes (empty body)", "content": {}}, **responses((503,))}


def error(exc: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=HTTP_STATUS[exc.kind])


def _empty(status: int = 200) -> Response:
    return Response(status_code=status)


def _json(build) -> JSONResponse:
    """``build()`` as JSON, or the refusal it raised."""
    try:
        return JSONResponse(build())
    except RequestError as exc:
        return error(exc)


def router(service: ModelService) -> APIRouter:
    repo = Repository(service)
    api = APIRouter(prefix="/v2", tags=["Open Inference Protocol (v2)"])

    def readiness() -> Response:
        """200 with an empty body, or 503 saying why not (loading, draining)."""
        try:
            service.check_ready()
        except RequestError as exc:
            return error(exc)
        return _empty()

    @api.get("", summary="Server metadata: name, version, extensions")
    async def metadata() -> JSONResponse:
        return JSONResponse(server_metadata())

    @api.get("/health/live", summary="200 while the server runs", responses=HEALTH_RESPONSES,
             response_class=Response)
    async def live() -> Response:
        return _empty()

    @api.get("/health/ready", summary="200 once the model is loaded and taking requests", responses=HEALTH_RESPONSES,
             response_class=Response)
    async def ready() -> Response:
        return readiness()

    @api.get("/models/stats", summary="Statistics of every model (Triton's statistics extension)",
             responses=responses((401,)))
    async def all_stats() -> JSONResponse:
        return JSONResponse({"model_stats": repo.stats()})

    name_param = Path(description="model name", examples=list(repo.models))
    version_param = Path(description="model version (this server has 1)", examples=["1"])

    def per_model(method: str, path: str, **route):
        """Register ``handler(name, version, request)`` at ``/models/{name}PATH`` and its versioned twin."""
        def register(handler):
            async def latest(request: Request, name: str = name_param) -> Response:
                return await handler(name, "", request)

            async def versioned(request: Request, name: str = name_param, version: str = version_param) -> Response:
                return await handler(name, version, request)

            add = getattr(api, method)
            add(f"/models/{{name}}{path}", name=f"{handler.__name__}", **route)(latest)
            add(f"/models/{{name}}/versions/{{version}}{path}", name=f"{handler.__name__}_version", **route)(versioned)
            return handler
        return register

    @per_model("get", "", summary="Model metadata: versions, platform, inputs, outputs", responses=MODEL_RESPONSES)
    async def model_metadata(name: str, version: str, request: Request) -> Response:
        return _json(lambda: repo.get(name, version).metadata())

    @per_model("get", "/ready", summary="200 when the model takes requests", response_class=Response,
               responses={**HEALTH_RESPONSES, **responses((404,))})
    async def model_ready(name: str, version: str, request: Request) -> Response:
        try:
            repo.get(name, version)
        except RequestError as exc:
            return error(exc)
        return readiness()

    @per_model("get", "/config", summary="Model configuration (Triton's extension)", responses=MODEL_RESPONSES)
    async def model_config(name: str, version: str, request: Request) -> Response:
        return _json(lambda: repo.get(name, version).config())

    @per_model("get", "/stats", summary="Model statistics (Triton's extension)", responses=MODEL_RESPONSES)
    async def model_stats(name: str, version: str, request: Request) -> Response:
        return _json(lambda: {"model_stats": repo.stats(name, version)})

    @per_model("post", "/infer", summary="Inference: JSON or binary tensors", openapi_extra=INFER_BODY,
               responses=INFER_RESPONSES, response_class=Response)
    async def infer(name: str, version: str, request: Request) -> Response:
        start = time.perf_counter()
        model = None
        try:
            model = repo.get(name, version)
            service.check_ready()
            body = await read_decoded(request, service.max_body)
            header = request.headers.get(rest.HEADER_LENGTH)
            req = await parse_off_loop(rest.parse_request, body, header, name, version, service.limits)
            resp = await model.infer(req, PROTOCOL)
            content, headers = rest.encode_response(resp, req)
        except Exception as exc:
            refusal = exc if isinstance(exc, RequestError) else unexpected(exc, "v2 HTTP infer")
            service.record(PROTOCOL, "infer", start, refusal, model.kind if model else None)
            return error(refusal)
        service.record(PROTOCOL, "infer", start, model=model.kind)
        return Response(content, headers=headers)

    return api
