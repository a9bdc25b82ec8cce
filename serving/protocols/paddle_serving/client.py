"""Paddle Serving's clients: its gRPC service and HTTP endpoint (JSON or protobuf body), and PaddleVideo's
pipeline endpoint (``/video/prediction``) with vslim's ``/video/classify`` beside it.

``GrpcClient``, ``HttpClient(mode="json")`` and ``HttpClient(mode="proto")`` offer ``predict(feed={name:
ndarray}, fetch=[...]) -> {name: ndarray}``, reading feed/fetch names from a bundle's ``NAME_serving_client``
folder. Refusals are :class:`ClientError` with the kind read back from this protocol's tables.
"""

from __future__ import annotations

import ast
import base64
import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from vslim.model_meta import ModelMeta
from vslim.topk import TopK, sampling_of

from ...client_base import (
    DEFAULT_TIMEOUT,
    Client,
    ClientConfig,
    fetch_names,
    grpc_channel,
    grpc_unreachable,
    http_session,
    http_unreachable,
    kind_of,
    named_arrays,
    sampling_record,
)
from ...errors import INTERNAL, ClientError, ServingError
from . import codec, fastwire
from .errors import ERR_NO, GRPC_STATUS, HTTP_STATUS
from .types import CODES, code_of, service_pb2

INFERENCE_METHOD = "/baidu.paddle_serving.predictor.general_model.GeneralModelService/inference"


def _http_error(message: str, status: int) -> ClientError:
    return ClientError(message, kind_of(status, HTTP_STATUS) or INTERNAL, status)


def encode_request(
    feed: dict[str, np.ndarray], fetch: Sequence[str] | None, config: ClientConfig | None, log_id: int = 0
) -> bytes:
    """The serialized ``Request`` (float payloads written in one copy, see fastwire)."""
    return fastwire.encode_request(named_arrays(feed, config), fetch_names(fetch, config), log_id)


def build_json(
    feed: dict[str, np.ndarray], fetch: Sequence[str] | None, config: ClientConfig | None, log_id: int = 0
) -> bytes:
    """The same request in proto3 JSON with the .proto field names (``float_data``, ``elem_type``)."""
    tensors = []
    for name, alias, array in named_arrays(feed, config):
        code = code_of(array.dtype)
        field = CODES[code][1]
        flat = np.ascontiguousarray(array).reshape(-1)
        data = base64.b64encode(flat.tobytes()).decode() if field == "tensor_content" else flat
        tensors.append({field: data, "elem_type": code, "name": name, "alias_name": alias, "shape": list(array.shape)})
    return orjson.dumps(
        {"tensor": tensors, "fetch_var_names": fetch_names(fetch, config), "log_id": log_id},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


class _PaddleClient(Client):
    """Paddle Serving's ``Request``/``Response`` messages over some transport."""

    def predict(
        self, feed: dict[str, np.ndarray], fetch: Sequence[str] | None = None, log_id: int = 0
    ) -> dict[str, np.ndarray]:
        resp = self._call(feed, fetch, log_id)
        if resp.err_no != 0:
            raise ClientError(
                f"server error {resp.err_no}: {resp.err_msg}", kind_of(resp.err_no, ERR_NO) or INTERNAL, resp.err_no
            )
        return codec.outputs_of(resp)

    def _call(self, feed, fetch, log_id):
        raise NotImplementedError


class GrpcClient(_PaddleClient):
    protocol = "grpc"

    def __init__(
        self,
        address: str,
        config=None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls_ca: str | None = None,
    ):
        super().__init__(address, config, timeout, token, tls_ca)
        import grpc

        self._grpc = grpc
        self._channel, self._metadata = grpc_channel(self.address, token, tls_ca)
        # Requests go out as bytes already serialized (fastwire); responses parse as usual.
        self._inference = self._channel.unary_unary(
            INFERENCE_METHOD, request_serializer=None, response_deserializer=service_pb2.Response.FromString
        )

    def _call(self, feed, fetch, log_id):
        body = encode_request(feed, fetch, self.config, log_id)
        try:
            return self._inference(body, timeout=self.timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            if (gone := grpc_unreachable(exc, self.address)) is not None:
                raise gone from None
            code = exc.code().name if exc.code() else "UNKNOWN"
            meta = dict(exc.trailing_metadata() or ())
            err_no = f" (err_no {meta['err_no']})" if "err_no" in meta else ""
            raise ClientError(
                f"gRPC {code}{err_no} from {self.address}: {exc.details()}",
                kind_of(code, GRPC_STATUS) or INTERNAL,
                code,
            ) from None

    def close(self) -> None:
        self._channel.close()


class HttpClient(_PaddleClient):
    """Paddle Serving's HTTP protocol; ``mode`` ``json`` or ``proto`` (binary), optional gzip of the body."""

    def __init__(
        self,
        address: str,
        config=None,
        timeout: float = DEFAULT_TIMEOUT,
        mode: str = "json",
        gzip_body: bool = False,
        token: str | None = None,
        tls_ca: str | None = None,
    ):
        super().__init__(address, config, timeout, token, tls_ca)
        if mode not in ("json", "proto"):
            raise ServingError(f"HTTP mode must be json or proto, got {mode!r}")
        import requests

        self.mode, self.gzip_body = mode, gzip_body
        self.protocol = f"http-{mode}"
        self._session = http_session(requests, token, tls_ca)
        self._requests = requests
        self.url = f"{'https' if tls_ca else 'http'}://{self.address}/GeneralModelService/inference"

    def _call(self, feed, fetch, log_id):
        if self.mode == "proto":
            body = encode_request(feed, fetch, self.config, log_id)
        else:
            body = build_json(feed, fetch, self.config, log_id)
        headers = {"Content-Type": "application/proto" if self.mode == "proto" else "application/json"}
        if self.gzip_body:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            r = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except self._requests.RequestException as exc:
            raise (
                http_unreachable(exc, self.address, self.timeout)
                or ServingError(f"HTTP request to {self.url} failed: {exc}")
            ) from None
        resp = service_pb2.Response()
        try:
            if r.headers.get("Content-Type") == "application/proto":
                resp.ParseFromString(r.content)
            else:
                from google.protobuf import json_format

                json_format.Parse(r.content, resp, ignore_unknown_fields=True)
        except Exception:
            raise _http_error(f"HTTP {r.status_code} from {self.url}: {r.text[:300]}", r.status_code) from None
        if r.status_code != 200:
            raise _http_error(
                f"HTTP {r.status_code} from {self.url}: err_no {resp.err_no}: {resp.err_msg}", r.status_code
            )
        return resp

    def close(self) -> None:
        self._session.close()


class VideoEndpointClient(Client):
    """PaddleVideo's pipeline endpoint (``/video/prediction``) and vslim's ``/video/classify``: the video (its
    frames, or the file) goes to the server, which preprocesses it, so there is no ``predict`` of tensors.
    ``config`` (the bundle's client folder) is only needed to turn the pipeline's labels back into class ids."""

    protocol = "video"

    def __init__(
        self,
        address: str,
        config: ClientConfig | str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls_ca: str | None = None,
    ):
        super().__init__(address, config, timeout, token, tls_ca)
        import requests

        self.base = f"{'https' if tls_ca else 'http'}://{self.address}"
        self._requests = requests
        self._session = http_session(requests, token, tls_ca)

    def _post(self, path: str, **kw) -> tuple[int, dict]:
        try:
            r = self._session.post(f"{self.base}{path}", timeout=self.timeout, **kw)
        except self._requests.RequestException as exc:
            raise (
                http_unreachable(exc, self.address, self.timeout)
                or ServingError(f"HTTP request to {self.base}{path} failed: {exc}")
            ) from None
        try:
            answer = r.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ServingError(
                f"{path} at {self.address} answered HTTP {r.status_code} without a JSON object: "
                f"{r.text[:300]!r}; is this a vslim (or PaddleVideo) server?"
            )
        return r.status_code, answer

    def predict_frames(self, frames: np.ndarray, top_k: int | None = None) -> dict:
        """Post ``[T, H, W, 3]`` uint8 RGB frames; returns the pipeline answer (err_no, key, value).

        PaddleVideo's endpoint answers one class; ``top_k`` (a query parameter, which servers that do not know it
        ignore) asks vslim for more.
        """
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        body = {
            "key": ["frames", "frames_shape"],
            "value": [base64.b64encode(frames.tobytes()).decode(), str(frames.shape)],
        }
        status, answer = self._post("/video/prediction", json=body, params={"top_k": top_k} if top_k else None)
        if status != 200 or answer.get("err_no", 0) != 0:
            raise _http_error(
                f"video endpoint answered {status}: err_no {answer.get('err_no')}: {answer.get('err_msg')}", status
            )
        return answer

    def classify_frames(self, frames: np.ndarray, top_k: int = 1, meta: ModelMeta | None = None) -> TopK:
        """``predict_frames`` as a TopK; the answer names classes only, so ids come from ``meta``'s labels (by
        default the client config's)."""
        meta = meta or (self.config.meta if self.config else None)
        answer = self.predict_frames(frames, top_k)
        values = dict(zip(answer.get("key") or [], answer.get("value") or []))
        try:  # PaddleVideo's stringified lists, e.g. "['archery']" and "[0.93]"
            labels = [str(x) for x in ast.literal_eval(values["label"])]
            scores = [float(x) for x in ast.literal_eval(values["prob"])]
        except (KeyError, ValueError, SyntaxError, TypeError):
            raise ServingError(
                f"/video/prediction answered no readable label and prob: keys {answer.get('key')}, "
                f"values {str(answer.get('value'))[:200]}"
            ) from None
        sampling = sampling_record(answer.get("sampling") or values.get("sampling"))
        return TopK([_class_id(label, meta) for label in labels], scores, labels, sampling=sampling_of(sampling))

    def classify_file(self, video: Path | str, top_k: int = 1) -> TopK:
        """Post a video file as it is; the server decodes and preprocesses it."""
        status, answer = self._post(
            "/video/classify",
            params={"top_k": top_k},
            data=Path(video).read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        if status != 200:
            raise _http_error(f"/video/classify answered {status}: {answer.get('error')}", status)
        top = answer["top_k"]
        return TopK(
            [t["class_id"] for t in top],
            [t["score"] for t in top],
            [t["label"] for t in top],
            sampling=sampling_of(sampling_record(answer.get("sampling"))),
        )

    def close(self) -> None:
        self._session.close()


def _class_id(label: str, meta: ModelMeta | None) -> int:
    if meta is not None and label in meta.labels:
        return meta.labels.index(label)
    if label.isdigit():  # a class without a name is named by its id (ModelMeta.label_name)
        return int(label)
    raise ServingError(
        f"the server answered label {label!r}, which the bundle's labels do not hold; is --bundle "
        "the bundle of the model being served?"
    )
