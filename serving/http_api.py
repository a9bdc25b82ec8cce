"""HTTP: Paddle Serving's general-model endpoint, PaddleVideo's video endpoint, health and metrics.

* ``POST /GeneralModelService/inference`` (and ``/debug``): the ``Request``
  message as proto3 JSON (``application/json``) or binary (``application/proto``),
  answered in kind; ``Content-Encoding: gzip`` accepted.
* ``POST /video/prediction``: PaddleVideo's pipeline client body
  ``{"key": ["frames", "frames_shape"], "value": [base64 uint8 THWC, "(T, H, W, 3)"]}``.
* ``POST /video/classify?top_k=5``: a video file as the body; top-k classes back.
* ``GET /health`` (200 only once the model is loaded), ``/health/live``, ``/metrics``, ``/model``.
"""
from __future__ import annotations

import ast
import asyncio
import base64
import binascii
import math
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from vslim.errors import DataError, RequestError

from . import codec
from .auth import OPEN_HTTP_PATHS, authorized
from .service import ERR_NO, HTTP_STATUS, ModelService

PROTO_TYPES = ("application/proto", "application/x-protobuf", "application/octet-stream")
OFFLOAD_BYTES = 256 << 10  # decode bigger bodies off the event loop
DRAIN_FACTOR = 4
GENERAL_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "Request as proto3 JSON, e.g. "
                                    '{"tensor":[{"float_data":[...],"elem_type":1,"name":"data_batch_0",'
                                    '"alias_name":"data_batch_0","shape":[1,8,3,64,64]}],'
                                    '"fetch_var_names":["outputs"],"log_id":0}'}},
    "application/proto": {"schema": {"type": "string", "format": "binary",
                                     "description": "serialized baidu.paddle_serving...general_model.Request"}}}}}
VIDEO_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["key", "value"], "properties": {
        "key": {"type": "array", "items": {"type": "string"}, "example": ["frames", "frames_shape"]},
        "value": {"type": "array", "items": {"type": "string"}}}}}}}}
FILE_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "video/mp4": {"schema": {"type": "string", "format": "binary"}}}}}

# What each endpoint answers besides 200, so clients (and schema-driven testers) know every
# status the server can return: 401 only applies when the server runs with --auth-token-file.
_WHY = {400: "malformed request: the message names the field", 401: "missing or wrong bearer token",
        413: "body, decompressed body or batch over the server's limits",
        415: "Content-Type the endpoint does not take", 500: "inference failed (err_no -5100)",
        503: "model not loaded yet, or the server is draining"}
_JSON_ANY = {"application/json": {"schema": {"type": "object"}}}
GENERAL_CONTENT = {**_JSON_ANY, "application/proto": {"schema": {"type": "string", "format": "binary"}}}


def _responses(codes, content=None) -> dict:
    return {code: {"description": _WHY[code], "content": content or _JSON_ANY} for code in codes}


GENERAL_RESPONSES = {200: {"description": "Response, in the request's encoding", "content": GENERAL_CONTENT},
                     **_responses((400, 401, 413, 415, 500, 503), GENERAL_CONTENT)}
VIDEO_RESPONSES = _responses((400, 401, 413, 500, 503))
CLASSIFY_RESPONSES = _responses((400, 401, 413, 500, 503))
TEXT = {"text/plain": {"schema": {"type": "string"}}}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` bytes.

    An oversized body is still read (and dropped) up to ``DRAIN_FACTOR`` times the
    limit before answering: a client that is still sending when the server closes
    sees a connection reset instead of the 413 that explains it.
    """
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise RequestError(f"Content-Length {length!r} is not a number")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            chunks = None
            if size > DRAIN_FACTOR * limit:
                break
        elif chunks is not None:
            chunks.append(chunk)
    if chunks is None:
        total = int(length) if length is not None else size
        raise RequestError(f"body of {total} bytes exceeds the {limit >> 20} MiB limit", "too_large")
    return b"".join(chunks)


async def _maybe_offload(fn, body: bytes, *args):
    if len(body) > OFFLOAD_BYTES:
        return await asyncio.to_thread(fn, body, *args)
    return fn(body, *args)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_frames(body: bytes, limit: int) -> tuple[np.ndarray, int]:
    """PaddleVideo's pipeline request -> ``[T, H, W, 3]`` uint8 frames and its log id."""
    obj = codec.load_json(body)
    if not isinstance(obj, dict):
        raise RequestError('the body must be {"key": [...], "value": [...]}')
    unknown = set(obj) - {"key", "value", "tensors", "name", "method", "logid", "clientip"}
    if unknown:
        raise RequestError(f"unknown field(s) {sorted(unknown)}")
    keys, values = obj.get("key"), obj.get("value")
    if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values) \
            or not all(isinstance(v, str) for v in [*keys, *values]):
        raise RequestError("'key' and 'value' must be lists of strings of the same length")
    pairs = dict(zip(keys, values))
    missing = [k for k in ("frames", "frames_shape") if k not in pairs]
    if missing:
        raise RequestError(f"missing key(s) {missing}; send frames (base64 uint8) and frames_shape")
    try:
        shape = ast.literal_eval(pairs["frames_shape"])  # literal only: never eval() client text
    except (ValueError, SyntaxError) as exc:
        raise RequestError(f"frames_shape {pairs['frames_shape'][:80]!r} is not a shape like '(T, H, W, 3)'") from exc
    if not isinstance(shape, (tuple, list)) or len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape) \
            or shape[3] != 3:
        raise RequestError(f"frames_shape must be (T, H, W, 3) with positive sizes, got {shape!r}")
    if math.prod(shape) > limit:
        raise RequestError(f"frames_shape {tuple(shape)} exceeds the body limit", "too_large")
    try:
        raw = base64.b64decode(pairs["frames"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"frames is not valid base64: {exc}") from exc
    if len(raw) != math.prod(shape):
        raise RequestError(f"frames holds {len(raw)} bytes but frames_shape {tuple(shape)} needs {math.prod(shape)}")
    logid = obj.get("logid", 0)
    return np.frombuffer(raw, np.uint8).reshape(shape), int(logid) if str(logid).isdigit() else 0


def pipeline_answer(err_no: int, err_msg: str, key=(), value=(), status: int = 200) -> JSONResponse:
    return JSONResponse({"err_no": err_no, "err_msg": err_msg, "key": list(key), "value": list(value),
                         "tensors": []}, status_code=status)


def make_http_app(service: ModelService, token: Optional[str] = None) -> FastAPI:
    name = service.bundle.server_dir.name.removesuffix("_serving_server")
    app = FastAPI(title="vslim serving", version="1",
                  description=f"Paddle Serving-compatible HTTP API for model `{name}` (gRPC on the same port).")

    if token:
        @app.middleware("http")
        async def require_token(request: Request, call_next):
            if request.url.path in OPEN_HTTP_PATHS or authorized(request.headers.get("authorization"), token):
                return await call_next(request)
            service.metrics.errors.labels("http", "unauthenticated").inc()
            return JSONResponse({"error": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})

    async def general(request: Request, endpoint: str) -> Response:
        start = time.perf_counter()
        media = _media_type(request)
        as_proto = media in PROTO_TYPES
        try:
            if media and not as_proto and media != "application/json":
                raise RequestError(f"Content-Type {media!r} is not supported; use application/json or "
                                   "application/proto", "unsupported")
            body = codec.decode_body(await read_body(request, service.max_body),
                                     request.headers.get("content-encoding"), service.max_body)
            if not media:
                as_proto = not body.lstrip()[:1] == b"{"
            wire = await _maybe_offload(codec.parse_proto if as_proto else codec.parse_json, body)
            resp = await service.infer(wire)
            status = 200
        except RequestError as exc:
            service.record("http", endpoint, start, exc)
            resp, status = codec.error_response(ERR_NO[exc.kind], str(exc)), HTTP_STATUS[exc.kind]
        else:
            service.record("http", endpoint, start)
        if as_proto:
            return Response(resp.SerializeToString(), status_code=status, media_type="application/proto")
        return Response(codec.response_json(resp), status_code=status, media_type="application/json")

    @app.post("/GeneralModelService/inference", openapi_extra=GENERAL_BODY, responses=GENERAL_RESPONSES,
              response_class=Response, summary="Paddle Serving general-model inference (JSON or binary proto)")
    async def inference(request: Request) -> Response:
        return await general(request, "inference")

    @app.post("/GeneralModelService/debug", openapi_extra=GENERAL_BODY, responses=GENERAL_RESPONSES,
              response_class=Response, summary="Same as inference")
    async def debug(request: Request) -> Response:
        return await general(request, "debug")

    @app.post("/video/prediction", openapi_extra=VIDEO_BODY, responses=VIDEO_RESPONSES,
              summary="PaddleVideo pipeline endpoint: base64 uint8 frames -> label and probability")
    async def video_prediction(request: Request) -> JSONResponse:
        start = time.perf_counter()
        try:
            body = codec.decode_body(await read_body(request, service.max_body),
                                     request.headers.get("content-encoding"), service.max_body)
            frames, _ = await asyncio.to_thread(parse_frames, body, service.max_body)
            clip = await asyncio.to_thread(_clip_from_frames, service, frames)
            top = await service.classify_clip(clip, 1)
        except RequestError as exc:
            service.record("http", "video", start, exc)
            return pipeline_answer(ERR_NO[exc.kind], str(exc), status=HTTP_STATUS[exc.kind])
        service.record("http", "video", start)
        return pipeline_answer(0, "", ["label", "prob"], [str(top.labels), str(top.scores)])

    @app.post("/video/classify", openapi_extra=FILE_BODY, responses=CLASSIFY_RESPONSES,
              summary="Classify a posted video file (mp4, avi, ...): top-k classes")
    async def classify(request: Request, top_k: int = Query(5, ge=1, le=1000)) -> JSONResponse:
        start = time.perf_counter()
        try:
            body = await read_body(request, service.max_body)
            if not body:
                raise RequestError("empty body: post the video file's bytes")
            clip = await asyncio.to_thread(_clip_from_video_bytes, service, body)
            top = await service.classify_clip(clip, top_k)
        except RequestError as exc:
            service.record("http", "classify", start, exc)
            return JSONResponse({"error": str(exc)}, status_code=HTTP_STATUS[exc.kind])
        service.record("http", "classify", start)
        return JSONResponse({"model": name, "precision": service.bundle.info.precision, "top_k": [
            {"class_id": i, "label": l, "score": s} for i, l, s in zip(top.ids, top.labels, top.scores)]})

    @app.get("/health", summary="200 once the model is loaded and taking requests, else 503",
             responses=_responses((503,)))
    async def health() -> JSONResponse:
        status = "ready" if service.ready else ("draining" if service.draining else "loading")
        return JSONResponse({"status": status, "model": name}, status_code=200 if service.ready else 503)

    @app.get("/health/live", summary="200 while the process runs")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"description": "Prometheus text exposition format", "content": TEXT},
                        401: _responses((401,))[401]})
    async def metrics() -> Response:
        if service.engine is not None:
            service.metrics.queue_depth.set(service.engine.queue_depth)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.get("/model", summary="What is served: inputs, outputs, precision, preprocessing, labels",
             responses=_responses((401,)))
    async def model() -> JSONResponse:
        sig, meta = service.signature, service.bundle.meta
        return JSONResponse({
            "name": name, "precision": service.bundle.info.precision,
            "inputs": [{"name": s.name, "alias": s.alias, "dtype": s.dtype.name, "shape": [-1, *s.shape]}
                       for s in sig.feeds],
            "outputs": [{"name": s.name, "alias": s.alias, "dtype": s.dtype.name, "shape": [-1, *s.shape]}
                        for s in sig.fetches],
            "preprocess": {k: getattr(meta.preprocess, k) for k in ("num_seg", "seg_len", "short_size",
                                                                    "target_size", "fixed_ratio", "mean", "std")},
            "labels": meta.labels, "verified_manifest": service.bundle.manifest is not None})

    return app


def _clip_from_frames(service: ModelService, frames: np.ndarray) -> np.ndarray:
    try:
        return service.pipeline.from_frames(frames)
    except DataError as exc:
        raise RequestError(str(exc)) from exc


def _clip_from_video_bytes(service: ModelService, body: bytes) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".video") as tmp:
        Path(tmp.name).write_bytes(body)
        try:
            return service.pipeline.from_video(tmp.name)
        except DataError as exc:
            raise RequestError(f"the posted video cannot be decoded: {exc}".replace(tmp.name, "body")) from exc
