"""Python clients for vslim (and Paddle Serving) servers, one call shape for every protocol.

``GrpcClient``, ``HttpClient(mode="json")`` and ``HttpClient(mode="proto")`` all
offer ``predict(feed={name: ndarray}, fetch=[...]) -> {name: ndarray}``, reading
feed/fetch names from a bundle's ``NAME_serving_client`` folder. ``classify_video``
preprocesses a video on the client (with the preprocessing the bundle records);
``VideoEndpointClient`` posts raw frames to the PaddleVideo pipeline endpoint.
"""
from __future__ import annotations

import base64
import functools
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import orjson

from vslim.data.pipeline import ClipPipeline
from .errors import ServingError
from vslim.accuracy import softmax, topk
from vslim.model_meta import ModelMeta, load_meta

from .bundle import CLIENT_CONF, CLIENT_SUFFIX, read_config
from .protocols.paddle_serving import codec, fastwire
from .protocols.paddle_serving.types import CODES, code_of, fill_tensor, service_pb2, signature_of
from .signature import Signature

DEFAULT_TIMEOUT = 60.0
MAX_MESSAGE = 512 << 20
INFERENCE_METHOD = "/baidu.paddle_serving.predictor.general_model.GeneralModelService/inference"


@dataclass
class ClientConfig:
    """What a client needs to know of a model: feed/fetch names, types, shapes; labels and preprocessing."""

    signature: Signature
    meta: Optional[ModelMeta] = None
    name: str = ""  # the model's name on the server (the bundle's name)

    @classmethod
    def load(cls, path: Path | str) -> "ClientConfig":
        """From a ``NAME_serving_client`` folder or a ``serving_client_conf.prototxt`` file."""
        path = Path(path)
        folder, name = (path.parent, path.name) if path.is_file() else (path, CLIENT_CONF)
        if not folder.is_dir():
            raise ServingError(f"client config {path} does not exist; point at the bundle's *_serving_client folder")
        conf = read_config(folder, name)
        return cls(signature_of(conf), load_meta(folder), folder.name.removesuffix(CLIENT_SUFFIX))


def _named_arrays(feed: dict[str, np.ndarray], config: Optional[ClientConfig]) -> list[tuple[str, str, np.ndarray]]:
    """``(var name, alias, array)`` per feed, cast to the dtype the model declares."""
    out = []
    for key, value in feed.items():
        array = np.asarray(value)
        spec = config.signature.feed(key) if config else None
        if config and spec is None:
            raise ServingError(f"unknown feed {key!r}; the model takes {[s.alias for s in config.signature.feeds]}")
        if spec is not None and array.dtype != spec.dtype:
            array = array.astype(spec.dtype)
        out.append((spec.name if spec else key, spec.alias if spec else key, array))
    return out


def _fetch_names(fetch: Optional[Sequence[str]], config: Optional[ClientConfig]) -> list[str]:
    if fetch:
        return list(fetch)
    return [s.alias for s in config.signature.fetches] if config else []


def build_request(feed: dict[str, np.ndarray], fetch: Optional[Sequence[str]], config: Optional[ClientConfig],
                  log_id: int = 0):
    """The binary ``Request`` message."""
    req = service_pb2.Request(log_id=log_id, fetch_var_names=_fetch_names(fetch, config))
    for name, alias, array in _named_arrays(feed, config):
        fill_tensor(req.tensor.add(name=name, alias_name=alias), array)
    return req


def encode_request(feed: dict[str, np.ndarray], fetch: Optional[Sequence[str]], config: Optional[ClientConfig],
                   log_id: int = 0) -> bytes:
    """The serialized ``Request`` (float payloads written in one copy, see fastwire)."""
    return fastwire.encode_request(_named_arrays(feed, config), _fetch_names(fetch, config), log_id)


def build_json(feed: dict[str, np.ndarray], fetch: Optional[Sequence[str]], config: Optional[ClientConfig],
               log_id: int = 0) -> bytes:
    """The same request in proto3 JSON with the .proto field names (``float_data``, ``elem_type``)."""
    tensors = []
    for name, alias, array in _named_arrays(feed, config):
        code = code_of(array.dtype)
        field = CODES[code][1]
        flat = np.ascontiguousarray(array).reshape(-1)
        data = base64.b64encode(flat.tobytes()).decode() if field == "tensor_content" else flat
        tensors.append({field: data, "elem_type": code, "name": name, "alias_name": alias,
                        "shape": list(array.shape)})
    return orjson.dumps({"tensor": tensors, "fetch_var_names": _fetch_names(fetch, config), "log_id": log_id},
                        option=orjson.OPT_SERIALIZE_NUMPY)


class Client:
    """What every protocol's client offers: ``predict(feed, fetch) -> {name: ndarray}``, ``close()``, ``with``.

    ``token``: the server's bearer token; ``tls_ca``: PEM certificate(s) to trust, which switches to TLS.
    """

    protocol = "?"

    def __init__(self, address: str, config: Optional[ClientConfig | str | Path] = None,
                 timeout: float = DEFAULT_TIMEOUT, token: Optional[str] = None, tls_ca: Optional[str] = None):
        self.address = address.removeprefix("http://").removeprefix("https://")
        if isinstance(config, (str, Path)):
            config = ClientConfig.load(config)
        self.config = config
        self.timeout = timeout
        self.token = token
        self.tls_ca = tls_ca

    def predict(self, feed: dict[str, np.ndarray], fetch: Optional[Sequence[str]] = None,
                log_id: int = 0) -> dict[str, np.ndarray]:
        """Run one request; returns ``{fetch alias: array}``; raises ServingError on any failure."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _PaddleClient(Client):
    """Paddle Serving's ``Request``/``Response`` messages over some transport."""

    def predict(self, feed: dict[str, np.ndarray], fetch: Optional[Sequence[str]] = None,
                log_id: int = 0) -> dict[str, np.ndarray]:
        resp = self._call(feed, fetch, log_id)
        if resp.err_no != 0:
            raise ServingError(f"server error {resp.err_no}: {resp.err_msg}")
        return codec.outputs_of(resp)

    def _call(self, feed, fetch, log_id):
        raise NotImplementedError


class GrpcClient(_PaddleClient):
    protocol = "grpc"

    def __init__(self, address: str, config=None, timeout: float = DEFAULT_TIMEOUT, token: Optional[str] = None,
                 tls_ca: Optional[str] = None):
        super().__init__(address, config, timeout, token, tls_ca)
        import grpc

        self._grpc = grpc
        self._channel, self._metadata = grpc_channel(self.address, token, tls_ca)
        # Requests go out as bytes already serialized (fastwire); responses parse as usual.
        self._inference = self._channel.unary_unary(INFERENCE_METHOD, request_serializer=None,
                                                    response_deserializer=service_pb2.Response.FromString)

    def _call(self, feed, fetch, log_id):
        body = encode_request(feed, fetch, self.config, log_id)
        try:
            return self._inference(body, timeout=self.timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            code = exc.code().name if exc.code() else "UNKNOWN"
            meta = dict(exc.trailing_metadata() or ())
            err_no = f" (err_no {meta['err_no']})" if "err_no" in meta else ""
            raise ServingError(f"gRPC {code}{err_no} from {self.address}: {exc.details()}") from None

    def close(self) -> None:
        self._channel.close()


class HttpClient(_PaddleClient):
    """Paddle Serving's HTTP protocol; ``mode`` ``json`` or ``proto`` (binary), optional gzip of the body."""

    def __init__(self, address: str, config=None, timeout: float = DEFAULT_TIMEOUT, mode: str = "json",
                 gzip_body: bool = False, token: Optional[str] = None, tls_ca: Optional[str] = None):
        super().__init__(address, config, timeout, token, tls_ca)
        if mode not in ("json", "proto"):
            raise ServingError(f"HTTP mode must be json or proto, got {mode!r}")
        import requests

        self.mode, self.gzip_body = mode, gzip_body
        self.protocol = f"http-{mode}"
        self._session = _session(requests, token, tls_ca)
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
            raise ServingError(f"HTTP request to {self.url} failed: {exc}") from None
        resp = service_pb2.Response()
        try:
            if r.headers.get("Content-Type") == "application/proto":
                resp.ParseFromString(r.content)
            else:
                from google.protobuf import json_format

                json_format.Parse(r.content, resp, ignore_unknown_fields=True)
        except Exception:
            raise ServingError(f"HTTP {r.status_code} from {self.url}: {r.text[:300]}") from None
        if r.status_code != 200:
            raise ServingError(f"HTTP {r.status_code} from {self.url}: err_no {resp.err_no}: {resp.err_msg}")
        return resp

    def close(self) -> None:
        self._session.close()


def grpc_channel(address: str, token: Optional[str], tls_ca: Optional[str]):
    """A channel (TLS when ``tls_ca`` is given) and the call metadata that carries the token."""
    import grpc

    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    if tls_ca:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        channel = grpc.secure_channel(address, creds, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    return channel, ((("authorization", f"Bearer {token}"),) if token else None)


def _session(requests, token: Optional[str], tls_ca: Optional[str]):
    """A session whose trust is the ``tls_ca`` asked for.

    ``Session.verify`` alone loses to ``REQUESTS_CA_BUNDLE`` (requests merges the environment into every
    request), so a self-signed server certificate would be checked against the system store instead.
    """
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    if tls_ca:
        session.verify = tls_ca
        session.request = functools.partial(session.request, verify=tls_ca)
    return session


PROTOCOLS = ("grpc", "http", "http-proto", "v2-http", "v2-grpc")


def make_client(protocol: str, address: str, config=None, timeout: float = DEFAULT_TIMEOUT,
                token: Optional[str] = None, tls_ca: Optional[str] = None) -> Client:
    """A client for ``protocol``: ``grpc``, ``http`` (JSON), ``http-proto`` (Paddle Serving), ``v2-http``,
    ``v2-grpc`` (Open Inference Protocol, binary tensors)."""
    if protocol.startswith("v2-"):
        from .protocols.v2.client import V2GrpcClient, V2HttpClient

        if protocol in ("v2-http", "v2-grpc"):
            cls = V2HttpClient if protocol == "v2-http" else V2GrpcClient
            return cls(address, config, timeout, token=token, tls_ca=tls_ca)
    if protocol == "grpc":
        return GrpcClient(address, config, timeout, token=token, tls_ca=tls_ca)
    if protocol in ("http", "http-json"):
        return HttpClient(address, config, timeout, mode="json", token=token, tls_ca=tls_ca)
    if protocol == "http-proto":
        return HttpClient(address, config, timeout, mode="proto", token=token, tls_ca=tls_ca)
    raise ServingError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


@dataclass
class TopK:
    classes: list[int]
    scores: list[float]
    labels: list[str]


def _top(logits: np.ndarray, meta: Optional[ModelMeta], k: int) -> TopK:
    probs = softmax(logits) if (meta is None or meta.output_kind == "logits") else logits
    ids, scores = topk(probs, k)
    name = meta.label_name if meta else str
    return TopK([int(i) for i in ids], [float(s) for s in scores], [name(int(i)) for i in ids])


def classify_video(client: Client, video: Path | str, top_k: int = 5) -> TopK:
    """Sample and preprocess ``video`` here, send the clip, return the top-k classes."""
    if client.config is None or client.config.meta is None:
        raise ServingError("client-side preprocessing needs the bundle's client folder (it holds vslim.json)")
    meta = client.config.meta
    clip = ClipPipeline(meta.preprocess).from_video(video)
    feed = client.config.signature.feeds[0]
    out = client.predict({feed.alias: clip[None]}, [client.config.signature.fetches[0].alias])
    return _top(next(iter(out.values()))[0], meta, top_k)


class VideoEndpointClient:
    """PaddleVideo's pipeline endpoint (``/video/prediction``) and vslim's ``/video/classify``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT, token: Optional[str] = None,
                 tls_ca: Optional[str] = None):
        import requests

        self.base = f"{'https' if tls_ca else 'http'}://{address.removeprefix('http://').removeprefix('https://')}"
        self.timeout = timeout
        self._session = _session(requests, token, tls_ca)

    def predict_frames(self, frames: np.ndarray) -> dict:
        """Post ``[T, H, W, 3]`` uint8 RGB frames; returns the pipeline answer (err_no, key, value)."""
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        body = {"key": ["frames", "frames_shape"],
                "value": [base64.b64encode(frames.tobytes()).decode(), str(frames.shape)]}
        r = self._session.post(f"{self.base}/video/prediction", json=body, timeout=self.timeout)
        answer = r.json()
        if r.status_code != 200 or answer.get("err_no", 0) != 0:
            raise ServingError(f"video endpoint answered {r.status_code}: err_no {answer.get('err_no')}: "
                               f"{answer.get('err_msg')}")
        return answer

    def classify_file(self, video: Path | str, top_k: int = 5) -> TopK:
        """Post a video file as it is; the server decodes and preprocesses it."""
        r = self._session.post(f"{self.base}/video/classify", params={"top_k": top_k},
                               data=Path(video).read_bytes(), timeout=self.timeout,
                               headers={"Content-Type": "application/octet-stream"})
        answer = r.json()
        if r.status_code != 200:
            raise ServingError(f"/video/classify answered {r.status_code}: {answer.get('error')}")
        top = answer["top_k"]
        return TopK([t["class_id"] for t in top], [t["score"] for t in top], [t["label"] for t in top])

    def close(self) -> None:
        self._session.close()

