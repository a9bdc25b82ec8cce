"""Python clients of the Open Inference Protocol: ``V2HttpClient`` and ``V2GrpcClient``.

Both offer the call shape of every vslim client (``predict(feed, fetch)``) for
the bundle's tensor model, the general ``infer(model, inputs, outputs,
parameters)``, ``classify_files`` for the ``{name}_video`` model, and the
metadata calls. Tensors travel as raw bytes by default (HTTP binary tensor
extension, gRPC raw contents); ``binary=False`` sends and asks for JSON (HTTP).
They speak the protocol only: any v2 server (Triton, KServe, vslim) answers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from vslim.topk import TopK, sampling_of

from ...client_base import (
    DEFAULT_TIMEOUT,
    Client,
    grpc_channel,
    grpc_unreachable,
    http_session,
    http_unreachable,
    kind_of,
    named_arrays,
    sampling_record,
)
from ...errors import INTERNAL, ClientError, ServingError
from ...protowire import append_len_fields
from .datatypes import BYTES, CONTENTS, DTYPES, datatype_of, from_json, from_raw, raw_view
from .errors import GRPC_STATUS, HTTP_STATUS
from .proto import RAW_INPUT_CONTENTS, set_parameter

Inputs = dict[str, np.ndarray]
_GRPC_CODE_NAMES = {kind: code.name for kind, code in GRPC_STATUS.items()}


def _bytes_tensor(elements: Sequence[bytes]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = list(elements)
    return array


def _tops(result: dict[str, np.ndarray]) -> list[TopK]:
    labels, ids, probs = result["label"], result["class_id"], result["prob"]
    sampling = _sampling_rows(result.get("sampling"), len(ids))
    return [
        TopK(
            [int(i) for i in ids[r]],
            [float(p) for p in probs[r]],
            [bytes(x).decode() for x in labels[r]],
            sampling=sampling_of(sampling[r]),
        )
        for r in range(len(ids))
    ]


def _sampling_rows(value: np.ndarray | None, rows: int) -> list[dict | None]:
    """A ``sampling`` output (one JSON text per video, sent when a clip was padded) as one record per row."""
    flat = [] if value is None else list(np.asarray(value).reshape(-1))
    if len(flat) != rows:
        return [None] * rows
    return [sampling_record(x if isinstance(x, (bytes, str)) else bytes(x)) for x in flat]


class _V2Client(Client):
    def __init__(
        self,
        address: str,
        config=None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls_ca: str | None = None,
        model: str | None = None,
        version: str = "",
    ):
        super().__init__(address, config, timeout, token, tls_ca)
        self.model = model or (self.config.name if self.config else "")
        self.version = version  # every request names it when set; else the server's newest ready version

    def predict(
        self, feed: dict[str, np.ndarray], fetch: Sequence[str] | None = None, log_id: int = 0
    ) -> dict[str, np.ndarray]:
        if not self.model:
            raise ServingError("which model? give model= or the bundle's *_serving_client folder")
        inputs = {alias: array for _, alias, array in named_arrays(feed, self.config)}
        return self.infer(self.model, inputs, list(fetch) if fetch else None, request_id=str(log_id) if log_id else "")

    def classify_files(self, videos: Sequence[Path | str], top_k: int = 1, model: str | None = None) -> list[TopK]:
        """Send whole video files to the ``{name}_video`` model; the server decodes them. One TopK per file."""
        model = model or f"{self.model}_video"
        data = _bytes_tensor([Path(v).read_bytes() for v in videos])
        return _tops(self.infer(model, {"video": data}, parameters={"top_k": top_k}))

    def infer(
        self,
        model: str,
        inputs: Inputs,
        outputs: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
        request_id: str = "",
    ) -> dict[str, np.ndarray]:
        """``{output name: array}``; raises ClientError (with the error kind) and the server's message on refusal."""
        raise NotImplementedError

    def _fail(self, what: str, detail: str, status: int | str | None = None) -> ClientError:
        """The server's refusal, its kind read back from v2's tables (HTTP status or gRPC code name)."""
        kind = kind_of(status, HTTP_STATUS if isinstance(status, int) else _GRPC_CODE_NAMES) or INTERNAL
        return ClientError(f"{self.protocol} {what} from {self.address}: {detail}", kind, status)


class V2HttpClient(_V2Client):
    protocol = "v2-http"

    def __init__(
        self,
        address: str,
        config=None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls_ca: str | None = None,
        model: str | None = None,
        binary: bool = True,
        version: str = "",
    ):
        super().__init__(address, config, timeout, token, tls_ca, model, version)
        import requests

        self.binary = binary
        self._requests = requests
        self._session = http_session(requests, token, tls_ca)
        self.base = f"{'https' if tls_ca else 'http'}://{self.address}/v2"

    def _request(self, method: str, path: str, **kw):
        try:
            return self._session.request(method, f"{self.base}{path}", timeout=self.timeout, **kw)
        except self._requests.RequestException as exc:
            raise (http_unreachable(exc, self.address, self.timeout) or self._fail("request", f"{exc}")) from None

    def _json(self, path: str) -> dict:
        r = self._request("GET", path)
        if r.status_code != 200:
            raise self._fail(f"HTTP {r.status_code}", _error_text(r), r.status_code)
        return r.json()

    def server_metadata(self) -> dict:
        return self._json("")

    def _model(self, model: str | None) -> str:
        path = f"/models/{quote(model or self.model, safe='')}"
        return f"{path}/versions/{quote(self.version, safe='')}" if self.version else path

    def model_metadata(self, model: str | None = None) -> dict:
        return self._json(self._model(model))

    def model_config(self, model: str | None = None) -> dict:
        return self._json(f"{self._model(model)}/config")

    def model_ready(self, model: str | None = None) -> bool:
        """As Triton's HTTP client: an unknown model is simply not ready (gRPC raises NOT_FOUND)."""
        return self._request("GET", f"{self._model(model)}/ready").status_code == 200

    def server_ready(self) -> bool:
        return self._request("GET", "/health/ready").status_code == 200

    def repository_index(self, ready: bool = False) -> list[dict]:
        """Every model of the server's repository: name, version, state, reason (Triton's extension)."""
        r = self._request("POST", "/repository/index", json={"ready": ready})
        if r.status_code != 200:
            raise self._fail(f"HTTP {r.status_code}", _error_text(r), r.status_code)
        return r.json()

    def load_model(self, model: str) -> None:
        """Load or reload ``model`` (the server must run with --model-control-mode explicit)."""
        r = self._request("POST", f"/repository/models/{quote(model, safe='')}/load")
        if r.status_code != 200:
            raise self._fail(f"HTTP {r.status_code}", _error_text(r), r.status_code)

    def unload_model(self, model: str) -> None:
        r = self._request("POST", f"/repository/models/{quote(model, safe='')}/unload")
        if r.status_code != 200:
            raise self._fail(f"HTTP {r.status_code}", _error_text(r), r.status_code)

    def infer(
        self,
        model: str,
        inputs: Inputs,
        outputs: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
        request_id: str = "",
    ) -> dict[str, np.ndarray]:
        header: dict[str, Any] = {"inputs": []}
        chunks = []
        for name, array in inputs.items():
            array = np.asarray(array)
            entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype_of(array.dtype)}
            if self.binary or entry["datatype"] == "FP16":
                raw = raw_view(array)
                entry["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            elif array.dtype == object:
                try:
                    entry["data"] = [bytes(x).decode() for x in array.reshape(-1)]
                except UnicodeDecodeError:
                    raise ServingError(
                        f"input {name!r} holds bytes that are not UTF-8 text; JSON cannot carry "
                        "them: send binary tensors"
                    ) from None
            else:
                entry["data"] = array.reshape(-1).tolist()
            header["inputs"].append(entry)
        if outputs:
            header["outputs"] = [{"name": n, "parameters": {"binary_data": self.binary}} for n in outputs]
        params = dict(parameters or {})
        if self.binary and not outputs:
            params["binary_data_output"] = True
        if params:
            header["parameters"] = params
        if request_id:
            header["id"] = request_id
        head = orjson.dumps(header)
        headers = {"Content-Type": "application/octet-stream" if chunks else "application/json"}
        if chunks:
            headers["Inference-Header-Content-Length"] = str(len(head))
        r = self._request("POST", f"{self._model(model)}/infer", data=b"".join([head, *chunks]), headers=headers)
        if r.status_code != 200:
            raise self._fail(f"HTTP {r.status_code}", _error_text(r), r.status_code)
        return parse_http_answer(r.content, r.headers.get("Inference-Header-Content-Length"))

    def close(self) -> None:
        self._session.close()


def _error_text(r) -> str:
    try:
        return str(r.json().get("error", r.text[:300]))
    except ValueError:
        return r.text[:300]


def parse_http_answer(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """``{name: array}`` of a v2 HTTP answer, JSON or JSON header + binary outputs."""
    n = int(header_length) if header_length else len(body)
    doc = orjson.loads(body[:n])
    binary, offset, result = memoryview(body)[n:], 0, {}
    for out in doc.get("outputs", []):
        name, datatype, shape = out["name"], out["datatype"], list(out["shape"])
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            flat = from_raw(binary[offset : offset + size], datatype, shape, f"output {name!r}")
            offset += size
        else:
            flat = from_json(out["data"], datatype, f"output {name!r}")
        result[name] = flat.reshape(shape)
    return result


class V2GrpcClient(_V2Client):
    protocol = "v2-grpc"

    def __init__(
        self,
        address: str,
        config=None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls_ca: str | None = None,
        model: str | None = None,
        version: str = "",
    ):
        super().__init__(address, config, timeout, token, tls_ca, model, version)
        import grpc

        from .proto import SERVICE_NAME, pb

        self._grpc, self._pb = grpc, pb
        self._channel, self._metadata = grpc_channel(self.address, token, tls_ca)
        self._calls = {}
        for method, (req, resp) in {
            "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
            "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
            "ModelConfig": ("ModelConfigRequest", "ModelConfigResponse"),
            "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
            "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
            "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
        }.items():
            self._calls[method] = self._channel.unary_unary(
                f"/{SERVICE_NAME}/{method}",
                # ModelInfer goes out as bytes already encoded (_send: each tensor copied once)
                request_serializer=None if method == "ModelInfer" else getattr(pb, req).SerializeToString,
                response_deserializer=getattr(pb, resp).FromString,
            )

    def _call(self, method: str, request):
        try:
            return self._calls[method](request, timeout=self.timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            if (gone := grpc_unreachable(exc, self.address)) is not None:
                raise gone from None
            code = exc.code().name if exc.code() else "UNKNOWN"
            raise self._fail(code, exc.details() or "", code) from None

    def _dict(self, message) -> dict:
        from google.protobuf import json_format

        return json_format.MessageToDict(message, preserving_proto_field_name=True)

    def server_metadata(self) -> dict:
        return self._dict(self._call("ServerMetadata", self._pb.ServerMetadataRequest()))

    def model_metadata(self, model: str | None = None) -> dict:
        return self._dict(
            self._call("ModelMetadata", self._pb.ModelMetadataRequest(name=model or self.model, version=self.version))
        )

    def model_config(self, model: str | None = None) -> dict:
        return self._dict(
            self._call(
                "ModelConfig", self._pb.ModelConfigRequest(name=model or self.model, version=self.version)
            ).config
        )

    def model_ready(self, model: str | None = None) -> bool:
        return self._call(
            "ModelReady", self._pb.ModelReadyRequest(name=model or self.model, version=self.version)
        ).ready

    def server_ready(self) -> bool:
        return self._call("ServerReady", self._pb.ServerReadyRequest()).ready

    def infer(
        self,
        model: str,
        inputs: Inputs,
        outputs: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
        request_id: str = "",
    ) -> dict[str, np.ndarray]:
        request = self._pb.ModelInferRequest(model_name=model, model_version=self.version, id=request_id)
        raws = []
        for name, array in inputs.items():
            array = np.asarray(array)
            request.inputs.add(name=name, datatype=datatype_of(array.dtype), shape=list(array.shape))
            raws.append(raw_view(array))
        return self._send(request, outputs, parameters, raws)

    def _send(
        self, request, outputs: list[str] | None, parameters: dict[str, Any] | None, raws: Sequence = ()
    ) -> dict[str, np.ndarray]:
        """Ask for ``outputs`` with ``parameters``, send ``request`` (its inputs described) with ``raws`` as its
        ``raw_input_contents`` and decode the answer."""
        for name in outputs or ():
            request.outputs.add(name=name)
        for key, value in (parameters or {}).items():
            set_parameter(request.parameters[key], value)
        body = append_len_fields(request.SerializeToString(), RAW_INPUT_CONTENTS, raws)
        resp = self._call("ModelInfer", body)
        result = {}
        for i, out in enumerate(resp.outputs):
            shape = list(out.shape)
            if i < len(resp.raw_output_contents):
                flat = from_raw(resp.raw_output_contents[i], out.datatype, shape, f"output {out.name!r}")
            elif out.datatype == BYTES:
                flat = _bytes_tensor(list(out.contents.bytes_contents))
            else:
                flat = np.asarray(getattr(out.contents, CONTENTS[out.datatype]), dtype=DTYPES[out.datatype])
            result[out.name] = flat.reshape(shape)
        return result

    def close(self) -> None:
        self._channel.close()
