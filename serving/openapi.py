"""OpenAPI pieces every protocol's routes share: which statuses an endpoint answers, and why.

Documenting every status (not only 200) lets clients, and schema-driven testers
such as schemathesis, know each answer the server can give. 401 applies only
when the server runs with ``--auth-token-file``.
"""
from __future__ import annotations

WHY = {400: "malformed request: the message names the field", 401: "missing or wrong bearer token",
       404: "unknown model or version", 413: "body, decompressed body or batch over the server's limits",
       415: "Content-Type or Content-Encoding the endpoint does not take", 500: "inference failed",
       503: "model not loaded yet, or the server is draining"}
JSON_ANY = {"application/json": {"schema": {"type": "object"}}}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
BINARY = {"schema": {"type": "string", "format": "binary"}}


def responses(codes, content=None) -> dict:
    """``responses=`` for a route: each status in ``codes`` with its reason."""
    return {code: {"description": WHY[code], "content": content or JSON_ANY} for code in codes}
