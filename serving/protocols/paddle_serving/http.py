"""HTTP: Paddle Serving's general-model endpoint and PaddleVideo's video endpoints.

* ``POST /GeneralModelService/inference`` (and ``/debug``): the ``Request``
  message as proto3 JSON (``application/json``) or binary (``application/proto``),
  answered in kind; ``Content-Encoding: gzip`` accepted.
* ``POST /video/prediction``: PaddleVideo's pipeline client body
  ``{"key": ["frames", "frames_shape"], "value": [base64 uint8 THWC, "(T, H, W, 3)"]}``;
  ``?top_k=K`` (vslim's, default 1) lists K labels and probabilities.
* ``POST /video/classify?top_k=5``: a video file as the body; top-k classes back.

The protocol names no model: every route reaches the server's default model
(``--default-model``, or the only one served).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ...errors import UNSUPPORTED, RequestError
from ...httpbody import parse_off_loop, read_body, read_decoded
from ...openapi import BINARY, JSON_ANY, responses
from ...service import VIDEO_MODEL, Call
from ...video import clip_from_frames, clip_from_video_bytes
from . import codec
from .errors import ERR_NO, HTTP_STATUS

if TYPE_CHECKING:
    from ...repository import ModelRepository

PROTOCOL = "http"  # the metrics label
PROTO_TYPES = ("application/proto", "application/x-protobuf", "application/octet-stream")
GENERAL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "Request as proto3 JSON, e.g. "
                    '{"tensor":[{"float_data":[...],"elem_type":1,"name":"data_batch_0",'
                    '"alias_name":"data_batch_0","shape":[1,8,3,64,64]}],'
                    '"fetch_var_names":["outputs"],"log_id":0}',
                }
            },
            "application/proto": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "serialized baidu.paddle_serving...general_model.Request",
                }
            },
        },
    }
}
VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["key", "value"],
                    "properties": {
                        "key": {"type": "array", "items": {"type": "string"}, "example": ["frames", "frames_shape"]},
                        "value": {"type": "array", "items": {"type": "string"}},
                    },
                }
            }
        },
    }
}
FILE_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": BINARY, "video/mp4": BINARY}}}
GENERAL_CONTENT = {**JSON_ANY, "application/proto": BINARY}
GENERAL_RESPONSES = {
    200: {"description": "Response, in the request's encoding", "content": GENERAL_CONTENT},
    **responses((400, 401, 413, 415, 500, 503), GENERAL_CONTENT),
}
VIDEO_RESPONSES = responses((400, 401, 413, 500, 503))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def pipeline_answer(err_no: int, err_msg: str, key=(), value=(), status: int = 200, sampling=None) -> JSONResponse:
    doc = {"err_no": err_no, "err_msg": err_msg, "key": list(key), "value": list(value), "tensors": []}
    if sampling is not None:  # the clip repeated frames of a too-short video: say so (vslim's addition)
        doc["sampling"] = sampling.to_dict()
    return JSONResponse(doc, status_code=status)


def router(repo: ModelRepository) -> APIRouter:
    """Every route answers with the default model (Paddle Serving's requests name none)."""
    api = APIRouter(tags=["Paddle Serving"])

    async def general(request: Request, endpoint: str) -> Response:
        media = _media_type(request)
        as_proto = media in PROTO_TYPES
        with Call(repo, PROTOCOL, endpoint, f"/GeneralModelService/{endpoint}") as call:
            if media and not as_proto and media != "application/json":
                raise RequestError(
                    f"Content-Type {media!r} is not supported; use application/json or application/proto", UNSUPPORTED
                )
            service = repo.default_service()
            with call.admit(service):
                body = await read_decoded(request, service.max_body)
                if not media:
                    as_proto = not body.lstrip()[:1] == b"{"
                wire = await parse_off_loop(codec.parse_proto if as_proto else codec.parse_json, body)
                feeds, fetch = codec.validate(wire, service.signature, service.limits)
                resp = codec.response(await service.run(feeds, fetch, PROTOCOL), service.signature, wire.log_id)
        status = 200
        if call.refusal is not None:
            exc = call.refusal
            resp, status = codec.error_response(ERR_NO[exc.kind], str(exc)), HTTP_STATUS[exc.kind]
        if as_proto:
            return Response(resp.SerializeToString(), status_code=status, media_type="application/proto")
        return Response(codec.response_json(resp), status_code=status, media_type="application/json")

    @api.post(
        "/GeneralModelService/inference",
        openapi_extra=GENERAL_BODY,
        responses=GENERAL_RESPONSES,
        response_class=Response,
        summary="Paddle Serving general-model inference (JSON or binary proto)",
    )
    async def inference(request: Request) -> Response:
        return await general(request, "inference")

    @api.post(
        "/GeneralModelService/debug",
        openapi_extra=GENERAL_BODY,
        responses=GENERAL_RESPONSES,
        response_class=Response,
        summary="Same as inference",
    )
    async def debug(request: Request) -> Response:
        return await general(request, "debug")

    async def video(request: Request, endpoint: str, top_k: int, decode):
        """A video request of the default model: ``decode(service)`` -> (clip, sampling); the top classes."""
        top = sampling = None
        with Call(repo, PROTOCOL, endpoint, f"/video/{endpoint}") as call:
            service = repo.default_service()
            with call.admit(service, VIDEO_MODEL):
                clip, sampling = await decode(service)
                decoded = time.perf_counter()
                (top,) = await service.classify([clip], top_k, PROTOCOL)
                service.video_executed(1, (decoded - call.start, time.perf_counter() - decoded, 0.0))
        return call.service, top, sampling, call.refusal

    @api.post(
        "/video/prediction",
        openapi_extra=VIDEO_BODY,
        responses=VIDEO_RESPONSES,
        summary="PaddleVideo pipeline endpoint: base64 uint8 frames -> label and probability",
    )
    async def video_prediction(request: Request, top_k: int = Query(1, ge=1, le=1000)) -> JSONResponse:
        async def decode(service):
            body = await read_decoded(request, service.max_body)
            frames, _ = await asyncio.to_thread(codec.parse_frames, body, service.max_body)
            return await asyncio.to_thread(clip_from_frames, service.pipeline, frames)

        _, top, sampling, exc = await video(request, "video", top_k, decode)  # top_k 1: PaddleVideo's answer
        if exc is not None:
            return pipeline_answer(ERR_NO[exc.kind], str(exc), status=HTTP_STATUS[exc.kind])
        return pipeline_answer(0, "", ["label", "prob"], [str(top.labels), str(top.scores)], sampling=sampling)

    @api.post(
        "/video/classify",
        openapi_extra=FILE_BODY,
        responses=VIDEO_RESPONSES,
        summary="Classify a posted video file (mp4, avi, ...): top-k classes",
    )
    async def classify(request: Request, top_k: int = Query(5, ge=1, le=1000)) -> JSONResponse:
        async def decode(service):
            body = await read_body(request, service.max_body)
            if not body:
                raise RequestError("empty body: post the video file's bytes")
            return await asyncio.to_thread(clip_from_video_bytes, service.pipeline, body)

        service, top, sampling, exc = await video(request, "classify", top_k, decode)
        if exc is not None:
            return JSONResponse({"error": str(exc)}, status_code=HTTP_STATUS[exc.kind])
        answer = {
            "model": service.name,
            "precision": service.bundle.info.precision,
            "top_k": [
                {"class_id": i, "label": label, "score": s} for i, label, s in zip(top.classes, top.labels, top.scores)
            ],
        }
        if sampling is not None:  # the video was shorter than the clip: frames were repeated
            answer["sampling"] = sampling.to_dict()
        return JSONResponse(answer)

    return api
