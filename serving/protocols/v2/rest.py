"""v2 over HTTP: the JSON body and Triton's binary tensor data extension, both ways.

A request body is a JSON header, optionally followed by raw tensor bytes. Its
length comes from ``Inference-Header-Content-Length``; without that header the
whole body is JSON. Content-Type is not consulted (Triton's client sends none).
Inputs with ``parameters.binary_data_size`` take their bytes from after the
header, in input order. An output is answered in binary when its own
``parameters.binary_data`` says so, else when the request-wide
``parameters.binary_data_output`` does (the specification's precedence; Triton's
server applies the request-wide flag only to outputs the request does not list).
A binary answer carries the same header and ``application/octet-stream``.
Fields the protocol does not define are ignored, as Triton ignores them.
"""

from __future__ import annotations

from typing import Any

import orjson

from vslim.textnum import whole_number

from ...errors import RequestError
from ...httpbody import load_json
from ...signature import Limits
from .datatypes import check_datatype, check_size, from_json, from_raw, to_json, to_raw
from .messages import InferInput, InferRequest, InferResponse, RequestedOutput
from .shm import BYTE_SIZE, REGION, SharedMemoryRegions, uses_shm

HEADER_LENGTH = "Inference-Header-Content-Length"


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary part after it."""
    if header_length is None:
        return body, memoryview(b"")
    n = whole_number(header_length)
    if n is None or not 0 < n <= len(body):
        raise RequestError(
            f"{HEADER_LENGTH} {header_length[:40]!r} must be a whole number in (0, {len(body)}], "
            f"the body's length: it is the length of the JSON header at the start of the body"
        )
    return body[:n], memoryview(body)[n:]


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be a JSON object")
    return value


def _parameters(obj: dict, what: str) -> dict[str, Any]:
    params = _object(obj.get("parameters", {}), f"{what}: 'parameters'")
    for key, value in params.items():
        if not isinstance(value, (bool, int, float, str)):
            raise RequestError(f"{what}: parameter {key!r} must be a boolean, number or string")
    return params


def _shape(value, what: str, limits: Limits) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise RequestError(f"{what}: 'shape' must be a list of whole numbers")
    check_size(value, limits, what)
    return value


def parse_request(
    body: bytes,
    header_length: str | None,
    model: str,
    version: str,
    limits: Limits = Limits(),
    regions: SharedMemoryRegions | None = None,
) -> InferRequest:
    """An inference request from its HTTP body (JSON, or JSON + binary tensors, or inputs in the shared memory
    ``regions``); a shape over ``limits`` is refused before its data is decoded."""
    header, binary = split_body(body, header_length)
    obj = _object(load_json(header), "the request body")
    req_id = obj.get("id", "")
    if not isinstance(req_id, str):
        raise RequestError(f"'id' must be a string, got {req_id!r}")
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    inputs, offset = [], 0
    for i, raw in enumerate(raw_inputs):
        raw = _object(raw, f"inputs[{i}]")
        name = raw.get("name")
        what = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str) or not name:
            raise RequestError(f"{what}: 'name' must be a non-empty string")
        datatype = check_datatype(raw.get("datatype"), what)
        shape = _shape(raw.get("shape"), what, limits)
        params = _parameters(raw, what)
        size = params.get("binary_data_size")
        if uses_shm(params):
            if "data" in raw or size is not None:
                raise RequestError(f"{what}: its data is in shared memory; send no 'data' or binary_data_size")
            data = (regions or SharedMemoryRegions()).read(params, datatype, shape, what)
        elif size is not None:
            if "data" in raw:
                raise RequestError(f"{what}: give either 'data' or parameters.binary_data_size, not both")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise RequestError(f"{what}: binary_data_size must be a whole number of bytes, got {size!r}")
            if offset + size > len(binary):
                raise RequestError(
                    f"{what}: binary_data_size {size} runs past the body: {len(binary) - offset} "
                    f"bytes remain after the JSON header and earlier inputs"
                )
            data = from_raw(binary[offset : offset + size], datatype, shape, what)
            offset += size
        elif "data" in raw:
            data = from_json(raw["data"], datatype, what)
        else:
            raise RequestError(f"{what}: no 'data' and no parameters.binary_data_size")
        inputs.append(InferInput(name, datatype, shape, data))
    if offset != len(binary):
        raise RequestError(
            f"{len(binary) - offset} bytes after the JSON header belong to no input: the inputs' "
            f"binary_data_size add up to {offset}"
        )
    outputs = []
    raw_outputs = obj.get("outputs", [])
    if not isinstance(raw_outputs, list):
        raise RequestError("'outputs' must be a list of {name, parameters}")
    for i, raw in enumerate(raw_outputs):
        raw = _object(raw, f"outputs[{i}]")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError(f"outputs[{i}]: 'name' must be a non-empty string")
        params = _parameters(raw, f"output {name!r}")
        binary_flag = params.get("binary_data")
        if binary_flag is not None and not isinstance(binary_flag, bool):
            raise RequestError(f"output {name!r}: binary_data must be true or false")
        outputs.append(RequestedOutput(name, binary_flag, params))
    params = _parameters(obj, "request")
    if not isinstance(params.get("binary_data_output", False), bool):
        raise RequestError("parameter binary_data_output must be true or false")
    return InferRequest(model, version, req_id, inputs, outputs, params)


def encode_response(
    resp: InferResponse, req: InferRequest, regions: SharedMemoryRegions | None = None
) -> tuple[bytes, dict[str, str]]:
    """The HTTP body and headers of an answer: JSON, or JSON header + binary outputs; an output asked for in
    shared memory is written there and answered with its region and size only."""
    default = bool(req.parameters.get("binary_data_output", False))
    asked = {o.name: o.binary for o in req.outputs}
    in_shm = {o.name: o.parameters for o in req.outputs if uses_shm(o.parameters)}
    outputs, chunks = [], []
    for out in resp.outputs:
        binary = asked.get(out.name)
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        if out.name in in_shm:
            params = in_shm[out.name]
            size = (regions or SharedMemoryRegions()).write(params, out.data, f"output {out.name!r}")
            entry["parameters"] = {REGION: params[REGION], BYTE_SIZE: size}
        elif binary if binary is not None else default:
            raw = to_raw(out.data)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = to_json(out.data, f"output {out.name!r}")
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": resp.model, "model_version": resp.version}
    if resp.id:  # as Triton: an empty id is left out
        doc["id"] = resp.id
    doc["outputs"] = outputs
    header = orjson.dumps(doc)
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return b"".join([header, *chunks]), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
