"""Paddle Serving as a front end of the shared server."""

from __future__ import annotations

from .. import Frontend
from . import grpc as grpc_api
from . import http as http_api

FRONTEND = Frontend(
    "paddle_serving",
    http_router=http_api.router,
    add_grpc=grpc_api.add_to_server,
    http_label=http_api.PROTOCOL,
    grpc_label=grpc_api.PROTOCOL,
    owns_path=lambda path: path.startswith(("/GeneralModelService/", "/video/")),
    grpc_prefix=f"/{grpc_api.SERVICE_NAME}/",
    grpc_methods=tuple(f"/{grpc_api.SERVICE_NAME}/{m}" for m in grpc_api.METHODS),
    describe=lambda m: "Paddle Serving GeneralModelService and /video/* (the default model)",
)
