"""Paddle Serving's general-model wire format: requests in (proto or JSON), responses out.

Both encodings decode into the same :class:`WireRequest`, then one validator
checks it against the model's signature, so HTTP-JSON, HTTP-proto and gRPC refuse
bad requests with the same messages. The JSON side reads and writes the proto3
JSON form with orjson and numpy instead of ``json_format`` (which walks a
1.2M-float PP-TSM clip value by value, for seconds); the binary side views float
payloads in place (:mod:`.fastwire`).
"""

from __future__ import annotations

import ast
import base64
import binascii
import math
from dataclasses import dataclass, field

import numpy as np
import orjson
from google.protobuf.message import DecodeError

from vslim.textnum import whole_number

from ...errors import TOO_LARGE, RequestError
from ...httpbody import load_json
from ...signature import Limits, Signature, TensorIn, check_inputs, check_outputs
from .errors import ERR_OK
from .fastwire import split_packed
from .types import CODES, FP32, FP64, NAMES, WORDING, describe, fill_tensor, service_pb2, tensor_values

ENGINE_NAME = "general_infer_0"


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


# --------------------------------------------------------------------------- decoding


_FAST_FIELDS = {FP32: (2, "float_data"), FP64: (4, "float64_data")}
_FIELD_NAMES = {number: name for number, name in _FAST_FIELDS.values()}


def _values(t, taken: dict | None) -> np.ndarray:
    """The tensor's values: the packed run ``split_packed`` took out of the wire bytes (a view of them) when it
    is the field the tensor's type reads, else protobuf's list."""
    if taken:
        number, array = next(iter(taken.items()))
        if _FAST_FIELDS.get(t.elem_type, (None,))[0] != number:
            raise RequestError(
                f"{t.alias_name or t.name}: its values are in {_FIELD_NAMES[number]}, but elem_type "
                f"{t.elem_type} ({NAMES.get(t.elem_type, 'unknown')}) reads another field"
            )
        return array
    return tensor_values(t)


def from_proto(req, payloads: list | None = None) -> WireRequest:
    tensors = []
    for i, t in enumerate(req.tensor):
        label = t.alias_name or t.name or f"tensor[{i}]"
        if t.elem_type not in CODES:
            raise RequestError(
                f"{label}: elem_type {t.elem_type} ({NAMES.get(t.elem_type, 'unknown')}) is not "
                "supported; send float32 (1), int64 (0) or int32 (2)"
            )
        fast = payloads[i] if payloads and i < len(payloads) else None
        tensors.append(WireTensor(t.name, t.alias_name, t.elem_type, list(t.shape), _values(t, fast)))
    return WireRequest(tensors, list(req.fetch_var_names), int(req.log_id))


def parse_proto(body: bytes) -> WireRequest:
    try:
        rest, payloads = split_packed(body)
    except ValueError:  # not a walk of fields: protobuf parses it as sent, or says why not
        rest, payloads = body, None
    req = service_pb2.Request()
    try:
        req.ParseFromString(rest)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise RequestError(f"malformed protobuf body: not a Request message ({exc})") from exc
    return from_proto(req, payloads)


_TENSOR_KEYS = {  # proto3 JSON accepts the proto field name and its lowerCamelCase form
    "int64_data": "int64_data",
    "int64Data": "int64_data",
    "float_data": "float_data",
    "floatData": "float_data",
    "int_data": "int_data",
    "intData": "int_data",
    "float64_data": "float64_data",
    "float64Data": "float64_data",
    "uint32_data": "uint32_data",
    "uint32Data": "uint32_data",
    "bool_data": "bool_data",
    "boolData": "bool_data",
    "complex64_data": "complex64_data",
    "complex64Data": "complex64_data",
    "complex128_data": "complex128_data",
    "complex128Data": "complex128_data",
    "data": "data",
    "elem_type": "elem_type",
    "elemType": "elem_type",
    "shape": "shape",
    "lod": "lod",
    "name": "name",
    "alias_name": "alias_name",
    "aliasName": "alias_name",
    "tensor_content": "tensor_content",
    "tensorContent": "tensor_content",
}
_REQUEST_KEYS = {
    "tensor": "tensor",
    "fetch_var_names": "fetch_var_names",
    "fetchVarNames": "fetch_var_names",
    "profile_server": "profile_server",
    "profileServer": "profile_server",
    "log_id": "log_id",
    "logId": "log_id",
}


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        raise RequestError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    number = whole_number(value, signed=True) if isinstance(value, str) else None
    if number is not None:
        return number
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
        tensors.append(
            WireTensor(
                str(t.get("name", "")),
                str(t.get("alias_name", "")),
                elem_type,
                shape,
                _json_values(t, elem_type, label),
            )
        )
    fetch = obj.get("fetch_var_names", [])
    if not isinstance(fetch, list) or not all(isinstance(f, str) for f in fetch):
        raise RequestError("'fetch_var_names' must be a list of strings")
    log_id = _int(obj.get("log_id", 0), "log_id")
    if not 0 <= log_id < 2**64:  # Request.log_id is a uint64
        raise RequestError(f"log_id must be a whole number in [0, 2^64), got {log_id}")
    return WireRequest(tensors, fetch, log_id)


def parse_frames(body: bytes, limit: int) -> tuple[np.ndarray, int]:
    """PaddleVideo's pipeline request -> ``[T, H, W, 3]`` uint8 frames and its log id."""
    obj = load_json(body)
    if not isinstance(obj, dict):
        raise RequestError('the body must be {"key": [...], "value": [...]}')
    unknown = set(obj) - {"key", "value", "tensors", "name", "method", "logid", "clientip"}
    if unknown:
        raise RequestError(f"unknown field(s) {sorted(unknown)}")
    keys, values = obj.get("key"), obj.get("value")
    if (
        not isinstance(keys, list)
        or not isinstance(values, list)
        or len(keys) != len(values)
        or not all(isinstance(v, str) for v in [*keys, *values])
    ):
        raise RequestError("'key' and 'value' must be lists of strings of the same length")
    pairs = dict(zip(keys, values))
    missing = [k for k in ("frames", "frames_shape") if k not in pairs]
    if missing:
        raise RequestError(f"missing key(s) {missing}; send frames (base64 uint8) and frames_shape")
    try:
        shape = ast.literal_eval(pairs["frames_shape"])  # literal only: never eval() client text
    except (ValueError, SyntaxError) as exc:
        raise RequestError(f"frames_shape {pairs['frames_shape'][:80]!r} is not a shape like '(T, H, W, 3)'") from exc
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 4
        or not all(isinstance(d, int) and d > 0 for d in shape)
        or shape[3] != 3
    ):
        raise RequestError(f"frames_shape must be (T, H, W, 3) with positive sizes, got {shape!r}")
    if math.prod(shape) > limit:
        raise RequestError(f"frames_shape {tuple(shape)} exceeds the body limit", TOO_LARGE)
    try:
        raw = base64.b64decode(pairs["frames"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"frames is not valid base64: {exc}") from exc
    if len(raw) != math.prod(shape):
        raise RequestError(f"frames holds {len(raw)} bytes but frames_shape {tuple(shape)} needs {math.prod(shape)}")
    logid = obj.get("logid", 0)
    return np.frombuffer(raw, np.uint8).reshape(shape), whole_number(str(logid)) or 0


# --------------------------------------------------------------------------- validation


def validate(req: WireRequest, sig: Signature, limits: Limits) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feeds ``{var name: batch-first array}`` and fetch var names, or a RequestError naming the problem."""
    tensors = [
        TensorIn(t.alias or t.name, CODES[t.elem_type][0], describe(t.elem_type), t.shape, t.values, alt_key=t.name)
        for t in req.tensors
    ]
    return check_inputs(tensors, sig, limits, WORDING), check_outputs(req.fetch, sig, WORDING)


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
            tensors.append(
                {
                    field_name: data,
                    "elem_type": t.elem_type,
                    "shape": list(t.shape),
                    "name": t.name,
                    "alias_name": t.alias_name,
                }
            )
        outputs.append({"tensor": tensors, "engine_name": model_out.engine_name})
    return orjson.dumps(
        {
            "outputs": outputs,
            "profile_time": list(resp.profile_time),
            "profile_server": resp.profile_server,
            "log_id": resp.log_id,
            "err_no": resp.err_no,
            "err_msg": resp.err_msg,
        }
    )


def outputs_of(resp) -> dict[str, np.ndarray]:
    """``{alias: array}`` of a Response (client side)."""
    result = {}
    for model_out in resp.outputs:
        for t in model_out.tensor:
            result[t.alias_name or t.name] = tensor_values(t).reshape(list(t.shape))
    return result
