"""Structured filter pruning of zoo models: which convs can be pruned, and applying a plan.

PaddleSlim's dygraph pruners follow channel dependencies through the ops they
know. Two things in TSM models break them (docs/architecture.md, Python stack): ``temporal_shift`` is
unknown to them, and pruning a conv whose channels reach the ``reshape`` before
the head breaks the classifier. So each conv's output is traced through the
channel-preserving ops after it (batch norm, activations, pooling, dropout): it is
prunable only if every path ends in another convolution; anything else (a
temporal shift, a residual add, the head's reshape) excludes it, with the reason.

A *plan* maps structured parameter names (``backbone.bb_0_0.conv0._conv.weight``)
to ratios. It is stored in ``vslim.json``, so a pruned model can be rebuilt from
the architecture: prune a fresh model by the plan, then load the pruned weights.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import dataclass, field

import paddle

from ..dy2static import forget_failed_traces
from ..errors import ModelError

PASS_THROUGH = {
    "batch_norm",
    "leaky_relu",
    "relu",
    "relu6",
    "swish",
    "hard_swish",
    "pool2d",
    "dropout",
    "scale",
    "sigmoid",
}
REASONS = {
    "temporal_shift": "feeds temporal_shift, which the pruner cannot follow",
    "elementwise_add": "feeds a residual add (its channels are tied to the whole residual stream)",
    "reshape2": "feeds the reshape before the head",
    "flatten_contiguous_range": "feeds a flatten",
    "matmul_v2": "feeds the classifier",
    "reduce_mean": "feeds the head's pooling",
}
PRUNERS = {"l1": "L1NormFilterPruner", "l2": "L2NormFilterPruner", "fpgm": "FPGMFilterPruner"}
# PaddleSlim traces the model with a constant input, which static Paddle refuses above about
# a million elements (an R50 clip at 224 has 1.2M); channel groups do not depend on the
# spatial size, so the trace runs on a smaller image (64 still leaves 2x2 after the /32 stem).
GRAPH_SIDE = 64


@dataclass
class PrunableLayers:
    prunable: list[str] = field(default_factory=list)  # structured weight names
    excluded: dict[str, str] = field(default_factory=dict)  # structured weight name -> reason


def _static_ops(model: paddle.nn.Layer, input_shape: list[int]):
    spec = [paddle.static.InputSpec([None, *input_shape[1:]], "float32", "x")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    forget_failed_traces()
    program = static.forward.concrete_program.main_program
    return program.global_block().ops


def analyse(model: paddle.nn.Layer, input_shape: list[int]) -> PrunableLayers:
    """Which conv weights can lose output filters without breaking the model, and why not the others."""
    was_training = model.training
    model.eval()
    try:
        ops = _static_ops(model, input_shape)
    finally:
        if was_training:
            model.train()
    by_param = {p.name: name for name, p in model.named_parameters()}
    consumers: dict[str, list] = {}
    for op in ops:
        for name in op.input_arg_names:
            consumers.setdefault(name, []).append(op)
    result = PrunableLayers()
    for op in ops:
        if op.type not in ("conv2d", "depthwise_conv2d"):
            continue
        weight = by_param.get(op.input("Filter")[0])
        if weight is None:
            continue
        reason = _trace(op.output("Output")[0], consumers)
        if reason is None:
            result.prunable.append(weight)
        else:
            result.excluded[weight] = reason
    return result


def _trace(var: str, consumers: dict, depth: int = 0) -> str | None:
    """None when every path from ``var`` reaches a convolution through channel-preserving ops."""
    users = consumers.get(var, [])
    if not users:
        return "is a model output"
    for op in users:
        if op.type in ("conv2d", "depthwise_conv2d") and var in op.input("Input"):
            continue
        if op.type in PASS_THROUGH and depth < 32:
            out_slot = "Y" if op.type == "batch_norm" else "Out"
            reason = _trace(op.output(out_slot)[0], consumers, depth + 1)
            if reason:
                return reason
            continue
        return REASONS.get(op.type, f"feeds {op.type}")
    return None


def _pruner(model: paddle.nn.Layer, input_shape: list[int], criterion: str):
    import paddleslim.dygraph as dygraph

    quiet_paddleslim()
    if criterion not in PRUNERS:
        raise ModelError(f"unknown pruning criterion {criterion!r}; use {', '.join(PRUNERS)}")
    *lead, height, width = input_shape
    graph_shape = [*lead, min(height, GRAPH_SIDE), min(width, GRAPH_SIDE)]
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(dygraph, PRUNERS[criterion])(model, graph_shape)


def prune(model: paddle.nn.Layer, ratios: dict[str, float], input_shape: list[int], criterion: str = "l1") -> None:
    """Prune ``model`` in place: ``ratios`` maps structured weight names to the fraction of filters to cut."""
    params = dict(model.named_parameters())
    unknown = [k for k in ratios if k not in params]
    if unknown:
        raise ModelError(f"pruning plan names {unknown[0]!r}, which this model does not have")
    ratios = {params[k].name: float(r) for k, r in ratios.items() if r > 0}
    if not ratios:
        return
    pruner = _pruner(model, input_shape, criterion)
    with contextlib.redirect_stdout(io.StringIO()):
        pruner.prune_vars(ratios, axis=0)
    _drop_backups(model)


def _drop_backups(model: paddle.nn.Layer) -> None:
    """PaddleSlim keeps each pruned tensor's original values as a ``*_backup`` buffer (for ``restore``).

    They are not weights: named after global parameter names, they make state dicts
    differ between processes, and they carry the whole unpruned model along.
    """
    for _, layer in model.named_sublayers(include_self=True):
        for name in [n for n in layer._buffers if n.endswith("_backup")]:
            del layer._buffers[name]


def apply_plan(model: paddle.nn.Layer, plan: dict, fold=None) -> None:
    """Give a fresh model the shapes of a pruned one (then load the pruned weights into it).

    A plan made on a folded model (``"folded": true``, PP-TSMv2) is applied after ``fold``, the
    architecture's ``before_export``, since the pruned names and shapes are those of the folded form.
    """
    if plan.get("folded"):
        if fold is None:
            raise ModelError(
                "this pruning plan was made on a folded (re-parameterised) model, and the "
                "architecture has no folding step"
            )
        fold(model)
    prune(model, plan["ratios"], plan["input_shape"], plan.get("criterion", "l1"))


def flops(model: paddle.nn.Layer, input_shape: list[int]) -> int:
    """FLOPs of one forward pass; counted on a copy, since ``paddle.flops`` leaves buffers on the layers."""
    with contextlib.redirect_stdout(io.StringIO()):
        return int(paddle.flops(copy.deepcopy(model), input_shape, print_detail=False))


def quiet_paddleslim() -> None:
    """PaddleSlim logs every pruned variable at INFO; keep its errors only."""
    for name in list(logging.root.manager.loggerDict):
        if "paddleslim" in name:
            logging.getLogger(name).setLevel(logging.ERROR)


def param_count(model: paddle.nn.Layer) -> int:
    return int(sum(p.size for p in model.parameters()))
