"""Calibrating a many-image clip a few images at a time (TSN, PP-TSN: 25 segments x TenCrop = 250 images).

PaddleSlim's post-training calibration fetches every quantized op's input for a whole batch at
once: for a 250-image ResNet-50 clip that is about 70 MB per image, 18 GB for one clip (measured:
PTQ of PaddleVideo's PP-TSN was OOM-killed at 18.3 GB with a batch of one clip). The images of
such a clip are independent until the head's ``reshape2`` to ``[-1, 250, C]``: the backbone is a
2-D network run per image. So the program is calibrated with the clip's image count replaced by
a small chunk (the feed's shape and the ``reshape2`` shapes that carry it), fed chunks of each
clip's images, and the quantized program gets the original count back. Activation ranges of
per-image layers do not depend on how the images are grouped; those after the reshape do (the
consensus averages a chunk instead of the clip, and PaddleSlim also observes the outputs of
``reduce_mean``, ``matmul_v2`` and ``elementwise_add``), so that head is left unquantized:
``head_tensors`` names it for PaddleSlim's ``skip_tensor_list``, and the quantize/dequantize pairs
PaddleSlim still puts on those tensors (its inference pass ignores the skip list) are taken out
again. The head is one small matrix product per clip; INT8 would win nothing there.

Only programs whose other ops are per-image qualify (no ``temporal_shift``, 3-D convolution or
attention, which mix the images of a clip): anything else is calibrated whole, as before.
"""

from __future__ import annotations

from pathlib import Path

from vslim.data.clip_store import MAX_BATCH_ELEMENTS

# ops that treat each image on its own, or only reduce after the head's reshape
PER_IMAGE_OPS = {
    "feed",
    "fetch",
    "conv2d",
    "depthwise_conv2d",
    "batch_norm",
    "relu",
    "relu6",
    "leaky_relu",
    "hard_swish",
    "swish",
    "sigmoid",
    "hard_sigmoid",
    "elementwise_add",
    "elementwise_mul",
    "pool2d",
    "reshape2",
    "reduce_mean",
    "dropout",
    "matmul_v2",
    "matmul",
    "scale",
    "softmax",
    "flatten2",
    "flatten_contiguous_range",
    "squeeze2",
    "unsqueeze2",
    "mul",
    "fc",
}
# PaddleSlim holds ~70 MB per 224x224 image of a ResNet-50 while calibrating: 25 images stay under 2 GB
CALIBRATION_ELEMENTS = 25 * 3 * 224 * 224


def chunk_size(clip_shape) -> int | None:
    """Images per calibration chunk for a ``[T, 3, H, W]`` clip, or None when the clip is calibrated whole
    (small enough, or not a stack of images). The largest divisor of T within the budget."""
    if len(clip_shape) != 4 or clip_shape[1] != 3 or min(clip_shape) < 1:
        return None
    images, per_image = clip_shape[0], int(clip_shape[1] * clip_shape[2] * clip_shape[3])
    if images * per_image <= min(CALIBRATION_ELEMENTS, MAX_BATCH_ELEMENTS):
        return None
    fits = max(1, CALIBRATION_ELEMENTS // per_image)
    return max(d for d in range(1, min(fits, images) + 1) if images % d == 0)


def _dims(var) -> list[int]:
    return list(var.type.lod_tensor.tensor.dims) if var.type.HasField("lod_tensor") else []


def _retarget(prog, feed_name: str, old: int, new: int, only: dict | None = None) -> dict:
    """Replace the clip's image count ``old`` by ``new`` where it is the clip's: the feed and the
    ``reshape2`` ops (their ``shape`` attribute and the variables they write). ``only`` limits the change
    to the places a previous call named. Returns those places."""
    block = prog.blocks[0]
    places: dict[str, list[str]] = {"vars": [], "ops": []}
    targets = set(only["vars"]) if only else None
    for op in block.ops:
        if op.type != "reshape2":
            continue
        out = [a for slot in op.outputs for a in slot.arguments]
        if only and not set(out) & set(only["ops"]):
            continue
        for attr in op.attrs:
            if attr.name == "shape" and old in attr.ints:
                attr.ints[:] = [new if d == old else d for d in attr.ints]
                places["ops"].append(out[0])
                if targets is None:
                    places["vars"] += out
    if targets is None:
        targets = {feed_name, *places["vars"]}
    for var in block.vars:
        if var.name in targets and old in _dims(var):
            tensor = var.type.lod_tensor.tensor
            tensor.dims[:] = [new if d == old else d for d in tensor.dims]
            places["vars"].append(var.name)
    places["vars"] = sorted(set(places["vars"]))
    return places


def head_tensors(prog, places: dict) -> list[str]:
    """The inputs of every op downstream of the reshapes that carry the clip's image count: the ops whose
    activation ranges depend on how many images a batch holds."""
    block = prog.blocks[0]
    reached, inputs = set(places["ops"]), set()
    for op in block.ops:
        ins = {a for slot in op.inputs for a in slot.arguments}
        if ins & reached:
            inputs |= ins
            reached |= {a for slot in op.outputs for a in slot.arguments}
    return sorted(inputs)


def per_image_program(model_file: Path, feed_name: str, images: int, chunk: int):
    """The program with ``images`` per clip changed to ``chunk``, and the places changed; None when the
    program has an op that mixes a clip's images or carries the count elsewhere."""
    from vslim.inference.program import parse_program

    prog = parse_program(model_file)
    block = prog.blocks[0]
    if any(op.type not in PER_IMAGE_OPS for op in block.ops):
        return None
    for op in block.ops:
        for attr in op.attrs:
            if images in attr.ints and op.type != "reshape2":
                return None
    places = _retarget(prog, feed_name, images, chunk)
    if not places["ops"]:
        return None  # no reshape carries the count: not the layout this is for
    return prog, places


def _drop_quant_pairs(prog, tensors: set) -> None:
    """Remove ``quantize_linear`` -> ``dequantize_linear`` pairs on ``tensors``; their readers read the
    tensor itself again (the scale variables stay declared: the parameter file holds them)."""
    block = prog.blocks[0]
    quantized, restored, drop = {}, {}, []
    for i, op in enumerate(block.ops):
        ins = {slot.parameter: list(slot.arguments) for slot in op.inputs}
        outs = {slot.parameter: list(slot.arguments) for slot in op.outputs}
        if op.type == "quantize_linear" and ins.get("X", [None])[0] in tensors:
            quantized[outs["Y"][0]] = ins["X"][0]
            drop.append(i)
        elif op.type == "dequantize_linear" and ins.get("X", [None])[0] in quantized:
            restored[outs["Y"][0]] = quantized[ins["X"][0]]
            drop.append(i)
    for i in reversed(drop):
        del block.ops[i]
    for op in block.ops:
        for slot in op.inputs:
            slot.arguments[:] = [restored.get(a, a) for a in slot.arguments]


def restore_image_count(
    model_file: Path, feed_name: str, chunk: int, images: int, places: dict, head: list | None = None
) -> None:
    """Give the quantized program its clip's image count back, at exactly the places changed before, and
    leave the ``head`` tensors unquantized."""
    from vslim.inference.program import parse_program

    prog = parse_program(model_file)
    _retarget(prog, feed_name, chunk, images, only=places)
    _drop_quant_pairs(prog, set(head or ()))
    model_file.write_bytes(prog.SerializeToString())
