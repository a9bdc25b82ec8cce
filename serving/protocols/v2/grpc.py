"""v2 over gRPC: ``inference.GRPCInferenceService`` on the same server as Paddle Serving's service.

Every handler receives the raw request bytes and parses them itself, so a
malformed message is INVALID_ARGUMENT with a message (gRPC's own deserializer
would answer INTERNAL). Inputs come as ``raw_input_contents`` or typed
``contents``; outputs always go back as ``raw_output_contents``, as Triton
answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from ...errors import NOT_FOUND, RequestError, unexpected
from ...protowire import take_len_fields
from ...service import Call
from ...signature import Limits
from .datatypes import BYTES, CONTENTS, DTYPES, check_datatype, check_size, from_raw, integers, to_raw
from .errors import GRPC_STATUS
from .messages import InferInput, InferRequest, InferResponse, RequestedOutput
from .models import V2Models, refuse_parameters, server_metadata
from .proto import RAW_INPUT_CONTENTS, SERVICE_NAME, parameter_value, pb, set_parameter
from .shm import BYTE_SIZE, REGION, SharedMemoryRegions, regions_of, uses_shm

if TYPE_CHECKING:
    from ...repository import ModelRepository

PROTOCOL = "v2-grpc"  # the metrics label
HEALTH_METHODS = tuple(f"/{SERVICE_NAME}/{m}" for m in ("ServerLive", "ServerReady", "ModelReady"))


# --------------------------------------------------------------------------- messages <-> requests


def _typed_values(t, datatype: str, what: str) -> np.ndarray:
    if datatype == "FP16":
        raise RequestError(f"{what}: FP16 has no typed contents field; send it in raw_input_contents")
    values = getattr(t.contents, CONTENTS[datatype])
    if datatype == BYTES:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    dtype = DTYPES[datatype]
    if dtype.kind in "iu":
        return integers(list(values), datatype, what)
    return np.array(values, dtype=dtype)


def parse_infer_request(body: bytes) -> tuple[Any, list[memoryview]]:
    """A serialized ``ModelInferRequest`` as the message without its ``raw_input_contents`` and those tensor
    bytes as views of ``body``: protobuf would copy each 4.8 MB clip twice (parse, then field access)."""
    try:
        rest, raws = take_len_fields(body, RAW_INPUT_CONTENTS)
    except ValueError:  # what the walk does not follow (groups, a cut field): protobuf parses it, or says why not
        msg = _parse(pb.ModelInferRequest, body)
        return msg, [memoryview(r) for r in msg.raw_input_contents]
    return _parse(pb.ModelInferRequest, rest), raws


def request_from_proto(
    msg, limits: Limits = Limits(), regions: SharedMemoryRegions | None = None, raw: Sequence | None = None
) -> InferRequest:
    """The request; inputs whose parameters name a shared memory region are read there (and take no
    ``raw_input_contents`` entry, as tritonclient sends them). ``raw``: the tensor bytes when
    ``parse_infer_request`` took them out of ``msg``."""
    raw = msg.raw_input_contents if raw is None else raw
    input_params = [{k: parameter_value(v) for k, v in t.parameters.items()} for t in msg.inputs]
    sent = sum(not uses_shm(p) for p in input_params)
    if raw and len(raw) != sent:
        raise RequestError(
            f"raw_input_contents holds {len(raw)} entries for {sent} inputs not in shared memory; "
            "send one per input, in input order"
        )
    inputs, next_raw = [], 0
    for t, params in zip(msg.inputs, input_params):
        what = f"input {t.name!r}"
        datatype = check_datatype(t.datatype, what)
        shape = list(t.shape)
        check_size(shape, limits, what)
        has_contents = t.HasField("contents") and t.contents.ByteSize()
        if uses_shm(params):
            if has_contents:
                raise RequestError(f"{what}: its data is in shared memory; send no contents for it")
            data = (regions or SharedMemoryRegions()).read(params, datatype, shape, what)
        elif raw:
            if has_contents:
                raise RequestError(f"{what}: both typed contents and raw_input_contents; send one of them")
            data = from_raw(raw[next_raw], datatype, shape, what)
            next_raw += 1
        else:
            data = _typed_values(t, datatype, what)
        inputs.append(InferInput(t.name, datatype, shape, data))
    outputs = [
        RequestedOutput(o.name, None, {k: parameter_value(v) for k, v in o.parameters.items()}) for o in msg.outputs
    ]
    params = {k: parameter_value(v) for k, v in msg.parameters.items()}
    return InferRequest(msg.model_name, msg.model_version, msg.id, inputs, outputs, params)


def response_to_proto(resp: InferResponse, req: InferRequest | None = None, regions: SharedMemoryRegions | None = None):
    """The response; an output asked for in shared memory is written there, answered with its region and size
    and an empty raw entry (so every output keeps its index in ``raw_output_contents``)."""
    msg = pb.ModelInferResponse(model_name=resp.model, model_version=resp.version, id=resp.id)
    in_shm = {o.name: o.parameters for o in req.outputs if uses_shm(o.parameters)} if req else {}
    for out in resp.outputs:
        tensor = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        if out.name in in_shm:
            params = in_shm[out.name]
            size = (regions or SharedMemoryRegions()).write(params, out.data, f"output {out.name!r}")
            set_parameter(tensor.parameters[REGION], params[REGION])
            set_parameter(tensor.parameters[BYTE_SIZE], size)
            msg.raw_output_contents.append(b"")
        else:
            msg.raw_output_contents.append(to_raw(out.data))
    return msg


# --------------------------------------------------------------------------- the service


class InferenceServicer:
    def __init__(self, repo: ModelRepository):
        self.repo = repo
        self.models = V2Models(repo)
        self.regions = regions_of(repo)

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.repo.ready)

    async def ModelReady(self, request, context):
        # an unknown model is an error (NOT_FOUND), not ready=false: Triton answers so
        try:
            model = self.models.get(request.name, request.version)
        except RequestError as exc:
            if exc.kind == NOT_FOUND:
                raise
            return pb.ModelReadyResponse(ready=False)  # loading
        return pb.ModelReadyResponse(ready=model.ready)

    async def ServerMetadata(self, request, context):
        return json_format.ParseDict(server_metadata(self.regions.allowed), pb.ServerMetadataResponse())

    async def ModelMetadata(self, request, context):
        return json_format.ParseDict(
            self.models.get(request.name, request.version).metadata(), pb.ModelMetadataResponse()
        )

    async def ModelConfig(self, request, context):
        config = json_format.ParseDict(self.models.get(request.name, request.version).config(), pb.ModelConfig())
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request, context):
        return json_format.ParseDict(
            {"model_stats": self.models.stats(request.name, request.version)}, pb.ModelStatisticsResponse()
        )

    async def RepositoryIndex(self, request, context):
        return json_format.ParseDict({"models": self.repo.index(request.ready)}, pb.RepositoryIndexResponse())

    async def RepositoryModelLoad(self, request, context):
        _no_parameters(request, "load")
        await self.repo.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        _no_parameters(request, "unload")
        await self.repo.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(self, raw: bytes, context):
        with Call(self.repo, PROTOCOL, "infer", "v2 gRPC ModelInfer") as call:
            request, tensors = parse_infer_request(raw)
            model = self.models.get(request.model_name, request.model_version)
            service = model.service
            with call.admit(service, model.kind):
                req = request_from_proto(request, service.limits, self.regions, tensors)
                decoded = time.perf_counter()
                answer = await model.infer(req, PROTOCOL)
                answered = time.perf_counter()
                resp = response_to_proto(answer, req, self.regions)
                stats = service.stats[model.kind]
                stats.spent("compute_input", decoded - call.start)
                stats.spent("compute_output", time.perf_counter() - answered)
        if call.refusal is not None:
            raise call.refusal
        return resp

    async def SystemSharedMemoryStatus(self, request, context):
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self.regions.status(request.name):
            response.regions[region["name"]].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(**region))
        return response

    async def SystemSharedMemoryRegister(self, request, context):
        self.regions.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(self, request, context):
        self.regions.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()


def _no_parameters(request, action: str) -> None:
    refuse_parameters(action, dict(request.parameters))


_REQUESTS = {
    "ServerLive": "ServerLiveRequest",
    "ServerReady": "ServerReadyRequest",
    "ModelReady": "ModelReadyRequest",
    "ServerMetadata": "ServerMetadataRequest",
    "ModelMetadata": "ModelMetadataRequest",
    "ModelInfer": "ModelInferRequest",
    "ModelConfig": "ModelConfigRequest",
    "ModelStatistics": "ModelStatisticsRequest",
    "RepositoryIndex": "RepositoryIndexRequest",
    "RepositoryModelLoad": "RepositoryModelLoadRequest",
    "RepositoryModelUnload": "RepositoryModelUnloadRequest",
    "SystemSharedMemoryStatus": "SystemSharedMemoryStatusRequest",
    "SystemSharedMemoryRegister": "SystemSharedMemoryRegisterRequest",
    "SystemSharedMemoryUnregister": "SystemSharedMemoryUnregisterRequest",
}
METHODS = tuple(_REQUESTS)


def _parse(request_type, raw: bytes):
    try:
        return request_type.FromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise RequestError(f"malformed {request_type.DESCRIPTOR.name}: {exc}") from exc


def _handler(method, request_type):
    """Parse the raw request (ModelInfer parses its own, to count refusals), run the method, and turn
    refusals into the v2 status codes."""

    async def handle(raw: bytes, context):
        try:
            return await method(raw if request_type is None else _parse(request_type, raw), context)
        except RequestError as exc:
            await context.abort(GRPC_STATUS[exc.kind], str(exc))
        except Exception as exc:
            refusal = unexpected(exc, f"v2 gRPC {method.__name__}")
            await context.abort(GRPC_STATUS[refusal.kind], str(refusal))

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=None, response_serializer=lambda m: m.SerializeToString()
    )


def add_to_server(server: grpc.aio.Server, repo: ModelRepository) -> list[str]:
    servicer = InferenceServicer(repo)
    handlers = {
        name: _handler(getattr(servicer, name), None if name == "ModelInfer" else getattr(pb, request))
        for name, request in _REQUESTS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    return [SERVICE_NAME]
