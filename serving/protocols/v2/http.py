"""v2 over HTTP/REST: health, server and model metadata, model configuration, statistics, inference.

Routes (``[/versions/{v}]`` optional: without it, the newest ready version):
``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/stats``,
``/v2/models/{m}[/versions/{v}]``, ``.../ready``, ``.../config``, ``.../stats``;
``POST /v2/models/{m}[/versions/{v}]/infer``; Triton's model repository extension:
``POST /v2/repository/index``, ``/v2/repository/models/{m}/load``, ``.../unload``.
Errors are ``{"error": "..."}``. Health answers carry KServe's bodies (``{"live": true}``,
``{"ready": ...}``), which KServe's SDK parses; Triton's clients read the status alone.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from ...errors import NOT_FOUND, RequestError
from ...httpbody import parse_off_loop, read_decoded
from ...openapi import BINARY, JSON_ANY, responses
from ...service import Call
from . import rest
from .errors import HTTP_STATUS
from .models import V2Models, refuse_parameters, server_metadata
from .shm import regions_of

if TYPE_CHECKING:
    from ...repository import ModelRepository

PROTOCOL = "v2-http"  # the metrics label
INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "description": 'e.g. {"inputs":[{"name":"data_batch_0","shape":[1,8,3,64,64],'
                    '"datatype":"FP32","data":[...]}],"parameters":{"top_k":3}}',
                }
            },
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "JSON header, then raw tensor bytes (binary tensor data extension; "
                    "header length in Inference-Header-Content-Length)",
                }
            },
        },
    }
}
INFER_RESPONSES = {
    200: {
        "description": "outputs, as JSON or JSON header + raw bytes",
        "content": {**JSON_ANY, "application/octet-stream": BINARY},
    },
    **responses((400, 401, 404, 413, 415, 500, 503)),
}
MODEL_RESPONSES = responses((401, 404))
HEALTH_RESPONSES = {
    200: {"description": 'yes: {"live": true} or {"ready": true}', "content": JSON_ANY},
    **responses((503,)),
}


def error(exc: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=HTTP_STATUS[exc.kind])


def _json(build) -> JSONResponse:
    """``build()`` as JSON, or the refusal it raised."""
    try:
        return JSONResponse(build())
    except RequestError as exc:
        return error(exc)


def router(repo: ModelRepository) -> APIRouter:
    models = V2Models(repo)
    regions = regions_of(repo)
    api = APIRouter(prefix="/v2", tags=["Open Inference Protocol (v2)"])

    @api.get("", summary="Server metadata: name, version, extensions")
    async def metadata() -> JSONResponse:
        return JSONResponse(server_metadata(regions.allowed))

    shm_responses = responses((400, 401, 404, 415))

    @api.get("/systemsharedmemory/status", summary="Registered shared memory regions", responses=shm_responses)
    async def shm_status() -> JSONResponse:
        return _json(lambda: regions.status())

    @api.get("/systemsharedmemory/region/{region}/status", summary="One region's status", responses=shm_responses)
    async def shm_region_status(region: str) -> JSONResponse:
        return _json(lambda: regions.status(region))

    @api.post(
        "/systemsharedmemory/region/{region}/register",
        summary="Register a region of a POSIX shared memory object (Triton's extension; --allow-client-shm)",
        responses=shm_responses,
    )
    async def shm_register(region: str, request: Request) -> JSONResponse:
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict) or not isinstance(body.get("key"), str):
                raise ValueError
        except ValueError:
            return error(RequestError('the body must be JSON like {"key": "/name", "offset": 0, "byte_size": N}'))
        return _json(lambda: regions.register(region, body["key"], body.get("offset", 0), body.get("byte_size")))

    @api.post("/systemsharedmemory/unregister", summary="Unregister every region", responses=shm_responses)
    async def shm_unregister_all() -> JSONResponse:
        return _json(lambda: regions.unregister())

    @api.post("/systemsharedmemory/region/{region}/unregister", summary="Unregister a region", responses=shm_responses)
    async def shm_unregister(region: str) -> JSONResponse:
        return _json(lambda: regions.unregister(region))

    @api.get("/health/live", summary="200 while the server runs", responses=HEALTH_RESPONSES)
    async def live() -> JSONResponse:
        return JSONResponse({"live": True})

    @api.get(
        "/health/ready", summary="200 once the start-up models are loaded, until shutdown", responses=HEALTH_RESPONSES
    )
    async def ready() -> JSONResponse:
        return JSONResponse({"ready": repo.ready}, status_code=200 if repo.ready else 503)

    @api.get(
        "/models/stats",
        summary="Statistics of every model (Triton's statistics extension)",
        responses=responses((401,)),
    )
    async def all_stats() -> JSONResponse:
        return JSONResponse({"model_stats": models.stats()})

    @api.post(
        "/repository/index",
        summary="Every model of the repository and its state (Triton's extension)",
        responses=responses((400, 401)),
    )
    async def index(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            ready_only = bool(orjson.loads(body).get("ready", False)) if body.strip() else False
        except (orjson.JSONDecodeError, AttributeError):
            return error(RequestError('the index request body must be JSON like {"ready": true}'))
        return JSONResponse(repo.index(ready_only))

    async def control(action, name: str, request: Request) -> Response:
        body = await request.body()
        try:
            params = orjson.loads(body).get("parameters") if body.strip() else None
            refuse_parameters(action.__name__, params or {})
            await action(name)
        except (orjson.JSONDecodeError, AttributeError):
            return error(RequestError('the request body must be empty or JSON like {"parameters": {}}'))
        except RequestError as exc:
            return error(exc)
        return JSONResponse({})

    @api.post(
        "/repository/models/{name}/load",
        summary="Load or reload a model from the repository",
        responses=responses((400, 401, 404, 503)),
    )
    async def load(request: Request, name: str) -> Response:
        return await control(repo.load, name, request)

    @api.post(
        "/repository/models/{name}/unload",
        summary="Unload a model: admitted requests finish first",
        responses=responses((400, 401, 404, 503)),
    )
    async def unload(request: Request, name: str) -> Response:
        return await control(repo.unload, name, request)

    name_param = Path(description="model name", examples=models.names()[:2])
    version_param = Path(description="model version", examples=["1"])

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
        return _json(lambda: models.get(name, version).metadata())

    @per_model(
        "get",
        "/ready",
        summary="200 when the model takes requests",
        response_class=Response,
        responses={**HEALTH_RESPONSES, **responses((404,))},
    )
    async def model_ready(name: str, version: str, request: Request) -> Response:
        try:
            model = models.get(name, version)
            model.service.check_ready()
        except RequestError as exc:
            if exc.kind == NOT_FOUND:
                return error(exc)
            return JSONResponse({"name": name, "ready": False, "error": str(exc)}, status_code=503)
        return JSONResponse({"name": name, "ready": True})

    @per_model("get", "/config", summary="Model configuration (Triton's extension)", responses=MODEL_RESPONSES)
    async def model_config(name: str, version: str, request: Request) -> Response:
        return _json(lambda: models.get(name, version).config())

    @per_model("get", "/stats", summary="Model statistics (Triton's extension)", responses=MODEL_RESPONSES)
    async def model_stats(name: str, version: str, request: Request) -> Response:
        return _json(lambda: {"model_stats": models.stats(name, version)})

    @per_model(
        "post",
        "/infer",
        summary="Inference: JSON or binary tensors",
        openapi_extra=INFER_BODY,
        responses=INFER_RESPONSES,
        response_class=Response,
    )
    async def infer(name: str, version: str, request: Request) -> Response:
        with Call(repo, PROTOCOL, "infer", "v2 HTTP infer") as call:
            model = models.get(name, version)
            service = model.service
            with call.admit(service, model.kind):
                body = await read_decoded(request, service.max_body)
                header = request.headers.get(rest.HEADER_LENGTH)
                req = await parse_off_loop(rest.parse_request, body, header, name, version, service.limits, regions)
                decoded = time.perf_counter()
                resp = await model.infer(req, PROTOCOL)
                answered = time.perf_counter()
                content, headers = rest.encode_response(resp, req, regions)
                stats = service.stats[model.kind]
                stats.spent("compute_input", decoded - call.start)
                stats.spent("compute_output", time.perf_counter() - answered)
        if call.refusal is not None:
            return error(call.refusal)
        return Response(content, headers=headers)

    return api
