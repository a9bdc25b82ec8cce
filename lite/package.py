"""``vslim-package --target lite``: an inference model -> verified Paddle Lite ``.nb`` files and a report.

Order of work: find the optimizer; rewrite ``temporal_shift`` where Lite would
compute it wrongly; ask the optimizer which ops each target supports and stop,
naming them, before anything is written; optimize per target into a temporary
folder; read back kernels (how many run int8) and load each ``.nb`` in the model
viewer; run x86 files against Paddle Inference; then publish the folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vslim.config import to_dict
from vslim.fsio import atomic_output_dir, check_output_free, write_json, write_text_atomic
from vslim.inference import inspect_model
from vslim.inference.program import op_types, parse_program
from vslim.inference.temporal_shift import LITE_SHIFT_RATIO, find_temporal_shifts, rewrite_temporal_shift

from .config import LiteConfig
from .errors import LiteError
from .optimizer import check_ops, kernel_summary, nb_header, optimize, parse_targets, view_nb
from .package_report import lite_markdown
from .toolchain import find_toolchain
from .verify import structural, verification_clips, verify_x86

if TYPE_CHECKING:
    import numpy as np

REPORT_JSON = "lite_report.json"
REPORT_MD = "lite_report.md"


def _nb_name(name: str, target: str) -> str:
    return f"{name}_{target.replace(',', '_')}"


def package_lite(cfg: LiteConfig, say: Callable[[str], None] = print) -> dict:
    """Write ``.nb`` files for every target of ``cfg`` and return the report."""
    cfg.validate()
    check_output_free(cfg.output_dir, cfg.overwrite)
    targets = [",".join(parse_targets(t)) for t in cfg.targets]
    info = inspect_model(cfg.model_dir, paddlevideo_config=cfg.paddlevideo_config)
    tc = find_toolchain(cfg.opt_bin)
    name = cfg.name or info.meta.arch or Path(cfg.model_dir).resolve().name
    ops = sorted(set(op_types(parse_program(info.model_file))))
    shifts = find_temporal_shifts(info.model_file)
    int8_model = info.quantized
    say(f"optimizer {tc.version} ({tc.source}: {tc.location}); model {info.model_file.name} ({info.precision})")

    with tempfile.TemporaryDirectory(prefix="vslim-lite-") as work:
        model_file, params_file = info.model_file, info.params_file
        rewrite = None
        if shifts and cfg.rewrite_temporal_shift and any(s.needs_rewrite for s in shifts):
            rewrite = rewrite_temporal_shift(model_file, params_file, Path(work) / "rewritten")
            model_file, params_file = (
                Path(work) / "rewritten" / "model.pdmodel",
                Path(work) / "rewritten" / "model.pdiparams",
            )
            say(
                f"rewrote {rewrite.rewritten} temporal_shift op(s) (shift_ratio "
                f"{', '.join(str(r) for r in rewrite.to_dict()['shift_ratios'])}) into standard ops"
            )
        support = {t: check_ops(tc, model_file, params_file, t) for t in targets}
        # temporal_shift is checked on the model as given, before any rewrite removed it.
        shift_support = (
            {t: check_ops(tc, info.model_file, info.params_file, t) for t in targets}
            if rewrite is not None
            else support
        )
        missing = {t: s.unsupported for t, s in support.items() if s.unsupported}
        if missing:
            detail = "; ".join(f"{t}: {', '.join(ops_)}" for t, ops_ in missing.items())
            three_d = any(o.endswith("3d") for ops_ in missing.values() for o in ops_)
            advice = (
                "Lite 2.13 has no 3-D convolution or pooling kernels, so 3-D models (MoViNet, VideoSwin, "
                "SlowFast) cannot run on it; what works for them: a serving bundle (--target serving) or ONNX "
                "(--target onnx). Otherwise replace those ops in the model or choose another target"
                if three_d
                else "Replace those ops in the model or choose another target"
            )
            raise LiteError(
                f"Paddle Lite does not support these ops of {info.model_file.name} — {detail}. "
                f"Nothing was written. {advice}"
            )

        verification: tuple[np.ndarray, str] | None = None  # the clips and where they came from, made once
        entries: dict[str, dict[str, Any]] = {}
        with atomic_output_dir(cfg.output_dir, overwrite=cfg.overwrite) as tmp:
            for target in targets:
                say(f"optimizing for {target}")
                kwargs: dict[str, Any] = dict(quant_type=cfg.quant_type, enable_fp16=cfg.enable_fp16, model_ops=ops)
                nb = optimize(tc, model_file, params_file, tmp / _nb_name(name, target), target, **kwargs)
                kernels = kernel_summary(tc, model_file, params_file, target, **kwargs)
                header, view = nb_header(nb), view_nb(tc, nb)
                entry: dict[str, Any] = {
                    "file": nb.name,
                    "bytes": nb.stat().st_size,
                    "header": header,
                    "viewer": view,
                    "kernels": kernels,
                    "op_support": support[target].to_dict(),
                }
                if target == "x86" and cfg.verify:
                    if verification is None:
                        verification = verification_clips(info, cfg.verify_clips, cfg.val)
                    clips, source = verification
                    say(f"verifying {nb.name} against Paddle Inference on {source}")
                    entry["verification"] = verify_x86(tc, nb, info, clips, source)
                    if not entry["verification"]["passed"]:
                        v = entry["verification"]
                        hint = (
                            " Lite 2.13's x86 INT8 kernels are known to be wrong: build INT8 models for arm"
                            if int8_model
                            else ""
                        )
                        raise LiteError(
                            f"{nb.name} disagrees with Paddle Inference (relative diff "
                            f"{v['relative_diff']:.2e}, top-1 agreement {100 * v['top1_agreement']:.1f}%); "
                            f"nothing was written.{hint}"
                        )
                elif target == "x86":
                    entry["verification"] = {"kind": "none", "ran": False, "passed": None, "reason": "--no-verify"}
                else:
                    entry["verification"] = structural(header, view, kernels, int8_model)
                    if not entry["verification"]["passed"]:
                        raise LiteError(f"{nb.name} failed its structural check: {entry['verification']['reason']}")
                entries[target] = entry
            report = {
                "model": str(Path(cfg.model_dir).resolve()),
                "name": name,
                "precision": info.precision,
                "inference_model_bytes": info.model_file.stat().st_size + info.params_file.stat().st_size,
                "optimizer": {"source": tc.source, "location": tc.location, "version": tc.version},
                "temporal_shift": _shift_report(shifts, rewrite, shift_support),
                "model_ops": ops,
                "targets": entries,
                "config": to_dict(cfg),
            }
            write_json(tmp / REPORT_JSON, report)
            write_text_atomic(tmp / REPORT_MD, lite_markdown(report))
    return report


def _shift_report(shifts, rewrite, support) -> dict:
    supported = {t: s.ops.get("temporal_shift", []) for t, s in support.items()} if shifts else {}
    wrong = [s for s in shifts if s.needs_rewrite]
    if not shifts:
        note = "the model has no temporal_shift op"
    elif rewrite is not None:
        note = (
            f"Lite 2.13's temporal_shift ignores shift_ratio and always shifts {LITE_SHIFT_RATIO} of the "
            f"channels; the {rewrite.rewritten} op(s) with another ratio were rewritten into reshape2, slice, "
            "scale and concat, which Lite computes exactly"
        )
    elif wrong:
        note = (
            f"WARNING: {len(wrong)} temporal_shift op(s) use shift_ratio != {LITE_SHIFT_RATIO}, which Lite "
            "computes wrongly, and the rewrite was turned off: these .nb files give wrong results"
        )
    else:
        note = f"every temporal_shift uses shift_ratio {LITE_SHIFT_RATIO}, which Lite computes correctly"
    return {
        "found": len(shifts),
        "needing_rewrite": len(wrong),
        "rewritten": rewrite.rewritten if rewrite else 0,
        "shift_ratios": sorted({s.shift_ratio for s in shifts}),
        "seg_nums": sorted({s.seg_num for s in shifts}),
        "lite_support": supported,
        "note": note,
    }
