"""gRPC: Paddle Serving's ``GeneralModelService`` (inference, debug) and the standard health service."""
from __future__ import annotations

import time
from typing import Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vslim.errors import RequestError

from . import codec
from .auth import GrpcAuth
from .protos import service_pb2
from .service import ERR_NO, GRPC_STATUS, ModelService

SERVICE_NAME = "baidu.paddle_serving.predictor.general_model.GeneralModelService"


class GeneralModelServicer:
    """Handlers take the raw request bytes, so float payloads are viewed in place (see fastwire)."""

    def __init__(self, service: ModelService):
        self.service = service

    async def _answer(self, request: bytes, context, endpoint: str):
        start = time.perf_counter()
        try:
            resp = await self.service.infer(codec.parse_proto(request))
        except RequestError as exc:
            self.service.record("grpc", endpoint, start, exc)
            err_no = ERR_NO[exc.kind]
            # Status code and details for gRPC clients; err_no/err_msg as trailing metadata.
            await context.abort(getattr(grpc.StatusCode, GRPC_STATUS[exc.kind]), str(exc),
                                trailing_metadata=(("err_no", str(err_no)), ("err_msg", str(exc)[:4000])))
        self.service.record("grpc", endpoint, start)
        return resp

    async def inference(self, request, context):
        return await self._answer(request, context, "inference")

    async def debug(self, request, context):
        return await self._answer(request, context, "debug")


def make_grpc_server(service: ModelService, max_message_bytes: int, token: Optional[str] = None):
    """A ``grpc.aio`` server with the model service and health checking (NOT_SERVING until loaded)."""
    interceptors = [GrpcAuth(token, lambda: service.metrics.errors.labels("grpc", "unauthenticated").inc())] \
        if token else []
    server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ])
    servicer = GeneralModelServicer(service)
    handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name), request_deserializer=None,
                                                          response_serializer=service_pb2.Response.SerializeToString)
                for name in ("inference", "debug")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, health_servicer


async def set_health(health_servicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, status)
