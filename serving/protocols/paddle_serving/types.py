"""Paddle Serving's generated messages, and its type codes as numpy dtypes.

Type codes are Paddle Serving's (``feed_type``/``fetch_type`` in bundle configs,
``elem_type`` in requests). float32/int64/int32/float64/bool/string travel in
their typed repeated fields; fp16/int16/int8/bf16/uint8 travel as raw
little-endian bytes in ``tensor_content``.
"""

from __future__ import annotations

import numpy as np

from vslim.errors import VslimError

from ...generated import load
from ...signature import Signature, VarSpec, Wording

config_pb2 = load("general_model_config_pb2")
service_pb2 = load("general_model_service_pb2")
service_grpc = load("general_model_service_pb2_grpc")

INT64, FP32, INT32, FP64, INT16, FP16, BF16, UINT8, INT8, BOOL, COMPLEX64, COMPLEX128 = range(12)
STRING = 20

# code -> (numpy dtype, Tensor field holding the values)
CODES: dict[int, tuple[np.dtype, str]] = {
    INT64: (np.dtype(np.int64), "int64_data"),
    FP32: (np.dtype(np.float32), "float_data"),
    INT32: (np.dtype(np.int32), "int_data"),
    FP64: (np.dtype(np.float64), "float64_data"),
    INT16: (np.dtype("<i2"), "tensor_content"),
    FP16: (np.dtype("<f2"), "tensor_content"),
    UINT8: (np.dtype(np.uint8), "tensor_content"),
    INT8: (np.dtype(np.int8), "tensor_content"),
    BOOL: (np.dtype(np.bool_), "bool_data"),
}
NAMES = {
    INT64: "int64",
    FP32: "float32",
    INT32: "int32",
    FP64: "float64",
    INT16: "int16",
    FP16: "float16",
    BF16: "bfloat16",
    UINT8: "uint8",
    INT8: "int8",
    BOOL: "bool",
    COMPLEX64: "complex64",
    COMPLEX128: "complex128",
    STRING: "string",
}


def code_of(dtype) -> int:
    """Paddle Serving type code of a numpy dtype."""
    dtype = np.dtype(dtype)
    for code, (dt, _) in CODES.items():
        if dt == dtype:
            return code
    raise VslimError(f"dtype {dtype} has no Paddle Serving type code")


def describe(code: int) -> str:
    """How error messages name a type: ``float32 (elem_type 1)``."""
    return f"{NAMES.get(code, 'unknown')} (elem_type {code})"


WORDING = Wording("feed", "fetch", lambda dtype: describe(code_of(dtype)))


def signature_of(conf) -> Signature:
    """The model signature a ``GeneralModelConfig`` (a bundle's prototxt) declares."""
    from ...errors import INTERNAL, RequestError

    def spec(v, code):
        if code not in CODES:
            raise RequestError(f"variable {v.name} has unsupported type code {code}", INTERNAL)
        return VarSpec(v.name, v.alias_name or v.name, CODES[code][0], tuple(v.shape))

    return Signature(
        tuple(spec(v, v.feed_type) for v in conf.feed_var), tuple(spec(v, v.fetch_type) for v in conf.fetch_var)
    )


def tensor_values(t) -> np.ndarray:
    """The flat values of a ``Tensor`` message as numpy, read from the field its type code names."""
    dtype, field = CODES[t.elem_type]
    if field == "tensor_content":
        return np.frombuffer(t.tensor_content, dtype=dtype)
    return np.asarray(getattr(t, field), dtype=dtype)


def fill_tensor(t, array: np.ndarray) -> None:
    """Write ``array`` (shape included) into a ``Tensor`` message."""
    code = code_of(array.dtype)
    dtype, field = CODES[code]
    t.elem_type = code
    t.shape.extend(int(d) for d in array.shape)
    flat = np.ascontiguousarray(array, dtype=dtype).reshape(-1)
    if field == "tensor_content":
        t.tensor_content = flat.tobytes()
    else:
        getattr(t, field).extend(flat.tolist())
