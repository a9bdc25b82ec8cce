"""The v2 answers to a refused request: HTTP status with ``{"error": "..."}``, and gRPC status codes.

Two deliberate choices: malformed JSON is the client's error, 400 (Triton answers
500); a server or model that is not ready answers 503 (the specification asks for
a 4xx, Triton answers 400): 503 is what load balancers read as "try another
replica", and Kubernetes and KServe probes fail on any status >= 400 alike.
"""

from __future__ import annotations

import grpc

from ...errors import INTERNAL, INVALID, NOT_FOUND, TOO_LARGE, UNAUTHENTICATED, UNAVAILABLE, UNSUPPORTED

HTTP_STATUS = {
    INVALID: 400,
    NOT_FOUND: 404,
    TOO_LARGE: 413,
    UNSUPPORTED: 415,
    UNAUTHENTICATED: 401,
    UNAVAILABLE: 503,
    INTERNAL: 500,
}
GRPC_STATUS = {
    INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UNSUPPORTED: grpc.StatusCode.INVALID_ARGUMENT,
    UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    INTERNAL: grpc.StatusCode.INTERNAL,
}
