"""The v2 answers to a refused request: HTTP status with ``{"error": "..."}``, and gRPC status codes.

Where Triton and the specification differ, vslim follows the specification:
Triton answers malformed JSON with 500 and a server that is not ready with 400;
vslim says 400 and 503 (Kubernetes probes treat both as "not ready").
"""
from __future__ import annotations

import grpc

from ...errors import INTERNAL, INVALID, NOT_FOUND, TOO_LARGE, UNAUTHENTICATED, UNAVAILABLE, UNSUPPORTED

HTTP_STATUS = {INVALID: 400, NOT_FOUND: 404, TOO_LARGE: 413, UNSUPPORTED: 415, UNAUTHENTICATED: 401,
               UNAVAILABLE: 503, INTERNAL: 500}
GRPC_STATUS = {INVALID: grpc.StatusCode.INVALID_ARGUMENT, NOT_FOUND: grpc.StatusCode.NOT_FOUND,
               TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED, UNSUPPORTED: grpc.StatusCode.INVALID_ARGUMENT,
               UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED, UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
               INTERNAL: grpc.StatusCode.INTERNAL}
