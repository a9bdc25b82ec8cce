"""Rewriting ``temporal_shift`` into standard ops, in a saved program.

Two measured reasons to do it:

* Paddle Lite 2.13rc0's ``temporal_shift`` kernels ignore the ``shift_ratio``
  attribute and always shift a quarter of the channels. PP-TSM and TSM use
  ``1/num_seg`` (0.125 for 8 segments), so their ``.nb`` files compute the wrong
  features, silently. The Lite packager rewrites every op whose ratio is not 0.25.
* On CPU, Paddle Inference runs ``temporal_shift`` outside oneDNN, so every one of
  PP-TSM R50's 16 shifts converts activations out of and back into oneDNN's
  blocked layout (and out of INT8). The rewritten ops stay inside oneDNN: PP-TSM
  R50 batch 1, 2 threads: FP32 735 -> 477 ms, INT8 462 -> 249 ms. The predictor
  rewrites in memory for CPU runs.

The rewrite works on the ``ProgramDesc`` protobuf directly, not through Paddle's
``Program`` API, whose static-graph mode is process-global and breaks in worker
threads (where servers build their predictors).

Each replaced op becomes what it means:

    x5  = reshape(x, [-1, T, C, H, W])
    out[:, t, :c1]   = x5[:, t-1, :c1]     (zero at t = 0)
    out[:, t, c1:c2] = x5[:, t+1, c1:c2]   (zero at t = T-1)
    out[:, t, c2:]   = x5[:, t, c2:]
    c1 = int(C * ratio), c2 = int(C * 2 * ratio)

built from reshape2, slice, scale (x0, for the zero frames) and concat, which Lite
supports on every target and oneDNN runs natively. The parameters are untouched
(no variable is persistable), so the ``.pdiparams`` file is used as it is. Paddle
Inference gives the same output before and after (tests check it bit for bit).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vslim.errors import ModelError

LITE_SHIFT_RATIO = 0.25  # what Lite computes whatever the attribute says


@dataclass
class ShiftOp:
    input: str
    seg_num: int
    shift_ratio: float
    channels: int
    data_format: str

    @property
    def needs_rewrite(self) -> bool:
        return abs(self.shift_ratio - LITE_SHIFT_RATIO) > 1e-9


@dataclass
class RewriteResult:
    ops: list[ShiftOp] = field(default_factory=list)
    rewritten: int = 0

    def to_dict(self) -> dict:
        return {
            "found": len(self.ops),
            "rewritten": self.rewritten,
            "shift_ratios": sorted({op.shift_ratio for op in self.ops}),
            "seg_nums": sorted({op.seg_num for op in self.ops}),
        }


# framework.proto enums
_ATTR_INT, _ATTR_FLOAT, _ATTR_STRING, _ATTR_INTS, _ATTR_BOOLEAN = 0, 1, 2, 3, 6


def _attr(op, name: str):
    for a in op.attrs:
        if a.name == name:
            return {_ATTR_INT: a.i, _ATTR_FLOAT: a.f, _ATTR_STRING: a.s, _ATTR_BOOLEAN: a.b}.get(a.type)
    return None


def _io(slots, name: str) -> list[str]:
    return next((list(v.arguments) for v in slots if v.parameter == name), [])


def _shift_ops(block) -> list[tuple[int, object, ShiftOp]]:
    dims = {v.name: list(v.type.lod_tensor.tensor.dims) for v in block.vars}
    found = []
    for index, op in enumerate(block.ops):
        if op.type == "temporal_shift":
            name = _io(op.inputs, "X")[0]
            shape = dims.get(name, [])
            found.append(
                (
                    index,
                    op,
                    ShiftOp(
                        name,
                        int(_attr(op, "seg_num")),
                        float(_attr(op, "shift_ratio")),
                        int(shape[1]) if len(shape) == 4 else -1,
                        _attr(op, "data_format") or "NCHW",
                    ),
                )
            )
    return found


def _parse(data: bytes):
    from .program import parse_program_bytes

    return parse_program_bytes(data)


def find_temporal_shifts(model_file: Path | str) -> list[ShiftOp]:
    data = Path(model_file).read_bytes()
    if b"temporal_shift" not in data:
        return []
    return [s for _, _, s in _shift_ops(_parse(data).blocks[0])]


class _OpBuilder:
    """Builds the ``OpDesc``/``VarDesc`` messages replacing one ``temporal_shift``."""

    def __init__(self, block, prefix: str, template_var):
        self.block, self.prefix, self.template = block, prefix, template_var
        self.ops: list = []

    def var(self, name: str, shape: list[int]) -> str:
        full = f"{self.prefix}.{name}"
        var = self.block.vars.add()
        var.CopyFrom(self.template)
        var.name = full
        var.persistable = False
        del var.type.lod_tensor.tensor.dims[:]
        var.type.lod_tensor.tensor.dims.extend(shape)
        return full

    def op(self, type_: str, inputs: dict, outputs: dict, attrs: dict) -> None:
        from .program import framework_pb2

        op = framework_pb2().OpDesc(type=type_)
        for slot, names in inputs.items():
            op.inputs.add(parameter=slot, arguments=names)
        for slot, names in outputs.items():
            op.outputs.add(parameter=slot, arguments=names)
        for name, value in attrs.items():
            a = op.attrs.add(name=name)
            if isinstance(value, bool):
                a.type, a.b = _ATTR_BOOLEAN, value
            elif isinstance(value, int):
                a.type, a.i = _ATTR_INT, value
            elif isinstance(value, float):
                a.type, a.f = _ATTR_FLOAT, value
            else:
                a.type = _ATTR_INTS
                a.ints.extend(int(v) for v in value)
        self.ops.append(op)

    def reshape(self, src: str, shape: list[int], out: str, xshape_shape: list[int]) -> str:
        xshape = self.var(f"{out.rsplit('.', 1)[-1]}_xshape", xshape_shape)
        self.op("reshape2", {"X": [src]}, {"Out": [out], "XShape": [xshape]}, {"shape": shape})
        return out

    def slice(self, src: str, name: str, axes, starts, ends, shape) -> str:
        out = self.var(name, shape)
        self.op(
            "slice",
            {"Input": [src]},
            {"Out": [out]},
            {"axes": axes, "starts": starts, "ends": ends, "infer_flags": [1] * len(axes), "decrease_axis": []},
        )
        return out

    def zeros_like(self, src: str, name: str, shape) -> str:
        out = self.var(name, shape)
        self.op("scale", {"X": [src]}, {"Out": [out]}, {"scale": 0.0, "bias": 0.0, "bias_after_scale": True})
        return out

    def concat(self, srcs: list[str], name: str, axis: int, shape) -> str:
        out = self.var(name, shape)
        self.op("concat", {"X": srcs}, {"Out": [out]}, {"axis": axis})
        return out


def _replacement(block, op, shift: ShiftOp, prefix: str, dims: dict, templates: dict) -> list:
    x, out = _io(op.inputs, "X")[0], _io(op.outputs, "Out")[0]
    _, C, H, W = [int(d) for d in dims[x]]
    T, r = shift.seg_num, shift.shift_ratio
    c1, c2 = int(C * r), int(C * 2 * r)
    b = _OpBuilder(block, prefix, templates[x])
    x5 = b.reshape(x, [-1, T, C, H, W], b.var("x5", [-1, T, C, H, W]), [0, -1, C, H, W])
    parts = []
    if c1 > 0:  # channels [0, c1) come from the previous frame
        prev = b.slice(x5, "a_prev", [1, 2], [0, 0], [T - 1, c1], [-1, T - 1, c1, H, W])
        zero = b.zeros_like(
            b.slice(x5, "a_first", [1, 2], [0, 0], [1, c1], [-1, 1, c1, H, W]), "a_zero", [-1, 1, c1, H, W]
        )
        parts.append(b.concat([zero, prev], "a", 1, [-1, T, c1, H, W]))
    if c2 > c1:  # channels [c1, c2) come from the next frame
        nxt = b.slice(x5, "b_next", [1, 2], [1, c1], [T, c2], [-1, T - 1, c2 - c1, H, W])
        zero = b.zeros_like(
            b.slice(x5, "b_last", [1, 2], [0, c1], [1, c2], [-1, 1, c2 - c1, H, W]), "b_zero", [-1, 1, c2 - c1, H, W]
        )
        parts.append(b.concat([nxt, zero], "b", 1, [-1, T, c2 - c1, H, W]))
    if C > c2:
        parts.append(b.slice(x5, "c", [2], [c2], [C], [-1, T, C - c2, H, W]))
    shifted = parts[0] if len(parts) == 1 else b.concat(parts, "out5", 2, [-1, T, C, H, W])
    b.reshape(shifted, [-1, C, H, W], out, [0, -1, T, C, H, W])
    return b.ops


def _check_rewritable(shift: ShiftOp, shape) -> None:
    if shift.data_format != "NCHW":
        raise ModelError(
            f"temporal_shift on {shift.input} uses data_format {shift.data_format}; the rewrite "
            "handles NCHW (PaddleVideo's export) only"
        )
    if len(shape) != 4 or any(int(d) <= 0 for d in shape[1:]):
        raise ModelError(
            f"temporal_shift on {shift.input} has shape {list(shape)}: the rewrite needs fixed "
            "channels, height and width; export with a fixed input size"
        )
    if shift.seg_num < 2:
        raise ModelError(f"temporal_shift on {shift.input} has seg_num {shift.seg_num}; nothing to shift")


def rewrite_program(data: bytes, all_ratios: bool = False) -> tuple[bytes, RewriteResult]:
    """A serialized program with its ``temporal_shift`` ops replaced (those Lite gets wrong, or all)."""
    result = RewriteResult()
    if b"temporal_shift" not in data:
        return data, result
    prog = _parse(data)
    block = prog.blocks[0]
    dims = {v.name: list(v.type.lod_tensor.tensor.dims) for v in block.vars}
    templates = {}
    for v in block.vars:  # standalone copies: the block's var list grows while we build
        templates[v.name] = type(v)()
        templates[v.name].CopyFrom(v)
    replacements = {}
    for index, op, shift in _shift_ops(block):
        result.ops.append(shift)
        if all_ratios or shift.needs_rewrite:
            _check_rewritable(shift, dims.get(shift.input, []))
            replacements[index] = _replacement(block, op, shift, f"vslim_tshift_{index}", dims, templates)
    if not replacements:
        return data, result
    ops = list(block.ops)
    del block.ops[:]
    for index, op in enumerate(ops):
        for new in replacements.get(index, [op]):
            block.ops.add().CopyFrom(new)
    result.rewritten = len(replacements)
    return prog.SerializeToString(), result


def rewrite_temporal_shift(
    model_file: Path | str,
    params_file: Path | str,
    out_dir: Path | str,
    model_name: str = "model",
    all_ratios: bool = False,
) -> RewriteResult:
    """Write a copy of the model with its ``temporal_shift`` ops replaced; returns what was found."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data, result = rewrite_program(Path(model_file).read_bytes(), all_ratios)
    (out_dir / f"{model_name}.pdmodel").write_bytes(data)
    shutil.copy2(params_file, out_dir / f"{model_name}.pdiparams")
    return result
