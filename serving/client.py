"""Python clients for vslim (and Paddle Serving) servers, one call shape for every protocol.

``GrpcClient``, ``HttpClient(mode="json")`` and ``HttpClient(mode="proto")`` all
offer ``predict(feed={name: ndarray}, fetch=[...]) -> {name: ndarray}``, reading
feed/fetch names from a bundle's ``NAME_serving_client`` folder. ``classify_video``
preprocesses a video on the client (with the preprocessing the bundle records);
``VideoEndpointClient`` posts raw frames to the PaddleVideo pipeline endpoint.

Every client takes ``HOST[:PORT]`` and fills in vslim-serve's port 9393 (gRPC on its
own would take 443), and turns "nothing listens there" into one
:class:`ServerUnreachableError` whatever the protocol.
"""

from __future__ import annotations

import ast
import base64
import functools
import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from vslim.accuracy import softmax, topk
from vslim.data.pipeline import ClipPipeline, as_inputs
from vslim.errors import ConfigError
from vslim.model_meta import ModelMeta, load_meta

from .bundle import CLIENT_CONF, CLIENT_SUFFIX, SERVER_SUFFIX, read_config
from .errors import ServerUnreachableError, ServingError
from .protocols.paddle_serving import codec, fastwire
from .protocols.paddle_serving.types import CODES, code_of, service_pb2, signature_of
from .signature import Signature

DEFAULT_TIMEOUT = 60.0
DEFAULT_PORT = 9393  # vslim-serve's (and Paddle Serving's examples') port
MAX_MESSAGE = 512 << 20
INFERENCE_METHOD = "/baidu.paddle_serving.predictor.general_model.GeneralModelService/inference"


@dataclass
class ClientConfig:
    """What a client needs to know of a model: feed/fetch names, types, shapes; labels and preprocessing."""

    signature: Signature
    meta: ModelMeta | None = None
    name: str = ""  # the model's name on the server (the bundle's name)

    @classmethod
    def load(cls, path: Path | str) -> ClientConfig:
        """From a bundle folder (``vslim-package --out``), its ``NAME_serving_client`` folder or that folder's
        ``serving_client_conf.prototxt``; the ``NAME_serving_server`` folder leads to its client twin."""
        path = Path(path)
        folder, name = (path.parent, path.name) if path.is_file() else (client_folder(path), CLIENT_CONF)
        conf = read_config(folder, name)
        return cls(signature_of(conf), load_meta(folder), folder.name.removesuffix(CLIENT_SUFFIX))


def client_folder(path: Path) -> Path:
    """The ``*_serving_client`` folder that ``path`` (a bundle, client or server folder) stands for."""
    if not path.is_dir():
        raise ServingError(
            f"bundle {path} does not exist; give the bundle folder (vslim-package --target serving "
            f"--out), its *{CLIENT_SUFFIX} folder or that folder's {CLIENT_CONF}"
        )
    if any((path / n).is_file() for n in (CLIENT_CONF, CLIENT_CONF.replace(".prototxt", ".stream.prototxt"))):
        return path
    if path.name.endswith(SERVER_SUFFIX):
        twin = path.with_name(path.name.removesuffix(SERVER_SUFFIX) + CLIENT_SUFFIX)
        if twin.is_dir():
            return twin
        raise ServingError(
            f"{path} is a bundle's server folder and {twin.name} is not beside it; give the *{CLIENT_SUFFIX} folder"
        )
    inside = sorted(p for p in path.glob(f"*{CLIENT_SUFFIX}") if p.is_dir())
    if len(inside) > 1:
        raise ServingError(
            f"bundle folder {path} holds {len(inside)} client folders "
            f"({', '.join(p.name for p in inside)}); give one of them"
        )
    return inside[0] if inside else path  # read_config then names what is missing


def _named_arrays(feed: dict[str, np.ndarray], config: ClientConfig | None) -> list[tuple[str, str, np.ndarray]]:
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


def _fetch_names(fetch: Sequence[str] | None, config: ClientConfig | None) -> list[str]:
    if fetch:
        return list(fetch)
    return [s.alias for s in config.signature.fetches] if config else []


def encode_request(
    feed: dict[str, np.ndarray], fetch: Sequence[str] | None, config: ClientConfig | None, log_id: int = 0
) -> bytes:
    """The serialized ``Request`` (float payloads written in one copy, see fastwire)."""
    return fastwire.encode_request(_named_arrays(feed, config), _fetch_names(fetch, config), log_id)


def build_json(
    feed: dict[str, np.ndarray], fetch: Sequence[str] | None, config: ClientConfig | None, log_id: int = 0
) -> bytes:
    """The same request in proto3 JSON with the .proto field names (``float_data``, ``elem_type``)."""
    tensors = []
    for name, alias, array in _named_arrays(feed, config):
        code = code_of(array.dtype)
        field = CODES[code][1]
        flat = np.ascontiguousarray(array).reshape(-1)
        data = base64.b64encode(flat.tobytes()).decode() if field == "tensor_content" else flat
        tensors.append({field: data, "elem_type": code, "name": name, "alias_name": alias, "shape": list(array.shape)})
    return orjson.dumps(
        {"tensor": tensors, "fetch_var_names": _fetch_names(fetch, config), "log_id": log_id},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def split_address(address: str) -> tuple[str, int]:
    """``HOST[:PORT]`` -> ``(host, port)``; no port means vslim-serve's 9393 in every protocol.

    Also taken: ``[v6]``, ``[v6]:PORT``, a bare IPv6 address, an ``http://`` / ``https://`` prefix and a trailing
    path (a URL copied from a browser); TLS is chosen by ``tls_ca``, not by the prefix.
    """
    text = address.strip()
    for scheme in ("http://", "https://"):
        text = text.removeprefix(scheme)
    text = text.split("/", 1)[0]
    usage = "give HOST[:PORT], e.g. 127.0.0.1:9393, localhost or [::1]:9393 (port 1-65535, default 9393)"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"address {address!r} is not valid; {usage}")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:  # a bare IPv6 address: nothing to tell its last group from a port
        host, port_text = text, None
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
    if not host:
        raise ConfigError(f"address {address!r} names no host; {usage}")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"address {address!r} has port {port_text!r}; {usage}")
    return host, int(port_text)


def normalize_address(address: str) -> str:
    """``host:port`` (``[v6]:port``) with the port filled in; gRPC's ``unix:`` targets pass as they are."""
    if address.startswith(("unix:", "unix-abstract:")):
        return address
    host, port = split_address(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unreachable(address: str, cause: str) -> ServerUnreachableError:
    return ServerUnreachableError(f"no server at {address} — is vslim-serve running? ({cause})")


def _connect_cause(text: str) -> str | None:
    """A short reason when ``text`` (a gRPC status, a socket error) says the connection itself failed."""
    low = text.lower()
    for needle, cause in (
        ("connection refused", "connection refused"),
        ("errors resolving", "host name not found"),
        ("dns resolution failed", "host name not found"),
        ("name or service not known", "host name not found"),
        ("failed to resolve", "host name not found"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
        ("connection timed out", "connection timed out"),
    ):
        if needle in low:
            return cause
    if "failed to connect to remote host" in low:
        return text.rsplit(": ", 1)[-1].strip().lower() or "connection failed"
    return None


def grpc_unreachable(exc, address: str) -> ServerUnreachableError | None:
    """The ServerUnreachableError of a gRPC failure that never reached a server, else None.

    A server's own UNAVAILABLE (loading, draining) or a TLS mismatch is not one: something did listen.
    """
    import grpc

    if exc.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    cause = _connect_cause(exc.details() or "")
    return unreachable(address, cause) if cause else None


def http_unreachable(exc, address: str, timeout: float) -> ServerUnreachableError | None:
    """The ServerUnreachableError of a ``requests`` failure to connect at all (not one after connecting)."""
    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return unreachable(address, f"no connection within {timeout:g} s")
    if isinstance(exc, requests.exceptions.SSLError) or not isinstance(exc, requests.exceptions.ConnectionError):
        return None
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if not isinstance(reason, urllib3.exceptions.NewConnectionError):
        return None
    if isinstance(reason, getattr(urllib3.exceptions, "NameResolutionError", ())):
        return unreachable(address, "host name not found")
    return unreachable(address, _connect_cause(str(reason)) or "connection failed")


class Client:
    """What every protocol's client offers: ``predict(feed, fetch) -> {name: ndarray}``, ``close()``, ``with``.

    ``token``: the server's bearer token; ``tls_ca``: PEM certificate(s) to trust, which switches to TLS.
    """

    protocol = "?"

    def __init__(
        self,
        address: str,
        config: ClientConfig | str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls_ca: str | None = None,
    ):
        self.address = normalize_address(address)
        if isinstance(config, (str, Path)):
            config = ClientConfig.load(config)
        self.config = config
        self.timeout = timeout
        self.token = token
        self.tls_ca = tls_ca

    def predict(
        self, feed: dict[str, np.ndarray], fetch: Sequence[str] | None = None, log_id: int = 0
    ) -> dict[str, np.ndarray]:
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

    def predict(
        self, feed: dict[str, np.ndarray], fetch: Sequence[str] | None = None, log_id: int = 0
    ) -> dict[str, np.ndarray]:
        resp = self._call(feed, fetch, log_id)
        if resp.err_no != 0:
            raise ServingError(f"server error {resp.err_no}: {resp.err_msg}")
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
            raise ServingError(f"gRPC {code}{err_no} from {self.address}: {exc.details()}") from None

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
            raise ServingError(f"HTTP {r.status_code} from {self.url}: {r.text[:300]}") from None
        if r.status_code != 200:
            raise ServingError(f"HTTP {r.status_code} from {self.url}: err_no {resp.err_no}: {resp.err_msg}")
        return resp

    def close(self) -> None:
        self._session.close()


def grpc_channel(address: str, token: str | None, tls_ca: str | None):
    """A channel (TLS when ``tls_ca`` is given) and the call metadata that carries the token."""
    import grpc

    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    if tls_ca:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        channel = grpc.secure_channel(address, creds, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    return channel, ((("authorization", f"Bearer {token}"),) if token else None)


def _session(requests, token: str | None, tls_ca: str | None):
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


def make_client(
    protocol: str,
    address: str,
    config=None,
    timeout: float = DEFAULT_TIMEOUT,
    token: str | None = None,
    tls_ca: str | None = None,
) -> Client:
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
    sampling: dict | None = None  # a server's record of a clip padded from a too-short video

    def entry(self, source: Path | str) -> dict:
        """The one JSON entry of a classified input (``vslim predict --json`` prints the same)."""
        out = {"source": str(source), "classes": self.classes, "scores": self.scores, "labels": self.labels}
        return {**out, "sampling": self.sampling} if self.sampling else out


def sampling_record(value) -> dict | None:
    """A server's ``sampling`` record as a dict, whether sent as an object or as JSON text (pipeline values)."""
    if isinstance(value, (bytes, str)) and value:
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, dict) and value else None


def _top(logits: np.ndarray, meta: ModelMeta | None, k: int) -> TopK:
    probs = softmax(logits) if (meta is None or meta.output_kind == "logits") else logits
    ids, scores = topk(probs, k)
    name = meta.label_name if meta else str
    return TopK([int(i) for i in ids], [float(s) for s in scores], [name(int(i)) for i in ids])


def classify_video(client: Client, video: Path | str, top_k: int = 1) -> TopK:
    """Sample and preprocess ``video`` here, send the clip, return the top-k classes (and the sampling record
    of a video too short for the clip)."""
    if client.config is None or client.config.meta is None:
        raise ServingError("client-side preprocessing needs the bundle's client folder (it holds vslim.json)")
    meta = client.config.meta
    clip, sampling = ClipPipeline.for_model(meta).video_clip(video)
    feeds = {f.alias: x[None] for f, x in zip(client.config.signature.feeds, as_inputs(clip))}
    out = client.predict(feeds, [client.config.signature.fetches[0].alias])
    top = _top(next(iter(out.values()))[0], meta, top_k)
    top.sampling = sampling.to_dict() if sampling is not None else None
    return top


class VideoEndpointClient:
    """PaddleVideo's pipeline endpoint (``/video/prediction``) and vslim's ``/video/classify``."""

    def __init__(
        self, address: str, timeout: float = DEFAULT_TIMEOUT, token: str | None = None, tls_ca: str | None = None
    ):
        import requests

        self.address = normalize_address(address)
        self.base = f"{'https' if tls_ca else 'http'}://{self.address}"
        self.timeout = timeout
        self._requests = requests
        self._session = _session(requests, token, tls_ca)

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
            raise ServingError(
                f"video endpoint answered {status}: err_no {answer.get('err_no')}: {answer.get('err_msg')}"
            )
        return answer

    def classify_frames(self, frames: np.ndarray, top_k: int = 1, meta: ModelMeta | None = None) -> TopK:
        """``predict_frames`` as a TopK; the answer names classes only, so ids come from ``meta``'s labels."""
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
        return TopK([_class_id(label, meta) for label in labels], scores, labels, sampling)

    def classify_file(self, video: Path | str, top_k: int = 1) -> TopK:
        """Post a video file as it is; the server decodes and preprocesses it."""
        status, answer = self._post(
            "/video/classify",
            params={"top_k": top_k},
            data=Path(video).read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        if status != 200:
            raise ServingError(f"/video/classify answered {status}: {answer.get('error')}")
        top = answer["top_k"]
        return TopK(
            [t["class_id"] for t in top],
            [t["score"] for t in top],
            [t["label"] for t in top],
            sampling_record(answer.get("sampling")),
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
