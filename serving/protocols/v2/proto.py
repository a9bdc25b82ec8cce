"""The generated v2 gRPC messages (``serving/proto/grpc_service.proto``) and their parameter values."""

from __future__ import annotations

from typing import Any

from ...generated import load

pb = load("grpc_service_pb2")
SERVICE_NAME = "inference.GRPCInferenceService"
# ModelInferRequest's tensor bytes: moved past protobuf, in place (serving/protowire.py)
RAW_INPUT_CONTENTS = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number


def parameter_value(p) -> Any:
    """The Python value of an ``InferParameter`` (whichever of its oneof fields is set)."""
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def set_parameter(p, value: Any) -> None:
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)
