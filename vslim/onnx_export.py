"""``vslim-package --target onnx``: the inference model as ONNX (paddle2onnx, opset 13), checked.

ONNX Runtime is the peer vslim's benchmarks compare against; the converted model
is run once next to Paddle Inference so a wrong conversion is caught here, not
in a benchmark table. QDQ-format INT8 models convert too (as QuantizeLinear /
DequantizeLinear); fake-quant ones do not (docs/architecture.md, Python stack).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .accuracy import cosine_similarity
from .config import PackageConfig, PredictorConfig
from .errors import ModelError
from .fsio import atomic_output_dir, check_output_free, sha256_of, write_json
from .inference import Predictor, inspect_model
from .inference.predictor import check_batch, seeded_feeds
from .inference.probe import reference_in_child
from .inference.runtimes import LARGE_CLIP_ELEMENTS, clip_elements

OPSET = 13
# A conversion whose outputs point elsewhere than Paddle's is wrong, not imprecise. INT8 kernels of two
# libraries round differently (R50 with random weights on noise: cosine 0.988), so INT8 gets more room.
MIN_COSINE = {"fp32": 0.999, "int8": 0.95}


@dataclass
class OnnxConfig(PackageConfig):
    """``vslim-package --target onnx``: nothing beyond the common options (the file is always ``model.onnx``)."""

    def validate(self) -> OnnxConfig:
        return self


def export_onnx(cfg: OnnxConfig, say: Callable[[str], None] = lambda _: None) -> dict:
    """Convert, check against Paddle on a random batch, write ``model.onnx`` + ``vslim.json`` + a report."""
    model_dir, out, overwrite = cfg.model_dir, cfg.output_dir, cfg.overwrite
    try:
        import onnxruntime as ort
        import paddle2onnx
    except ImportError as exc:
        raise ModelError(
            f"ONNX export needs paddle2onnx==1.3.1 and onnxruntime ({exc}); "
            "pip install -c constraints.txt paddle2onnx==1.3.1 onnxruntime"
        ) from None
    check_output_free(out, overwrite)
    info = inspect_model(model_dir, paddlevideo_config=cfg.paddlevideo_config)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        target = tmp / "model.onnx"
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
        feeds = seeded_feeds(info.inputs, batch=check_batch(info.inputs, 2))
        # The conversion is checked with ONNX Runtime's graph optimisations off: QDQ then runs as written
        # (dequantize, float op), so this compares the graph with Paddle's, not ORT's INT8 kernels — those
        # are the runtime's own check (inference/runtimes.py), with the CPU's ISA in the reason.
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        large = clip_elements(info) > LARGE_CLIP_ELEMENTS
        options.enable_cpu_mem_arena = not large  # unfused, a 250-image clip's activations are gigabytes
        session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        got = session.run(None, {n: feeds[s.name] for n, s in zip(names, info.inputs)})[0]
        del session  # one model in memory at a time
        paddle = Predictor(info.model_dir, PredictorConfig(), info)  # probes a model vslim has not seen
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
        info.meta.derive(model_file="model.onnx", params_file=None, source=str(info.model_dir)).save(tmp)
        report = {
            "source": str(Path(model_dir).resolve()),
            "precision": info.precision,
            "opset": OPSET,
            "onnx_bytes": target.stat().st_size,
            "sha256": sha256_of(target),
            "check_vs_paddle": check,
        }
        write_json(tmp / "onnx_report.json", report)
    return report
