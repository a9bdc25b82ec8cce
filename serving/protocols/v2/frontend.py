"""The Open Inference Protocol as a front end of the shared server."""

from __future__ import annotations

import re

from .. import Frontend
from . import grpc as grpc_api
from . import http as http_api

# health stays open without a token (orchestrators probe it); metadata and inference do not
_OPEN = re.compile(r"/v2/health/(live|ready)|/v2/models/[^/]+(/versions/[^/]+)?/ready")

FRONTEND = Frontend(
    "v2",
    http_router=http_api.router,
    add_grpc=grpc_api.add_to_server,
    http_label=http_api.PROTOCOL,
    grpc_label=grpc_api.PROTOCOL,
    owns_path=lambda path: path == "/v2" or path.startswith("/v2/"),
    grpc_prefix=f"/{grpc_api.SERVICE_NAME}/",
    grpc_methods=tuple(f"/{grpc_api.SERVICE_NAME}/{m}" for m in grpc_api.METHODS),
    open_http=lambda path: _OPEN.fullmatch(path) is not None,
    open_grpc=grpc_api.HEALTH_METHODS,
    describe=lambda m: f"v2 /v2/models/{m} (tensors) and {m}_video (video files or frames)",
)
