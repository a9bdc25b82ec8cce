"""gRPC: Paddle Serving's ``GeneralModelService`` (inference, debug), answered by the default model
(the protocol names none: ``--default-model``, or the only one served)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from ...service import Call
from . import codec
from .errors import ERR_NO, GRPC_STATUS
from .types import service_pb2

if TYPE_CHECKING:
    from ...repository import ModelRepository

SERVICE_NAME = "baidu.paddle_serving.predictor.general_model.GeneralModelService"
PROTOCOL = "grpc"  # the metrics label
METHODS = ("inference", "debug")


class GeneralModelServicer:
    """Handlers take the raw request bytes, so float payloads are viewed in place (see fastwire)."""

    def __init__(self, repo: ModelRepository):
        self.repo = repo

    async def _answer(self, request: bytes, context, endpoint: str):
        with Call(self.repo, PROTOCOL, endpoint, f"GeneralModelService/{endpoint}") as call:
            service = self.repo.default_service()
            with call.admit(service):
                wire = codec.parse_proto(request)
                feeds, fetch = codec.validate(wire, service.signature, service.limits)
                resp = codec.response(await service.run(feeds, fetch, PROTOCOL), service.signature, wire.log_id)
        if call.refusal is not None:
            exc = call.refusal
            # Status code and details for gRPC clients; err_no/err_msg as trailing metadata.
            await context.abort(
                getattr(grpc.StatusCode, GRPC_STATUS[exc.kind]),
                str(exc),
                trailing_metadata=(("err_no", str(ERR_NO[exc.kind])), ("err_msg", str(exc)[:4000])),
            )
        return resp

    async def inference(self, request, context):
        return await self._answer(request, context, "inference")

    async def debug(self, request, context):
        return await self._answer(request, context, "debug")


def add_to_server(server: grpc.aio.Server, repo: ModelRepository) -> list[str]:
    """Register the service; returns the names health checking reports for it."""
    servicer = GeneralModelServicer(repo)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=None,
            response_serializer=service_pb2.Response.SerializeToString,
        )
        for name in METHODS
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    return [SERVICE_NAME]
