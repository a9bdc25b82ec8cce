"""Reading HTTP request bodies safely, for every protocol: size limits, compression, JSON.

A body is refused (413) as soon as it passes the limit, and a compressed body as
soon as its inflated size does: a gzip bomb never takes more than the limit.
"""

from __future__ import annotations

import asyncio
import zlib

import orjson
from starlette.requests import Request

from vslim.textnum import whole_number

from .errors import TOO_LARGE, UNSUPPORTED, RequestError

DRAIN_FACTOR = 4
OFFLOAD_BYTES = 256 << 10  # parse bigger bodies in a worker thread, off the event loop


async def parse_off_loop(parse, body: bytes, *args):
    """``parse(body, *args)``, in a worker thread when the body is big (JSON of a clip takes ~100 ms)."""
    if len(body) > OFFLOAD_BYTES:
        return await asyncio.to_thread(parse, body, *args)
    return parse(body, *args)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` bytes.

    An oversized body is still read (and dropped) up to ``DRAIN_FACTOR`` times the
    limit before answering: a client that is still sending when the server closes
    sees a connection reset instead of the 413 that explains it.
    """
    length = request.headers.get("content-length")
    if length is not None and whole_number(length) is None:
        raise RequestError(f"Content-Length {length!r} is not a number")
    chunks: list[bytes] | None = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            chunks = None
            if size > DRAIN_FACTOR * limit:
                break
        elif chunks is not None:
            chunks.append(chunk)
    if chunks is None:
        total = whole_number(length) if length is not None else size
        raise RequestError(f"body of {total} bytes exceeds the {limit >> 20} MiB limit", TOO_LARGE)
    return b"".join(chunks)


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate) without ever holding more than ``limit`` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise RequestError(f"Content-Encoding {encoding!r} is not supported; use gzip or none", UNSUPPORTED)
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"body is not valid {encoding} data ({exc})") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise RequestError(f"decompressed body exceeds the {limit >> 20} MiB limit", TOO_LARGE)
    if not inflater.eof:
        raise RequestError(f"{encoding} body is truncated")
    return out


def load_json(body: bytes):
    """Parse a JSON body; a syntax error is the client's (HTTP 400), named as such."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON body: {exc}") from exc


async def read_decoded(request: Request, limit: int) -> bytes:
    """The body with its ``Content-Encoding`` undone, within ``limit`` bytes either way."""
    return decode_body(await read_body(request, limit), request.headers.get("content-encoding"), limit)
