"""TSM's temporal shift, rewritten in the converted ONNX graph so OpenVINO keeps its blocked layouts.

paddle2onnx writes Paddle's ``temporal_shift`` as

    x5 = Reshape(x, [-1, T, C, H, W]); p = Pad(x5, T by 1 on both sides)
    out = Reshape(Concat(Slice(p, t-1, :c1), Slice(p, t+1, c1:c2), Slice(p, t, c2:), axis=2), [-1, C, H, W])

and OpenVINO's CPU plugin runs every 5-D op there in a plain layout with reference kernels: each of PP-TSM
R50's 16 shifts converts the activations out of the convolutions' blocked layout and back. Measured on an
AMX Xeon, one thread, batch 1: 146 ms per clip in BF16, of which 51 ms reorders and 21 ms Pad/Slice/Concat;
F32 536 ms, 80 ms of it reorders. OpenVINO's own Paddle front end has no ``temporal_shift`` at all, so a
user's OpenVINO model is this graph.

The same shift without leaving 4-D ``[N*T, C, H, W]`` (frames of a clip are consecutive rows):

    a = Slice(x, channels :c1);  a' = Concat(zeros[1], a[:-1], axis=0) * first   (row i takes row i-1)
    b = Slice(x, channels c1:c2); b' = Concat(b[1:], zeros[1], axis=0) * last   (row i takes row i+1)
    out = Concat(a', b', Slice(x, channels c2:), axis=1)

where ``first``/``last`` are 0 on the rows where a clip starts/ends (the frame the shift would borrow from
belongs to the neighbouring clip, or to none) and 1 elsewhere: a ``[T, 1, 1, 1]`` constant tiled to the batch.
Multiplying by 1 or 0 and concatenating are exact, so outputs are bit-identical (tests compare them); the
same R50 runs in 95 ms BF16 (1.54x) and 473 ms F32 (1.13x). Any block of the pattern that does not match
exactly (other pads, strides, channel ranges that do not tile C in order) is left as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BIG = np.iinfo(np.int64).max  # ONNX Slice's "to the end"


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    found = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def _attr(node, name: str, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


class _Match:
    """One paddle2onnx temporal shift: its nodes, ``T, C, H, W`` and per channel range the frame offset."""

    def __init__(self, nodes: list, x: str, out: str, dims: tuple[int, int, int, int], parts: list):
        self.nodes, self.x, self.out, self.dims, self.parts = nodes, x, out, dims, parts


def _match(reshape, consts: dict, users: dict, made_by: dict) -> _Match | None:
    """The pattern starting at this Reshape, or None where anything differs from what paddle2onnx writes."""
    shape = consts.get(reshape.input[1]) if len(reshape.input) > 1 else None
    if shape is None or shape.ndim != 1 or len(shape) != 5 or min(int(d) for d in shape[1:]) <= 0:
        return None
    T, C, H, W = (int(d) for d in shape[1:])
    pads_users = users.get(reshape.output[0], [])
    if len(pads_users) != 1 or pads_users[0].op_type != "Pad":
        return None
    pad = pads_users[0]
    pads = consts.get(pad.input[1]) if len(pad.input) > 1 else None
    fill = consts.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
    if _attr(pad, "mode", b"constant") not in (b"constant", "constant") or pads is None or fill is None:
        return None
    pads = [int(p) for p in pads]
    if len(pads) != 10 or any(p for i, p in enumerate(pads) if i not in (1, 6)) or float(fill.ravel()[0]) != 0.0:
        return None
    before = pads[1]
    slices = users.get(pad.output[0], [])
    if not slices or any(s.op_type != "Slice" or len(users.get(s.output[0], [])) != 1 for s in slices):
        return None
    concat = users[slices[0].output[0]][0]
    if concat.op_type != "Concat" or _attr(concat, "axis") not in (2, -3) or len(concat.input) != len(slices):
        return None
    backs = users.get(concat.output[0], [])
    if len(backs) != 1 or backs[0].op_type != "Reshape":
        return None
    back = backs[0]
    target = consts.get(back.input[1])
    if target is None or [int(d) for d in target] != [-1, C, H, W]:
        return None
    parts, channel = [], 0
    for name in concat.input:
        s = made_by.get(name)
        if s is None or s not in slices or len(s.input) < 4 or any(consts.get(i) is None for i in s.input[1:]):
            return None
        starts, ends, axes = (consts[i].tolist() for i in s.input[1:4])
        steps = consts[s.input[4]].tolist() if len(s.input) > 4 and s.input[4] else [1] * len(axes)
        span = {(a + 5) % 5: (b, e) for a, b, e in zip(axes, starts, ends)}
        if any(st != 1 for st in steps) or set(span) - {1, 2} or 1 not in span or 2 not in span:
            return None
        (t0, t1), (c0, c1) = span[1], span[2]
        c1 = min(c1, C)
        offset = t0 - before
        if t1 - t0 != T or c0 != channel or c1 <= c0 or abs(offset) >= T:
            return None
        parts.append((c0, c1, offset))
        channel = c1
    if channel != C:
        return None
    return _Match([reshape, pad, *slices, concat, back], reshape.input[0], back.output[0], (T, C, H, W), parts)


def _replacement(m: _Match, k: int, add_constant) -> list:
    """The 4-D nodes computing ``m.out`` from ``m.x``."""
    from onnx import helper

    T, _, H, W = m.dims
    p = f"vslim_shift{k}"
    nodes, outs = [], []
    rows = np.arange(T)

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [f"{p}_{name}"], name=f"{p}_{name}", **attrs))
        return f"{p}_{name}"

    clips = None  # [N, 1, 1, 1] from x's first dimension, made once per shift when a part needs it
    for j, (c0, c1, offset) in enumerate(m.parts):
        part = node(
            "Slice",
            [m.x, add_constant(f"{p}_c{j}", [c0]), add_constant(f"{p}_e{j}", [c1]), add_constant(f"{p}_ax1", [1])],
            f"part{j}",
        )
        if offset == 0:
            outs.append(part)
            continue
        n = abs(offset)
        zeros = add_constant(f"{p}_zeros{j}", np.zeros([n, c1 - c0, H, W], np.float32))
        axis0 = add_constant(f"{p}_ax0", [0])
        if offset > 0:  # row i takes row i + offset
            kept = node(
                "Slice", [part, add_constant(f"{p}_from{n}", [n]), add_constant(f"{p}_end", [BIG]), axis0], f"kept{j}"
            )
            moved = node("Concat", [kept, zeros], f"moved{j}", axis=0)
        else:  # row i takes row i - n
            kept = node(
                "Slice", [part, add_constant(f"{p}_zero", [0]), add_constant(f"{p}_to{n}", [-n]), axis0], f"kept{j}"
            )
            moved = node("Concat", [zeros, kept], f"moved{j}", axis=0)
        if clips is None:
            shape = node("Shape", [m.x], "shape")
            rows_n = node("Slice", [shape, add_constant(f"{p}_zero", [0]), add_constant(f"{p}_one", [1])], "rows")
            count = node("Div", [rows_n, add_constant(f"{p}_T", [T])], "clips")
            clips = node("Concat", [count, add_constant(f"{p}_ones3", [1, 1, 1])], "repeats", axis=0)
        valid = ((rows + offset >= 0) & (rows + offset < T)).astype(np.float32).reshape(T, 1, 1, 1)
        mask = node("Tile", [add_constant(f"{p}_valid{j}", valid), clips], f"mask{j}")
        outs.append(node("Mul", [moved, mask], f"masked{j}"))
    nodes.append(helper.make_node("Concat", outs, [m.out], name=f"{p}_out", axis=1))
    return nodes


def rewrite_temporal_shifts(model) -> int:
    """Rewrite every paddle2onnx temporal shift of ``model`` (an ``onnx.ModelProto``) in place; the count."""
    from onnx import NodeProto, TensorProto, numpy_helper

    graph = model.graph
    if not graph.input or graph.input[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        return 0  # the zero frames are float32: activations of float32 models (QDQ INT8 ones included)
    nodes = list(graph.node)  # one wrapper per node, so identities below hold
    consts = _constants(graph)
    users: dict[str, list] = {}
    made_by: dict[str, Any] = {}
    for node in nodes:
        for name in node.input:
            users.setdefault(name, []).append(node)
        for name in node.output:
            made_by[name] = node
    added: dict[str, object] = {}

    def add_constant(name: str, value) -> str:
        if name not in added:
            array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=np.int64)
            added[name] = numpy_helper.from_array(array, name)
        return name

    matches = [m for node in nodes if node.op_type == "Reshape" for m in [_match(node, consts, users, made_by)] if m]
    if not matches:
        return 0
    replaced = {id(n) for m in matches for n in m.nodes}
    # the new nodes take the place of each pattern's last Reshape: x exists before it, out is used after it
    at = {id(m.nodes[-1]): _replacement(m, k, add_constant) for k, m in enumerate(matches)}
    # the shapes, pads and slice bounds only the replaced nodes read go with them (runtimes warn of unused ones)
    still_read = {i for node in nodes if id(node) not in replaced for i in node.input}
    still_read |= {o.name for o in graph.output}
    orphans = {
        id(made_by[i])
        for m in matches
        for n in m.nodes
        for i in n.input[1:]
        if i in made_by and made_by[i].op_type == "Constant" and i not in still_read
    }
    rewritten = []
    for node in nodes:
        if id(node) in at:
            rewritten.extend(at[id(node)])
        elif id(node) not in replaced and id(node) not in orphans:
            copy = NodeProto()
            copy.CopyFrom(node)
            rewritten.append(copy)
    gone = {o for m in matches for n in m.nodes[:-1] for o in n.output}
    keep_info = [v for v in graph.value_info if v.name not in gone]
    graph.ClearField("node")
    graph.node.extend(rewritten)
    graph.ClearField("value_info")
    graph.value_info.extend(keep_info)
    graph.initializer.extend(added.values())
    return len(matches)
