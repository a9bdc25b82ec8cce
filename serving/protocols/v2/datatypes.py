"""v2 datatypes: their numpy dtypes, Triton config names, typed-contents fields, and raw byte layouts.

Raw tensor bytes (HTTP binary extension, gRPC ``raw_*_contents``) are the flat,
row-major, little-endian elements; a BYTES tensor is each element as a 4-byte
little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from ...errors import INTERNAL, TOO_LARGE, RequestError
from ...signature import Limits, Wording

BYTES = "BYTES"
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*DTYPES, BYTES)
# InferTensorContents field per datatype (FP16 has none: it travels raw only)
CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
# Triton's model configuration names the same types TYPE_*, with BYTES as TYPE_STRING
CONFIG_TYPES = {**{name: f"TYPE_{name}" for name in DTYPES}, BYTES: "TYPE_STRING"}
_LENGTH = struct.Struct("<I")


def datatype_of(dtype) -> str:
    """The v2 name of a numpy dtype (object arrays of bytes are BYTES)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "O":
        return BYTES
    for name, dt in DTYPES.items():
        if dt == dtype.newbyteorder("<") or dt == dtype:
            return name
    raise RequestError(f"dtype {dtype} has no v2 datatype", INTERNAL)


WORDING = Wording("input", "output", datatype_of)


def check_datatype(datatype, what: str) -> str:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise RequestError(f"{what}: datatype {datatype!r} is not a v2 datatype; use one of {', '.join(DATATYPES)}")
    return datatype


def element_count(shape: list[int]) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


def check_size(shape: list[int], limits: Limits, what: str) -> int:
    """The element count a shape declares, refused before any data is decoded when over the limit."""
    if any(d < 0 for d in shape):
        raise RequestError(f"{what}: shape {shape} has a negative dimension")
    count = element_count(shape)
    if count > limits.max_elements:
        raise RequestError(
            f"{what}: shape {shape} declares {count} elements, over this server's limit of {limits.max_elements}",
            TOO_LARGE,
        )
    return count


def from_raw(raw, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """Flat elements of one tensor's raw bytes, refused when their size does not fit the shape."""
    if datatype == BYTES:
        return deserialize_bytes(raw, what, element_count(shape))
    dtype = DTYPES[datatype]
    need = element_count(shape) * dtype.itemsize
    if len(raw) != need:
        raise RequestError(f"{what}: {len(raw)} bytes of {datatype} data, but shape {shape} needs {need}")
    return np.frombuffer(raw, dtype=dtype)


def integers(values, datatype: str, what: str) -> np.ndarray:
    """Exact integers as ``datatype``, refused when one does not fit (never wrapped, never rounded)."""
    dtype = DTYPES[datatype]
    if not values:
        return np.empty(0, dtype=dtype)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise RequestError(f"{what}: 'data' must hold {datatype} values (whole numbers), got {_sample(values)!r}")
    info = np.iinfo(dtype)
    if min(values) < info.min or max(values) > info.max:
        raise RequestError(f"{what}: values do not fit {datatype} ({info.min}..{info.max})")
    return np.array(values, dtype=dtype)


def to_raw(array: np.ndarray) -> bytes:
    return bytes(raw_view(array))


def raw_view(array: np.ndarray) -> bytes | memoryview:
    """The raw bytes of ``array``: a view of it when already contiguous little-endian (the usual case), so the
    one copy is where the bytes go (a gRPC message, an HTTP body)."""
    if array.dtype == object:
        return serialize_bytes(array.reshape(-1))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).data.cast("B")


def serialize_bytes(elements) -> bytes:
    parts = []
    for e in elements:
        data = e.encode() if isinstance(e, str) else bytes(e)
        parts += [_LENGTH.pack(len(data)), data]
    return b"".join(parts)


def deserialize_bytes(raw, what: str, limit: int | None = None) -> np.ndarray:
    """BYTES elements from length-prefixed raw bytes; a prefix running past the end is refused, and so
    is an element beyond ``limit`` (the declared count) before it is copied."""
    view = memoryview(raw)
    out: list[bytes] = []
    pos = 0
    while pos < len(view):
        if limit is not None and len(out) >= limit:
            raise RequestError(f"{what}: BYTES data holds more than the {limit} element(s) its shape declares")
        if pos + 4 > len(view):
            raise RequestError(f"{what}: BYTES data ends inside a 4-byte length prefix at byte {pos}")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if pos + length > len(view):
            raise RequestError(
                f"{what}: BYTES element {len(out)} claims {length} bytes but only "
                f"{len(view) - pos} remain; each element is a 4-byte little-endian length, "
                "then the bytes"
            )
        out.append(bytes(view[pos : pos + length]))
        pos += length
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array


def from_json(data, datatype: str, what: str) -> np.ndarray:
    """Flat elements of a JSON ``data`` list (flat or nested, row-major)."""
    if not isinstance(data, list):
        raise RequestError(f"{what}: 'data' must be a list of values (flat or nested, row-major)")
    if datatype == BYTES:
        flat = _flatten(data, what)
        if not all(isinstance(x, str) for x in flat):
            raise RequestError(f"{what}: BYTES data in JSON must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = [x.encode() for x in flat]
        return array
    if datatype == "FP16":  # as Triton: JSON cannot say which half-precision value is meant
        raise RequestError(f"{what}: FP16 data cannot travel as JSON; send it as binary data")
    dtype = DTYPES[datatype]
    try:
        array = np.asarray(data)  # numpy's C loop: fast for the common, regular case
    except ValueError as exc:  # ragged nesting
        raise RequestError(f"{what}: 'data' is not a regular (rectangular) nesting of values") from exc
    if dtype.kind in "iu" and array.dtype.kind not in "iu":
        # numpy turns a mix of very large and negative (or small) integers into floats: check them exactly
        return integers(_flatten(data, what), datatype, what)
    if array.dtype == object or (array.size and array.dtype.kind not in _JSON_KINDS[dtype.kind]):
        raise RequestError(f"{what}: 'data' must hold {datatype} values, got {_sample(data)!r}")
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise RequestError(f"{what}: values do not fit {datatype} ({info.min}..{info.max})")
    with np.errstate(all="ignore"):
        out = array.astype(dtype).reshape(-1)
    if dtype.kind == "f" and array.size and np.isinf(out).any():  # JSON has no infinity: an overflow
        raise RequestError(f"{what}: values do not fit {datatype}")
    return out


# which JSON number kinds numpy may see for each target kind
_JSON_KINDS = {"b": "b", "i": "i", "u": "iu", "f": "iuf"}


def _sample(data):
    while isinstance(data, list) and data:
        data = data[0]
    return data


def _flatten(data, what: str, depth: int = 0) -> list:
    if depth > 32:
        raise RequestError(f"{what}: 'data' is nested too deeply")
    out = []
    for x in data:
        out.extend(_flatten(x, what, depth + 1) if isinstance(x, list) else [x])
    return out


def to_json(array: np.ndarray, what: str) -> list:
    """Flat JSON values of an output (FP16 refused, as Triton does; BYTES as UTF-8 strings)."""
    if array.dtype == object:
        try:
            return [bytes(x).decode() for x in array.reshape(-1)]
        except UnicodeDecodeError as exc:
            raise RequestError(f"{what} holds bytes that are not UTF-8; ask for it as binary data") from exc
    if array.dtype == np.float16:
        raise RequestError(f"{what} is FP16, which cannot travel as JSON; ask for it as binary data")
    return array.reshape(-1).tolist()
