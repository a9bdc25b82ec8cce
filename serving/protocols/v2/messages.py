"""A v2 inference request and response, whichever transport (HTTP JSON, HTTP binary, gRPC) carried them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray  # flat; BYTES: an object array of bytes


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # HTTP only: the output's own binary_data parameter
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    model: str
    version: str = ""
    id: str = ""
    inputs: list[InferInput] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)  # empty: every output
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferOutput:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray


@dataclass
class InferResponse:
    model: str
    version: str
    id: str
    outputs: list[InferOutput]
