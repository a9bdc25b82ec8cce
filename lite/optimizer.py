"""Driving ``paddle_lite_opt`` in a subprocess and reading what it did.

The optimizer aborts or segfaults on bad input instead of raising (a missing file,
an unsupported op, ``flatten_contiguous_range`` on x86), so it always runs in a
child process and every failure becomes a :class:`LiteError` naming the cause.
What it chose is read back from its own outputs: the op-support table of
``--print_model_ops``, the per-op kernel attribute of a protobuf-format optimized
program (``conv2d/int8_out/4/2/1``: op/alias/target/precision/layout), and the
op nodes its model viewer writes for a ``.nb`` file.
"""

from __future__ import annotations

import re
import struct
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vslim.inference.program import QUANT_OP_TYPES

from .errors import LiteError
from .toolchain import Toolchain

KNOWN_TARGETS = ("arm", "x86", "opencl", "metal", "xpu", "nnadapter", "host")
KERNEL_ATTR = "__@kernel_type_attr@__"
TARGET_NAMES = {
    1: "host",
    2: "x86",
    3: "cuda",
    4: "arm",
    5: "opencl",
    6: "any",
    7: "fpga",
    8: "npu",
    9: "xpu",
    10: "bm",
    11: "mlu",
    12: "rknpu",
    13: "apu",
    14: "huawei_ascend_npu",
    15: "imagination_nna",
    16: "intel_fpga",
    17: "metal",
    18: "nnadapter",
}
PRECISION_NAMES = {
    0: "unk",
    1: "float",
    2: "int8",
    3: "int32",
    4: "any",
    5: "fp16",
    6: "bool",
    7: "int64",
    8: "int16",
    9: "uint8",
    10: "fp64",
}
FLATTEN_OP = "flatten_contiguous_range"
QUANT_FOLDED = "folded by quantization passes"


def parse_targets(spec: str) -> list[str]:
    """``"arm,opencl"`` -> ``["arm", "opencl"]``; unknown names are an error naming the known ones."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise LiteError("empty target; use arm, x86 or arm,opencl")
    unknown = [p for p in parts if p not in KNOWN_TARGETS]
    if unknown:
        raise LiteError(
            f"unknown Lite target {unknown[0]!r}; known targets: {', '.join(KNOWN_TARGETS)} "
            "(combine with commas, e.g. arm,opencl)"
        )
    return parts


@dataclass
class OpSupport:
    """The optimizer's verdict on a model's ops for one target spec."""

    target: str
    columns: list[str]
    ops: dict[str, list[str]]  # op -> columns (kARM, kHost, ...) that support it
    unsupported: list[str]

    def to_dict(self) -> dict:
        return {"columns": self.columns, "ops": self.ops, "unsupported": self.unsupported}


def _fail(what: str, proc, extra: str = "") -> LiteError:
    lines = [ln for ln in (proc.stdout + "\n" + proc.stderr).splitlines() if ln.strip()]
    code = proc.returncode
    how = f"crashed with signal {-code}" if code < 0 else f"exited with {code}"
    if code in (134, 139):
        how = f"crashed ({'SIGABRT' if code == 134 else 'SIGSEGV'})"
    tail = " | ".join(lines[-4:])
    hint = (
        (
            ". The optimizer cannot take this model; what works for it instead: a serving bundle "
            "(vslim-package --target serving) or ONNX (--target onnx) for the device's own runtime"
        )
        if code < 0 or code in (134, 139)
        else ""
    )
    return LiteError(f"Paddle Lite optimizer {how} while {what}{extra}: {tail}{hint}")


def check_ops(tc: Toolchain, model_file: Path, params_file: Path, target: str) -> OpSupport:
    proc = tc.run_opt(
        [
            f"--model_file={model_file}",
            f"--param_file={params_file}",
            "--print_model_ops=true",
            f"--valid_targets={target}",
        ],
        timeout=600,
    )
    text = proc.stdout + "\n" + proc.stderr
    lines = text.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if "OP_name" in ln)
    except StopIteration:
        raise _fail(f"listing the model's ops for {target}", proc) from None
    header = lines[start].split()
    columns = header[1:]
    positions = [lines[start].index(c) for c in columns]
    ops: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(("Paddle-Lite", "Error")):
            break
        name = line.split()[0]
        supported = [
            c for c, pos in zip(columns, positions) if len(line) > pos + len(c) - 1 and "Y" in line[pos : pos + len(c)]
        ]
        ops[name] = supported
    m = re.search(r"These unsupported ops are: (.*?)\.?$", text, re.MULTILINE)
    # the optimizer quotes the list, sometimes as one string: 'conv3d, pool3d'
    unsupported = [
        op.strip()
        for quoted in (re.findall(r"'([^']+)'", m.group(1)) if m else [])
        for op in quoted.split(",")
        if op.strip()
    ]
    unsupported += [op for op, cols in ops.items() if not cols and op not in unsupported]
    # quantize/dequantize ops have no kernels: the optimizer folds them into INT8 kernels and calib ops.
    for op in [o for o in unsupported if o in QUANT_OP_TYPES]:
        unsupported.remove(op)
        ops[op] = [QUANT_FOLDED]
    return OpSupport(target, columns, ops, list(dict.fromkeys(unsupported)))  # each op named once


def optimize(
    tc: Toolchain,
    model_file: Path,
    params_file: Path,
    out_prefix: Path,
    target: str,
    out_type: str = "naive_buffer",
    quant_type: str | None = None,
    enable_fp16: bool = False,
    model_ops: list[str] | None = None,
) -> Path:
    """Run the optimizer; returns the written ``.nb`` file (or protobuf folder)."""
    args = [
        f"--model_file={model_file}",
        f"--param_file={params_file}",
        f"--optimize_out_type={out_type}",
        f"--optimize_out={out_prefix}",
        f"--valid_targets={target}",
    ]
    if quant_type:
        args += ["--quant_model=true", f"--quant_type=QUANT_{quant_type.upper()}"]
    if enable_fp16:
        args.append("--enable_fp16=true")
    proc = tc.run_opt(args)
    out = Path(f"{out_prefix}.nb") if out_type == "naive_buffer" else Path(out_prefix)
    if proc.returncode != 0 or not out.exists():
        extra = ""
        if "x86" in target and model_ops and FLATTEN_OP in model_ops:
            extra = (
                f" (the model contains {FLATTEN_OP}, which crashes Lite 2.13's x86 optimizer: export with "
                "paddle.reshape instead of paddle.flatten, or build only for arm)"
            )
        raise _fail(f"optimizing for {target}", proc, extra)
    return out


def kernel_summary(tc: Toolchain, model_file: Path, params_file: Path, target: str, **kwargs) -> dict:
    """Kernels the optimizer picks for ``target``: counts per kernel, and how many run int8."""
    from vslim.inference.program import parse_program_bytes

    with tempfile.TemporaryDirectory(prefix="vslim-lite-kernels-") as tmp:
        folder = optimize(tc, model_file, params_file, Path(tmp) / "pb", target, out_type="protobuf", **kwargs)
        prog = parse_program_bytes((folder / "model").read_bytes(), str(folder / "model"))
    kernels = []
    for op in prog.blocks[0].ops:
        kernel = next((a.s for a in op.attrs if a.name == KERNEL_ATTR), None)
        if kernel and op.type not in ("feed", "fetch"):
            kernels.append((op.type, kernel))
    return _summarize(kernels)


def _summarize(kernels: list[tuple[str, str]]) -> dict:
    """Counts per kernel (``conv2d/int8_out (arm, int8)``), per precision, and the targets they run on."""
    counts: Counter = Counter()
    precisions: Counter = Counter()
    targets: set = set()
    for op_type, kernel in kernels:
        parts = kernel.split("/")
        target_name = TARGET_NAMES.get(int(parts[2]), parts[2]) if len(parts) >= 5 else "?"
        precision = PRECISION_NAMES.get(int(parts[3]), parts[3]) if len(parts) >= 5 else "?"
        counts[f"{op_type}/{parts[1]} ({target_name}, {precision})"] += 1
        precisions[precision] += 1
        targets.add(target_name)
    return {
        "kernels": dict(sorted(counts.items())),
        "by_precision": dict(precisions),
        "int8_kernels": precisions.get("int8", 0),
        "total_kernels": sum(precisions.values()),
        "targets": [t for t in KNOWN_TARGETS if t in targets and t != "host"],
    }


# In a .nb topology every op carries its kernel as a string attribute: "conv2d/int8_out/4/2/1".
_NB_KERNEL = re.compile(rb"([a-z][a-z0-9_]*)/([A-Za-z0-9_]+)/(\d{1,3})/(\d{1,3})/(\d{1,3})")
HEADER_BYTES = 26
VERSION_FIELD = slice(2, 18)


def nb_kernels(nb: Path) -> dict:
    """The kernels a ``.nb`` file holds, read from its topology without running anything.

    Adds ``precision``: int8 when any kernel runs int8, fp16 when any runs fp16, else fp32.
    """
    header = nb_header(nb)
    topology = Path(nb).read_bytes()[HEADER_BYTES : HEADER_BYTES + header["topology_bytes"]]
    found = [(m.group(1).decode(), m.group(0).decode()) for m in _NB_KERNEL.finditer(topology)]
    if not found or len(found) != topology.count(KERNEL_ATTR.encode()):
        raise LiteError(
            f"cannot read the kernels of {Path(nb).name}: {len(found)} kernel names for "
            f"{topology.count(KERNEL_ATTR.encode())} kernel attributes in its topology"
        )
    summary = _summarize([(op, k) for op, k in found if op not in ("feed", "fetch")])
    by = summary["by_precision"]
    summary["precision"] = "int8" if by.get("int8") else "fp16" if by.get("fp16") else "fp32"
    return summary


def nb_digest(nb: Path) -> str:
    """SHA-256 of a ``.nb`` without its version field: the optimizer leaves stray bytes after the version string,
    so two runs on the same model differ only there."""
    import hashlib

    data = bytearray(Path(nb).read_bytes())
    data[VERSION_FIELD] = bytes(VERSION_FIELD.stop - VERSION_FIELD.start)
    return hashlib.sha256(bytes(data)).hexdigest()


def nb_header(path: Path) -> dict:
    """The ``.nb`` header: meta version, the optimizer version that wrote it, topology size."""
    data = Path(path).read_bytes()[:26]
    if len(data) < 26:
        raise LiteError(f"{path} is too short to be a Paddle Lite .nb file")
    meta_version = struct.unpack("<H", data[:2])[0]
    version = data[2:18].split(b"\0", 1)[0].decode("ascii", "replace")
    topology = struct.unpack("<Q", data[18:26])[0]
    size = Path(path).stat().st_size
    if meta_version != 2 or not version.startswith("v") or topology <= 0 or topology > size:
        raise LiteError(
            f"{path} does not look like a Paddle Lite naive-buffer model (meta {meta_version}, "
            f"version {version!r}, topology {topology} of {size} bytes)"
        )
    return {"meta_version": meta_version, "optimizer_version": version, "topology_bytes": topology, "bytes": size}


def view_nb(tc: Toolchain, nb: Path) -> dict:
    """Load ``nb`` in the optimizer's model viewer; the op counts of the graph it holds.

    The viewer then calls Graphviz's ``dot`` to draw a PDF; without Graphviz that
    last step fails after the ``.dot`` file is written, which is all we read.
    """
    with tempfile.TemporaryDirectory(prefix="vslim-lite-view-") as tmp:
        proc = tc.run_opt([f"--optimized_nb_model_path={nb}", f"--visualization_file_output_path={tmp}/"], timeout=600)
        dots = sorted(Path(tmp).glob("*.dot"))
        if not dots:
            raise _fail(f"loading {nb.name} in the model viewer", proc)
        ops: Counter = Counter()
        for dot in dots:
            for label, color in re.findall(r'label="([^"]+)" style="filled" fillcolor="(\w+)"', dot.read_text()):
                if color == "yellow":  # op nodes; variables are gray
                    ops[label] += 1
    return {"loaded": True, "ops": dict(sorted(ops.items())), "calib_ops": ops.get("calib", 0)}
