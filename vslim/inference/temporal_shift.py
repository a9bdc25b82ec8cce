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

import contextlib
import shutil
import threading
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
        return {"found": len(self.ops), "rewritten": self.rewritten,
                "shift_ratios": sorted({op.shift_ratio for op in self.ops}),
                "seg_nums": sorted({op.seg_num for op in self.ops})}


_STATIC_LOCK = threading.Lock()


@contextlib.contextmanager
def _static_mode():
    """Paddle's static mode is process-global: enter it under a lock and restore what was there."""
    import paddle

    with _STATIC_LOCK:
        was_dynamic = paddle.in_dynamic_mode()
        if was_dynamic:
            paddle.enable_static()
        try:
            yield
        finally:
            if was_dynamic:
                paddle.disable_static()


def _program(data: bytes):
    import paddle

    return paddle.static.Program.parse_from_string(data)


def _shift_ops(block) -> list[tuple[int, object, ShiftOp]]:
    found = []
    for index, op in enumerate(block.ops):
        if op.type == "temporal_shift":
            name = op.input("X")[0]
            shape = list(block.var(name).shape)
            found.append((index, op, ShiftOp(name, int(op.attr("seg_num")), float(op.attr("shift_ratio")),
                                             int(shape[1]) if len(shape) == 4 else -1,
                                             op.attr("data_format") if op.has_attr("data_format") else "NCHW")))
    return found


def find_temporal_shifts(model_file: Path | str) -> list[ShiftOp]:
    data = Path(model_file).read_bytes()
    if b"temporal_shift" not in data:
        return []
    with _static_mode():
        return [s for _, _, s in _shift_ops(_program(data).global_block())]


class _OpBuilder:
    """Queues ops (and creates their output variables) for one replaced ``temporal_shift``."""

    def __init__(self, block, prefix: str, dtype):
        self.block, self.prefix, self.dtype = block, prefix, dtype
        self.ops: list[tuple[str, dict, dict, dict]] = []

    def var(self, name: str, shape: list[int]) -> str:
        full = f"{self.prefix}.{name}"
        self.block.create_var(name=full, shape=shape, dtype=self.dtype)
        return full

    def reshape(self, src: str, shape: list[int], out: str, xshape_shape: list[int]) -> str:
        xshape = self.var(f"{out.rsplit('.', 1)[-1]}_xshape", xshape_shape)
        self.ops.append(("reshape2", {"X": [src]}, {"Out": [out], "XShape": [xshape]}, {"shape": shape}))
        return out

    def slice(self, src: str, name: str, axes, starts, ends, shape) -> str:
        out = self.var(name, shape)
        self.ops.append(("slice", {"Input": [src]}, {"Out": [out]},
                         {"axes": axes, "starts": starts, "ends": ends, "infer_flags": [1] * len(axes),
                          "decrease_axis": []}))
        return out

    def zeros_like(self, src: str, name: str, shape) -> str:
        out = self.var(name, shape)
        self.ops.append(("scale", {"X": [src]}, {"Out": [out]}, {"scale": 0.0, "bias": 0.0, "bias_after_scale": True}))
        return out

    def concat(self, srcs: list[str], name: str, axis: int, shape) -> str:
        out = self.var(name, shape)
        self.ops.append(("concat", {"X": srcs}, {"Out": [out]}, {"axis": axis}))
        return out


def _replacement(block, op, shift: ShiftOp, prefix: str) -> list[tuple[str, dict, dict, dict]]:
    x, out = op.input("X")[0], op.output("Out")[0]
    var = block.var(x)
    _, C, H, W = [int(d) for d in var.shape]
    T, r = shift.seg_num, shift.shift_ratio
    c1, c2 = int(C * r), int(C * 2 * r)
    b = _OpBuilder(block, prefix, var.dtype)
    x5 = b.reshape(x, [-1, T, C, H, W], b.var("x5", [-1, T, C, H, W]), [0, -1, C, H, W])
    parts = []
    if c1 > 0:  # channels [0, c1) come from the previous frame
        prev = b.slice(x5, "a_prev", [1, 2], [0, 0], [T - 1, c1], [-1, T - 1, c1, H, W])
        zero = b.zeros_like(b.slice(x5, "a_first", [1, 2], [0, 0], [1, c1], [-1, 1, c1, H, W]), "a_zero",
                            [-1, 1, c1, H, W])
        parts.append(b.concat([zero, prev], "a", 1, [-1, T, c1, H, W]))
    if c2 > c1:  # channels [c1, c2) come from the next frame
        nxt = b.slice(x5, "b_next", [1, 2], [1, c1], [T, c2], [-1, T - 1, c2 - c1, H, W])
        zero = b.zeros_like(b.slice(x5, "b_last", [1, 2], [0, c1], [1, c2], [-1, 1, c2 - c1, H, W]), "b_zero",
                            [-1, 1, c2 - c1, H, W])
        parts.append(b.concat([nxt, zero], "b", 1, [-1, T, c2 - c1, H, W]))
    if C > c2:
        parts.append(b.slice(x5, "c", [2], [c2], [C], [-1, T, C - c2, H, W]))
    shifted = parts[0] if len(parts) == 1 else b.concat(parts, "out5", 2, [-1, T, C, H, W])
    b.reshape(shifted, [-1, C, H, W], out, [0, -1, T, C, H, W])
    return b.ops


def _check_rewritable(shift: ShiftOp, shape) -> None:
    if shift.data_format != "NCHW":
        raise ModelError(f"temporal_shift on {shift.input} uses data_format {shift.data_format}; the rewrite "
                         "handles NCHW (PaddleVideo's export) only")
    if len(shape) != 4 or any(int(d) <= 0 for d in shape[1:]):
        raise ModelError(f"temporal_shift on {shift.input} has shape {list(shape)}: the rewrite needs fixed "
                        "channels, height and width; export with a fixed input size")
    if shift.seg_num < 2:
        raise ModelError(f"temporal_shift on {shift.input} has seg_num {shift.seg_num}; nothing to shift")


def rewrite_program(data: bytes, all_ratios: bool = False) -> tuple[bytes, RewriteResult]:
    """A serialized program with its ``temporal_shift`` ops replaced (those Lite gets wrong, or all)."""
    result = RewriteResult()
    if b"temporal_shift" not in data:
        return data, result
    with _static_mode():
        program = _program(data)
        block = program.global_block()
        # Walk backwards so indices of earlier ops stay valid while inserting.
        for index, op, shift in reversed(_shift_ops(block)):
            result.ops.insert(0, shift)
            if not (all_ratios or shift.needs_rewrite):
                continue
            _check_rewritable(shift, block.var(shift.input).shape)
            ops = _replacement(block, op, shift, f"vslim_tshift_{index}")
            block._remove_op(index)
            for k, (type_, inputs, outputs, attrs) in enumerate(ops):
                block._insert_op(index + k, type=type_, inputs=inputs, outputs=outputs, attrs=attrs)
            result.rewritten += 1
        return (program.desc.serialize_to_string() if result.rewritten else data), result


def rewrite_temporal_shift(model_file: Path | str, params_file: Path | str, out_dir: Path | str,
                           model_name: str = "model", all_ratios: bool = False) -> RewriteResult:
    """Write a copy of the model with its ``temporal_shift`` ops replaced; returns what was found."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data, result = rewrite_program(Path(model_file).read_bytes(), all_ratios)
    (out_dir / f"{model_name}.pdmodel").write_bytes(data)
    shutil.copy2(params_file, out_dir / f"{model_name}.pdiparams")
    return result
