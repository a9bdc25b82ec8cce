"""Zero-copy float tensors on Paddle Serving's wire.

The protobuf runtime (upb) exposes a repeated float field only value by value:
turning the 98k floats of a small clip into numpy costs ~5 ms, and a PP-TSM R50
clip (1.2M floats) ~60 ms, on each side of every call. Yet a packed ``float`` or
``double`` field is, on the wire, exactly a little-endian array. So:

* decoding: the tensor payloads are located in the received bytes and viewed
  with ``np.frombuffer``; protobuf parses (and validates) the rest of the
  message, without them, so it never copies them either. A field that is not
  one packed run (legal, but no client sends it) is left to protobuf.
* encoding: each tensor message is serialized by protobuf without its values,
  then the packed payload is appended: protobuf merges repeated fields across
  an encoding, so the result parses to the same message (tests check this).
"""

from __future__ import annotations

import numpy as np

from ...protowire import WIRE_LEN, fields, len_field_head
from .types import FP32, FP64, fill_tensor, service_pb2

# Tensor field numbers of the packed fixed-width payloads, and their dtypes.
_PACKED: dict[int, np.dtype] = {2: np.dtype("<f4"), 4: np.dtype("<f8")}
_TENSOR_FIELD = 1  # Request.tensor


def split_packed(body: bytes) -> tuple[bytes, list[dict[int, np.ndarray]]]:
    """A serialized ``Request`` without its tensors' packed float/double runs (for protobuf to parse: small),
    and per tensor ``{field number: array}`` of the runs taken out, viewing ``body`` in place.

    A tensor's run is taken only when it is its one float or double field, encoded once, packed, not empty and
    a whole number of elements; any other tensor is left to protobuf as sent. Raises ValueError when the bytes do not
    walk as protobuf fields (the caller lets protobuf parse them, or say why not).
    """
    view = memoryview(body)
    parts: list = []
    payloads: list[dict[int, np.ndarray]] = []
    kept_from = 0
    for number, wire, first, start, end in fields(view):
        if number != _TENSOR_FIELD or wire != WIRE_LEN:
            continue
        runs = [(f, w, ff, s, e) for f, w, ff, s, e in fields(view, start, end) if f in _PACKED]
        size = runs[0][4] - runs[0][3] if len(runs) == 1 else 0
        if not size or runs[0][1] != WIRE_LEN or size % _PACKED[runs[0][0]].itemsize:
            payloads.append({})
            continue
        f, _, run_first, s, e = runs[0]
        payloads.append({f: np.frombuffer(view[s:e], dtype=_PACKED[f])})
        tensor = b"".join([view[start:run_first], view[e:end]])
        parts += [view[kept_from:first], len_field_head(_TENSOR_FIELD, len(tensor)), tensor]
        kept_from = end
    if not kept_from:  # nothing taken: protobuf gets the body itself, not a copy
        return body, payloads
    parts.append(view[kept_from:])
    return b"".join(parts), payloads


def encode_request(tensors: list[tuple[str, str, np.ndarray]], fetch: list[str], log_id: int = 0) -> bytes:
    """A serialized ``Request`` for ``(name, alias, array)`` feeds; float payloads copied once, into the result."""
    parts: list = []
    for name, alias, array in tensors:
        t = service_pb2.Tensor(name=name, alias_name=alias)
        array = np.asarray(array)
        if array.dtype in (np.float32, np.float64):
            field, dtype = (2, "<f4") if array.dtype == np.float32 else (4, "<f8")
            t.elem_type = FP32 if array.dtype == np.float32 else FP64
            t.shape.extend(int(d) for d in array.shape)
            head = t.SerializeToString()
            payload = np.ascontiguousarray(array, dtype=dtype).data.cast("B")
            body = [head, len_field_head(field, payload.nbytes), payload] if payload.nbytes else [head]
        else:
            fill_tensor(t, array)
            body = [t.SerializeToString()]
        parts += [len_field_head(_TENSOR_FIELD, sum(len(b) for b in body)), *body]
    parts.append(service_pb2.Request(fetch_var_names=fetch, log_id=log_id).SerializeToString())
    return b"".join(parts)
