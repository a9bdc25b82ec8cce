"""Protobuf's wire format, just enough to move tensor payloads without copying them.

The protobuf runtime copies every ``bytes`` field when it parses a message and
again when a field is read, and copies a whole message when it serializes it: a
PP-TSM R50 clip is 4.8 MB, so each copy costs ~0.3 ms on both sides of every
call. Two facts of the wire format let the tensor bytes skip protobuf:

* a message is a sequence of fields, each ``key`` (field number and wire type)
  then its payload; a length-delimited payload is its length then its bytes, so
  a field can be found, and viewed in place, by walking the keys;
* concatenated encodings parse as one message: repeated fields append, in order.
  A message serialized without its tensor fields, followed by those fields
  encoded here, parses to the same message as protobuf's own encoding.

Protocol modules use these to view payloads in the received bytes
(``np.frombuffer`` over a ``memoryview``) and to send each payload with one copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5


def read_varint(buf, pos: int) -> tuple[int, int]:
    """The varint at ``buf[pos]`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def len_field_head(number: int, length: int) -> bytes:
    """The key and length that precede a length-delimited field's ``length`` bytes."""
    return encode_varint(number << 3 | WIRE_LEN) + encode_varint(length)


def fields(buf, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int, int]]:
    """``(field number, wire type, field start, payload start, payload end)`` of each field in
    ``buf[start:end]``; a field's encoding is ``buf[field start:payload end]``."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        first = pos
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == WIRE_VARINT:
            _, nxt = read_varint(buf, pos)
        elif wire == WIRE_I64:
            nxt = pos + 8
        elif wire == WIRE_LEN:
            length, pos = read_varint(buf, pos)
            nxt = pos + length
        elif wire == WIRE_I32:
            nxt = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if nxt > end:
            raise ValueError("truncated field")
        yield number, wire, first, pos, nxt
        pos = nxt


def take_len_fields(body, number: int) -> tuple[bytes, list[memoryview]]:
    """Split a serialized message: its bytes without the length-delimited field ``number`` (to parse with
    protobuf, small), and that field's payloads in order, as views of ``body`` (never copied)."""
    view = memoryview(body)
    rest: list[memoryview] = []
    taken: list[memoryview] = []
    kept_from = 0
    for f, wire, first, start, end in fields(view):
        if f == number and wire == WIRE_LEN:
            rest.append(view[kept_from:first])
            taken.append(view[start:end])
            kept_from = end
    if not taken:
        return bytes(body), taken
    rest.append(view[kept_from:])
    return b"".join(rest), taken


def append_len_fields(message: bytes, number: int, payloads: Sequence) -> bytes:
    """``message`` followed by each payload (bytes-like, C-contiguous) as field ``number``: one copy of each."""
    parts: list = [message]
    for payload in payloads:
        view = memoryview(payload).cast("B")
        parts += [len_field_head(number, view.nbytes), view]
    return b"".join(parts)
