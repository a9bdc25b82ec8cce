"""The generated protocol modules, and the mapping between Paddle Serving type codes and numpy.

Type codes are Paddle Serving's (``feed_type``/``fetch_type`` in bundle configs,
``elem_type`` in requests). float32/int64/int32/float64/bool/string travel in
their typed repeated fields; fp16/int16/int8/bf16/uint8 travel as raw
little-endian bytes in ``tensor_content``.
"""
from __future__ import annotations

import numpy as np

from vslim.errors import VslimError

try:
    from ._generated import general_model_config_pb2 as config_pb2
    from ._generated import general_model_service_pb2 as service_pb2
    from ._generated import general_model_service_pb2_grpc as service_grpc
    from ._generated import pipeline_service_pb2 as pipeline_pb2
except ImportError as exc:  # a source checkout that was never built
    raise VslimError(
        "the serving protocol modules were not generated: install vslim with "
        "`pip install -e .` (it compiles serving/proto/*.proto)"
    ) from exc

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
NAMES = {INT64: "int64", FP32: "float32", INT32: "int32", FP64: "float64", INT16: "int16", FP16: "float16",
         BF16: "bfloat16", UINT8: "uint8", INT8: "int8", BOOL: "bool", COMPLEX64: "complex64",
         COMPLEX128: "complex128", STRING: "string"}


def code_of(dtype) -> int:
    """Paddle Serving type code of a numpy dtype."""
    dtype = np.dtype(dtype)
    for code, (dt, _) in CODES.items():
        if dt == dtype:
            return code
    raise VslimError(f"dtype {dtype} has no Paddle Serving type code")


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
