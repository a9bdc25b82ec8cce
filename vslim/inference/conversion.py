"""The model converted to ONNX (paddle2onnx, opset 13) and checked against Paddle: what the ``openvino`` and
``onnxruntime`` runtimes run, what ``vslim-package --target onnx`` ships and what the benchmarks' peers load.

One conversion, one check, one cache: a conversion is kept under ``$VSLIM_HOME/converted/onnx-KEY`` (or a
bundle's own ``converted/``) where KEY is the content of the model's files, so a re-export into the same
folder converts anew. vslim's conversion rewrites TSM's temporal shifts into 4-D ops with identical outputs
(``onnx_shift``: OpenVINO runs PP-TSM R50 1.5x faster in BF16); ``plain=True`` keeps paddle2onnx's graph as
it comes, which is what a user converting by hand runs (the benchmarks' peers), under ``paddle2onnx-KEY``.
The cached folder holds ``model.onnx`` and ``onnx_report.json`` with its sha256; a file that no longer
matches is refused, never run. QDQ-format INT8 models convert (as QuantizeLinear /
DequantizeLinear); fake-quant ones do not (docs/architecture.md, Python stack).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from ..accuracy import cosine_similarity
from ..config import PredictorConfig
from ..errors import ModelError
from ..fsio import atomic_output_dir, sha256_of, write_json
from .cache import cache_home, content_key
from .model_info import ModelInfo, check_batch, large_clip, seeded_feeds

OPSET = 13
# A conversion whose outputs point elsewhere than Paddle's is wrong, not imprecise. INT8 kernels of two
# libraries round differently (R50 with random weights on noise: cosine 0.988), so INT8 gets more room.
MIN_COSINE = {"fp32": 0.999, "int8": 0.95}
ONNX_FILE, REPORT_FILE = "model.onnx", "onnx_report.json"
# Bumped when what convert() does to paddle2onnx's graph changes: conversions in the home cache made before
# are redone; a bundle's own (packaged, checksummed, maybe with an INT8 made from it) is kept as it is.
GRAPH_REWRITES = 1


def convert(info: ModelInfo, target: Path, plain: bool = False) -> dict:
    """Write ``target`` (ONNX) from the model, run it beside Paddle on a seeded batch, return the report.
    Unless ``plain``, the graph's temporal shifts are rewritten first, so the check covers the rewrite."""
    try:
        import onnxruntime as ort
        import paddle2onnx
    except ImportError as exc:
        raise ModelError(
            f"ONNX conversion needs paddle2onnx==1.3.1 and onnxruntime ({exc}); "
            "pip install -c constraints.txt 'vslim[onnx]'"
        ) from None
    from .predictor import PaddlePredictor
    from .probe import reference_in_child

    with contextlib.redirect_stdout(io.StringIO()):  # paddle2onnx prints progress to stdout
        try:
            paddle2onnx.export(
                str(info.model_file),
                str(info.params_file),
                str(target),
                opset_version=OPSET,
                verbose=False,
                enable_onnx_checker=True,
            )
        except Exception as exc:
            raise ModelError(f"paddle2onnx could not convert {info.model_file}: {exc}") from exc
    if not target.is_file():
        raise ModelError(
            f"paddle2onnx wrote nothing for {info.model_file} (an unsupported op or a fake-quant "
            "INT8 model; QDQ-format INT8 models convert)"
        )
    rewrites = None if plain else {"version": GRAPH_REWRITES, "temporal_shift": _rewrite_shifts(target)}
    feeds = seeded_feeds(info.inputs, batch=check_batch(info.inputs, 2))
    # The conversion is checked with ONNX Runtime's graph optimisations off: QDQ then runs as written
    # (dequantize, float op), so this compares the graph with Paddle's, not ORT's INT8 kernels — those
    # are each runtime's own check (runtimes/converted.py), with the CPU's ISA in the reason.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    large = large_clip(info)
    options.enable_cpu_mem_arena = not large  # unfused, a 250-image clip's activations are gigabytes
    session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: feeds[s.name] for n, s in zip(names, info.inputs)})[0]
    del session  # one model in memory at a time
    paddle = PaddlePredictor(info.model_dir, PredictorConfig(), info)  # probes a model vslim has not seen
    if large:  # batch 1, seeded_feeds(inputs): what the child computes
        expected = reference_in_child(info.model_dir, info, paddle.probed, 2)[info.outputs[0].name]
    else:
        expected = paddle.run_feeds(feeds)[info.outputs[0].name]
    del paddle
    check = {
        "max_abs_diff": float(np.abs(got - expected).max()),
        "output_scale": float(np.abs(expected).max()),
        "cosine_min": float(cosine_similarity(got, expected).min()),
    }
    return {
        "source": str(Path(info.model_dir).resolve()),
        "precision": info.precision,
        "opset": OPSET,
        "onnx_bytes": target.stat().st_size,
        "sha256": sha256_of(target),
        "check_vs_paddle": check,
        **({"graph_rewrites": rewrites} if rewrites else {}),
    }


def _rewrite_shifts(target: Path) -> int:
    """Rewrite the temporal shifts of the ONNX file ``target`` in place (through a staging name); the count."""
    import onnx

    from .onnx_shift import rewrite_temporal_shifts

    model = onnx.load(str(target))
    count = rewrite_temporal_shifts(model)
    if count:
        staging = target.with_name(f".{target.name}.partial")
        onnx.save(model, str(staging))
        staging.replace(target)
    return count


def check_agreement(report: dict, info: ModelInfo) -> None:
    """A ModelError when the conversion's outputs disagree with Paddle's beyond the precision's floor."""
    floor = MIN_COSINE[info.precision]
    cosine = report["check_vs_paddle"]["cosine_min"]
    if cosine < floor:
        raise ModelError(
            f"the ONNX conversion of {info.model_dir} disagrees with Paddle (cosine {cosine:.4f} < {floor}); "
            "use --runtime paddle"
        )


def converted_onnx(info: ModelInfo, cache: Path | None = None, plain: bool = False) -> Path:
    """The model as ONNX, converted and checked once per content (``cache``: a bundle's own folder);
    ``plain``: paddle2onnx's graph without vslim's rewrites."""
    key = content_key(info.model_file, info.params_file)
    folder = (cache or cache_home() / "converted") / f"{'paddle2onnx' if plain else 'onnx'}-{key}"
    onnx, report_file = folder / ONNX_FILE, folder / REPORT_FILE
    stale = (
        cache is None
        and not plain
        and report_file.is_file()
        and json.loads(report_file.read_text()).get("graph_rewrites", {}).get("version") != GRAPH_REWRITES
    )
    if not report_file.is_file() or stale:
        with atomic_output_dir(folder, overwrite=folder.exists()) as tmp:
            write_json(tmp / REPORT_FILE, convert(info, tmp / ONNX_FILE, plain))
    report = json.loads(report_file.read_text())
    if not onnx.is_file() or sha256_of(onnx) != report.get("sha256"):
        raise ModelError(
            f"the cached conversion {onnx} does not match its checksum (damaged or edited): delete "
            f"{folder} and run again to convert anew"
        )
    check_agreement(report, info)
    return onnx
