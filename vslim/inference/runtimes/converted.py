"""What the runtimes that run the converted model share: the conversion, the check against Paddle, the calls.

A runtime can run a valid ONNX model wrongly (OpenVINO 2026.4 ran the small PP-TSM's QDQ graph with outputs of
cosine -0.49 to Paddle's), so each (runtime, precision) is run beside Paddle on a seeded batch once per
converted model (``runtime_checks.json`` beside the conversion) and refused, with the figures, below a floor.
A subclass loads the model (``_start``) and runs it (``_infer``); input checks and errors are shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ... import runtime_registry
from ...accuracy import cosine_similarity
from ...config import PredictorConfig
from ...errors import InferenceError, ModelError
from ...fsio import write_json
from .. import conversion
from ..base import FeedChecks
from ..model_info import ModelInfo, check_batch, inspect_model, seeded_feeds
from ..predictor import PaddlePredictor
from . import check_precision, likely_cause

VERIFY_BATCH = 4
# against Paddle in the model's own precision, on noise: catches a runtime computing the model wrongly
# (cosine -0.49 seen); accuracy on real clips is the evaluation's business
MIN_RUNTIME_COSINE = {"fp32": 0.99, "bf16": 0.99, "int8": 0.95}


class ConvertedPredictor(FeedChecks):
    """A predictor over the model converted to ONNX; ``runtime`` names the registry row."""

    runtime = "?"

    def __init__(
        self,
        model_dir: Path | str,
        config: PredictorConfig | None = None,
        info: ModelInfo | None = None,
        cache: Path | None = None,
        record_checks: bool = True,
        reference: dict | None = None,
    ):
        self.config = (config or PredictorConfig()).validate()
        self.info = info or inspect_model(model_dir)
        own_int8 = runtime_registry.get(self.runtime).own_int8
        if not (self.config.precision == "int8" and not self.info.quantized and own_int8):
            check_precision(self.runtime, self.config.precision, self.info)  # before converting anything
        self.onnx = conversion.converted_onnx(self.info, cache)
        self.precision = check_precision(
            self.runtime, self.config.precision, self.info, own_int8=self.own_int8_ready(self.onnx.parent)
        )
        self.input_names = [s.name for s in self.info.inputs]
        self.output_names = [s.name for s in self.info.outputs]
        self._start()
        self.agreement = verified(self, record_checks, reference)

    def own_int8_ready(self, folder: Path) -> bool:
        """Its own INT8 of this FP32 model (registry row ``own_int8``) exists beside the conversion in ``folder``."""
        return False

    def _start(self) -> None:
        """Load the converted model into the runtime."""

    def _infer(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def run_feeds(self, feeds: dict[str, np.ndarray], fetch: list[str] | None = None) -> dict[str, np.ndarray]:
        arrays, fetch = self.checked_feeds(feeds, fetch)
        try:
            outputs = self._infer(arrays)
        except InferenceError:
            raise
        except Exception as exc:
            raise InferenceError(f"{self.runtime} inference failed: {exc}") from exc
        return {n: outputs[self.output_names.index(n)] for n in fetch}

    def describe(self) -> dict:
        return {
            "model": str(self.info.model_dir),
            "runtime": self.runtime,
            "precision": self.precision,
            "device": "cpu",
            "threads": self.config.threads,
            "converted": str(self.onnx),
            "check_vs_paddle": self.agreement,
        }


def verified(predictor: ConvertedPredictor, record: bool = True, reference: dict | None = None) -> dict:
    """This runtime and precision against Paddle on a seeded batch, once per converted model (then cached).

    A runtime can run a valid ONNX model wrongly (OpenVINO 2026.4 ran the small
    PP-TSM's QDQ graph with outputs of cosine -0.49 to Paddle's): such a pair is
    refused here, with the figures, instead of answering.
    """
    path = predictor.onnx.parent / "runtime_checks.json"
    checks = json.loads(path.read_text()) if path.is_file() else {}
    key = f"{predictor.runtime}/{predictor.precision}"
    if key not in checks:
        info = predictor.info
        batch = check_batch(info.inputs, VERIFY_BATCH)
        feeds, first = seeded_feeds(info.inputs, batch), info.outputs[0].name
        if reference is not None and batch == 1:  # Paddle's outputs on seeded_feeds(inputs), computed by the caller
            expected = reference[first]
        else:
            expected = PaddlePredictor(
                info.model_dir, PredictorConfig(threads=predictor.config.threads), info
            ).run_feeds(feeds)[first]
        got = predictor.run_feeds(feeds)[first]
        checks[key] = {
            "cosine_min": float(cosine_similarity(got, expected).min()),
            "top1_agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
            "reference": f"paddle/{info.precision}",
            "batch": batch,
        }
        if record:  # not into a packaged bundle, whose manifest covers this file
            write_json(path, checks)
    check = checks[key]
    floor = MIN_RUNTIME_COSINE[predictor.precision]
    if check["cosine_min"] < floor:
        raise ModelError(
            f"{key} computes {predictor.info.model_dir} differently from Paddle (cosine "
            f"{check['cosine_min']:.3f}, top-1 agreement {check['top1_agreement']:.0%} on a seeded "
            f"batch; needs cosine >= {floor}){likely_cause(predictor.runtime, predictor.precision)}: "
            "use another runtime or precision"
        )
    return check
