"""Reading a saved inference program (``.pdmodel``) without running Paddle.

Paddle Inference has no API for the declared input shapes or the op list, and a
corrupt file can take the process down inside C++. Parsing the ``ProgramDesc``
protobuf ourselves gives clean errors and the facts later stages need: feed and
fetch names, shapes and dtypes (serving configs), op types (INT8 detection, Lite
support checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from ..errors import ModelError

# framework.proto VarType.Type values -> numpy dtypes
_DTYPES = {
    0: np.bool_,
    1: np.int16,
    2: np.int32,
    3: np.int64,
    4: np.float16,
    5: np.float32,
    6: np.float64,
    20: np.uint8,
    21: np.int8,
}
QUANT_OP_TYPES = {
    "quantize_linear",
    "dequantize_linear",
    "fake_quantize_abs_max",
    "fake_channel_wise_quantize_abs_max",
    "fake_quantize_moving_average_abs_max",
    "fake_quantize_dequantize_moving_average_abs_max",
    "fake_dequantize_max_abs",
    "fake_channel_wise_dequantize_max_abs",
    "fake_quantize_range_abs_max",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic dims
    dtype: np.dtype

    def describe(self) -> str:
        return f"{self.name} {list(self.shape)} {np.dtype(self.dtype).name}"


def framework_pb2():
    from paddle.base.proto import framework_pb2  # heavy import, deferred

    return framework_pb2


def parse_program_bytes(data: bytes, label: str = "program"):
    """A serialized ``ProgramDesc``; a clear error naming ``label`` when it is not one."""
    prog = framework_pb2().ProgramDesc()
    try:
        prog.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(
            f"model file {label} is not a Paddle inference program (corrupt or truncated: {exc}); re-export the model"
        ) from exc
    return prog


def parse_program(model_file: Path | str):
    """The file's ``ProgramDesc`` message; a clear error when it is not an inference program."""
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ModelError(f"model file {model_file} does not exist")
    prog = parse_program_bytes(model_file.read_bytes(), str(model_file))
    if not prog.blocks or not any(op.type == "feed" for op in prog.blocks[0].ops):
        raise ModelError(
            f"model file {model_file} has no feed op: it is not a saved inference model "
            "(save it with paddle.jit.save or paddle.static.save_inference_model)"
        )
    return prog


def _var_spec(block, name: str) -> TensorSpec:
    for var in block.vars:
        if var.name == name:
            tensor = var.type.lod_tensor.tensor
            return TensorSpec(
                name, tuple(int(d) for d in tensor.dims), np.dtype(_DTYPES.get(tensor.data_type, np.float32))
            )
    raise ModelError(f"variable {name!r} is used by the program but not declared in it")


def _io_names(block, op_type: str, slot: str) -> list[str]:
    ops = [op for op in block.ops if op.type == op_type]

    def col(op) -> int:
        for attr in op.attrs:
            if attr.name == "col":
                return attr.i
        return 0

    names = []
    for op in sorted(ops, key=col):
        for var in op.outputs if op_type == "feed" else op.inputs:
            if var.parameter == slot:
                names.extend(var.arguments)
    return names


def feed_specs(prog) -> list[TensorSpec]:
    block = prog.blocks[0]
    return [_var_spec(block, n) for n in _io_names(block, "feed", "Out")]


def fetch_specs(prog) -> list[TensorSpec]:
    block = prog.blocks[0]
    return [_var_spec(block, n) for n in _io_names(block, "fetch", "X")]


def op_types(prog) -> list[str]:
    """Op types of every block, in program order, feed/fetch excluded."""
    return [op.type for block in prog.blocks for op in block.ops if op.type not in ("feed", "fetch")]


def is_quantized(prog) -> bool:
    return any(t in QUANT_OP_TYPES for t in op_types(prog))
