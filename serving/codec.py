"""Paddle Serving's general-model wire format: requests in (proto or JSON), responses out.

Both encodings decode into the same :class:`WireRequest`, then one validator
checks it against the model's signature, so HTTP-JSON, HTTP-proto and gRPC refuse
bad requests with the same messages. The JSON side reads and writes the proto3
JSON form with orjson and numpy instead of ``json_format`` (which walks a
1.2M-float PP-TSM clip value by value, for seconds); the binary side views float
payloads in place (:mod:`.fastwire`).
"""
from __future__ import annotations

import base64
import binascii
import math
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import orjson
from google.protobuf.message import DecodeError

from vslim.errors import RequestError

from .fastwire import packed_payloads
from .protos import CODES, FP32, FP64, NAMES, code_of, fill_tensor, service_pb2, tensor_values

# err_no values. Paddle Serving's C++ server reports failures as transport errors
# (ERR_INTERNAL_FAILURE -5000, ERR_OP_INFER_FAILURE -5100); its pipeline uses
# INPUT_PARAMS_ERROR 5000 for bad input. vslim sets them in the Response too.
ERR_OK = 0
ERR_INPUT_PARAMS = 5000
ERR_INTERNAL = -5000
ERR_INFERENCE = -5100
ENGINE_NAME = "general_infer_0"


@dataclass(frozen=True)
class VarSpec:
    name: str
    alias: str
    dtype: np.dtype
    shape: tuple[int, ...]  # without the batch dimension


@dataclass(frozen=True)
class Signature:
    """Feed and fetch variables of a served model, as its bundle config declares them."""

    feeds: tuple[VarSpec, ...]
    fetches: tuple[VarSpec, ...]

    @classmethod
    def from_config(cls, conf) -> "Signature":
        def spec(v, code):
            if code not in CODES:
                raise RequestError(f"variable {v.name} has unsupported type code {code}", "internal")
            return VarSpec(v.name, v.alias_name or v.name, CODES[code][0], tuple(v.shape))

        return cls(tuple(spec(v, v.feed_type) for v in conf.feed_var),
                   tuple(spec(v, v.fetch_type) for v in conf.fetch_var))

    @staticmethod
    def _find(specs, key: str) -> Optional[VarSpec]:
        return next((s for s in specs if key in (s.alias, s.name)), None)

    def feed(self, key: str) -> Optional[VarSpec]:
        return self._find(self.feeds, key)

    def fetch(self, key: str) -> Optional[VarSpec]:
        return self._find(self.fetches, key)


@dataclass
class WireTensor:
    name: str
    alias: str
    elem_type: int
    shape: list[int]
    values: np.ndarray  # flat


@dataclass
class WireRequest:
    tensors: list[WireTensor] = field(default_factory=list)
    fetch: list[str] = field(default_factory=list)
    log_id: int = 0


@dataclass(frozen=True)
class Limits:
    max_batch: int = 64
    max_elements: int = 64 * 2**20


# --------------------------------------------------------------------------- decoding


_FAST_FIELDS = {FP32: (2, "float_data"), FP64: (4, "float64_data")}


def _values(t, fast: Optional[dict]) -> np.ndarray:
    """The tensor's values: a view of the wire bytes when they are one packed run, else protobuf's list."""
    if fast and t.elem_type in _FAST_FIELDS:
        number, field_name = _FAST_FIELDS[t.elem_type]
        array = fast.get(number)
        if array is not None and len(array) == len(getattr(t, field_name)):
            return array
    return tensor_values(t)


def from_proto(req, payloads: Optional[list] = None) -> WireRequest:
    tensors = []
    for i, t in enumerate(req.tensor):
        label = t.alias_name or t.name or f"tensor[{i}]"
        if t.elem_type not in CODES:
            raise RequestError(f"{label}: elem_type {t.elem_type} ({NAMES.get(t.elem_type, 'unknown')}) is not "
                               "supported; send float32 (1), int64 (0) or int32 (2)")
        fast = payloads[i] if payloads and i < len(payloads) else None
        tensors.append(WireTensor(t.name, t.alias_name, t.elem_type, list(t.shape), _values(t, fast)))
    return WireRequest(tensors, list(req.fetch_var_names), int(req.log_id))


def parse_proto(body: bytes) -> WireRequest:
    req = service_pb2.Request()
    try:
        req.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise RequestError(f"malformed protobuf body: not a Request message ({exc})") from exc
    try:
        payloads = packed_payloads(body)
    except (ValueError, IndexError):  # protobuf accepted it, so use protobuf's values
        payloads = None
    return from_proto(req, payloads)


_TENSOR_KEYS = {  # proto3 JSON accepts the proto field name and its lowerCamelCase form
    "int64_data": "int64_data", "int64Data": "int64_data", "float_data": "float_data", "floatData": "float_data",
    "int_data": "int_data", "intData": "int_data", "float64_data": "float64_data",
    "float64Data": "float64_data", "uint32_data": "uint32_data", "uint32Data": "uint32_data",
    "bool_data": "bool_data", "boolData": "bool_data", "complex64_data": "complex64_data",
    "complex64Data": "complex64_data", "complex128_data": "complex128_data",
    "complex128Data": "complex128_data", "data": "data", "elem_type": "elem_type", "elemType": "elem_type",
    "shape": "shape", "lod": "lod", "name": "name", "alias_name": "alias_name", "aliasName": "alias_name",
    "tensor_content": "tensor_content", "tensorContent": "tensor_content",
}
_REQUEST_KEYS = {"tensor": "tensor", "fetch_var_names": "fetch_var_names", "fetchVarNames": "fetch_var_names",
                 "profile_server": "profile_server", "profileServer": "profile_server",
                 "log_id": "log_id", "logId": "log_id"}


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        raise RequestError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise RequestError(f"{what} must be an integer, got {value!r}")


def _canonical(obj: dict, keys: dict, what: str) -> dict:
    out = {}
    for key, value in obj.items():
        if key not in keys:
            raise RequestError(f"{what}: unknown field {key!r}")
        if keys[key] in out:
            raise RequestError(f"{what}: field {keys[key]!r} given twice")
        out[keys[key]] = value
    return out


def _json_values(t: dict, elem_type: int, label: str) -> np.ndarray:
    dtype, field_name = CODES[elem_type]
    if field_name == "tensor_content":
        raw = t.get("tensor_content", "")
        try:
            return np.frombuffer(base64.b64decode(raw, validate=True), dtype=dtype)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise RequestError(f"{label}: tensor_content is not valid base64 {NAMES[elem_type]} data") from exc
    values = t.get(field_name, [])
    if not isinstance(values, list):
        raise RequestError(f"{label}: {field_name} must be a list")
    try:
        return np.asarray(values, dtype=dtype).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RequestError(f"{label}: {field_name} must be a flat list of {NAMES[elem_type]} values ({exc})") from exc


def load_json(body: bytes):
    """Parse a JSON body; a syntax error is the client's (HTTP 400), named as such."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON body: {exc}") from exc


def parse_json(body: bytes) -> WireRequest:
    obj = load_json(body)
    if not isinstance(obj, dict):
        raise RequestError("the JSON body must be an object with 'tensor' and 'fetch_var_names'")
    obj = _canonical(obj, _REQUEST_KEYS, "request")
    raw_tensors = obj.get("tensor", [])
    if not isinstance(raw_tensors, list):
        raise RequestError("'tensor' must be a list of tensor objects")
    tensors = []
    for i, raw in enumerate(raw_tensors):
        if not isinstance(raw, dict):
            raise RequestError(f"tensor[{i}] must be an object")
        t = _canonical(raw, _TENSOR_KEYS, f"tensor[{i}]")
        label = t.get("alias_name") or t.get("name") or f"tensor[{i}]"
        elem_type = _int(t.get("elem_type", 0), f"{label}: elem_type")
        if elem_type not in CODES:
            raise RequestError(f"{label}: elem_type {elem_type} ({NAMES.get(elem_type, 'unknown')}) is not supported")
        shape = t.get("shape", [])
        if not isinstance(shape, list):
            raise RequestError(f"{label}: shape must be a list of integers")
        shape = [_int(d, f"{label}: shape") for d in shape]
        tensors.append(WireTensor(str(t.get("name", "")), str(t.get("alias_name", "")), elem_type, shape,
                                  _json_values(t, elem_type, label)))
    fetch = obj.get("fetch_var_names", [])
    if not isinstance(fetch, list) or not all(isinstance(f, str) for f in fetch):
        raise RequestError("'fetch_var_names' must be a list of strings")
    return WireRequest(tensors, fetch, _int(obj.get("log_id", 0), "log_id"))


def decode_body(body: bytes, encoding: Optional[str], limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate) without ever holding more than ``limit`` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise RequestError(f"Content-Encoding {encoding!r} is not supported; use gzip or none", "unsupported")
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"body is not valid {encoding} data ({exc})") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise RequestError(f"decompressed body exceeds the {limit >> 20} MiB limit", "too_large")
    if not inflater.eof:
        raise RequestError(f"{encoding} body is truncated")
    return out


# --------------------------------------------------------------------------- validation


def validate(req: WireRequest, sig: Signature, limits: Limits) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feeds ``{var name: batch-first array}`` and fetch var names, or a RequestError naming the problem."""
    if not req.tensors:
        names = ", ".join(s.alias for s in sig.feeds)
        raise RequestError(f"empty request: it holds no tensors; send one per model input ({names})")
    feeds: dict[str, np.ndarray] = {}
    for t in req.tensors:
        key = t.alias or t.name
        spec = sig.feed(t.alias) or sig.feed(t.name)
        if spec is None:
            known = ", ".join(s.alias for s in sig.feeds)
            raise RequestError(f"unknown feed {key!r}; the model takes {known}")
        if spec.name in feeds:
            raise RequestError(f"feed {spec.alias!r} is given twice")
        feeds[spec.name] = _check_tensor(t, spec, limits)
    missing = [s.alias for s in sig.feeds if s.name not in feeds]
    if missing:
        raise RequestError(f"missing feed(s) {missing}; the model takes {[s.alias for s in sig.feeds]}")
    batches = {a.shape[0] for a in feeds.values()}
    if len(batches) > 1:
        raise RequestError(f"feeds disagree on the batch size: {sorted(batches)}")
    fetch = []
    for key in req.fetch or [s.alias for s in sig.fetches]:
        spec = sig.fetch(key)
        if spec is None:
            raise RequestError(f"unknown fetch {key!r}; the model gives {[s.alias for s in sig.fetches]}")
        if spec.name not in fetch:
            fetch.append(spec.name)
    return feeds, fetch


def _check_tensor(t: WireTensor, spec: VarSpec, limits: Limits) -> np.ndarray:
    label = f"feed {spec.alias!r}"
    if t.elem_type != code_of(spec.dtype):
        raise RequestError(f"{label} must be {spec.dtype.name} (elem_type {code_of(spec.dtype)}), "
                           f"got {NAMES.get(t.elem_type, t.elem_type)} (elem_type {t.elem_type})")
    shape = t.shape
    want = [-1, *spec.shape]
    if not shape:
        raise RequestError(f"{label} has no shape; send its shape with the batch dimension first, e.g. "
                           f"{[1, *spec.shape]}")
    if any(d <= 0 for d in shape):
        raise RequestError(f"{label} has a non-positive dimension in shape {shape}")
    if shape[0] > limits.max_batch:
        raise RequestError(f"{label} has batch {shape[0]}, over this server's limit of {limits.max_batch}",
                           "too_large")
    count = math.prod(shape)
    if count > limits.max_elements:
        raise RequestError(f"{label} has {count} elements, over this server's limit of {limits.max_elements}",
                           "too_large")
    if len(shape) != len(want) or any(w >= 0 and w != d for w, d in zip(want, shape)):
        raise RequestError(f"{label} has shape {shape} but the model expects {want} (-1: any batch size)")
    if t.values.size != count:
        raise RequestError(f"{label} has {t.values.size} values but shape {shape} needs {count}")
    return t.values.reshape(shape)


# --------------------------------------------------------------------------- responses


def response(outputs: dict[str, np.ndarray], sig: Signature, log_id: int = 0):
    resp = service_pb2.Response(log_id=log_id, err_no=ERR_OK)
    out = resp.outputs.add(engine_name=ENGINE_NAME)
    for name, array in outputs.items():
        spec = next(s for s in sig.fetches if s.name == name)
        t = out.tensor.add(name=spec.name, alias_name=spec.alias)
        fill_tensor(t, array)
    return resp


def error_response(err_no: int, message: str, log_id: int = 0):
    return service_pb2.Response(err_no=err_no, err_msg=message, log_id=log_id)


def response_json(resp) -> bytes:
    """The Response in proto3 JSON with the ``.proto`` field names, as Paddle Serving answers.

    Written directly (not with ``json_format``) so each tensor carries only its
    data field and ``err_no``/``err_msg``/``log_id`` are always present as numbers.
    """
    outputs = []
    for model_out in resp.outputs:
        tensors = []
        for t in model_out.tensor:
            field_name = CODES[t.elem_type][1]
            values = tensor_values(t)
            data = base64.b64encode(values.tobytes()).decode() if field_name == "tensor_content" else values.tolist()
            tensors.append({field_name: data, "elem_type": t.elem_type, "shape": list(t.shape), "name": t.name,
                            "alias_name": t.alias_name})
        outputs.append({"tensor": tensors, "engine_name": model_out.engine_name})
    return orjson.dumps({"outputs": outputs, "profile_time": list(resp.profile_time),
                         "profile_server": resp.profile_server, "log_id": resp.log_id,
                         "err_no": resp.err_no, "err_msg": resp.err_msg})


def outputs_of(resp) -> dict[str, np.ndarray]:
    """``{alias: array}`` of a Response (client side)."""
    result = {}
    for model_out in resp.outputs:
        for t in model_out.tensor:
            result[t.alias_name or t.name] = tensor_values(t).reshape(list(t.shape))
    return result

