"""CPU runtimes beside Paddle Inference: OpenVINO and ONNX Runtime, behind the Predictor's interface.

Which runtime and precision is fastest depends on the CPU (docs/architecture.md,
CPU runtimes): on an AVX-512 VNNI host Paddle's oneDNN INT8 led, on an AMX host
OpenVINO's BF16 did. So each runtime runs the same model vslim made, converted
once with paddle2onnx (QDQ for PaddleSlim's INT8: the user's calibration is
kept), cached with its checksum and checked against Paddle FP32 when made.

A runtime predictor offers what the serving engine and the CLI use of
:class:`~vslim.inference.Predictor`: ``info``, ``precision``, ``input_spec``,
``run_feeds``, ``run``, ``clone``, ``describe``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from ..config import PredictorConfig
from ..errors import ConfigError, InferenceError, ModelError
from ..fsio import sha256_of
from .predictor import ModelInfo, Predictor, check_batch, inspect_model, seeded_feeds

RUNTIMES = ("paddle", "openvino", "onnxruntime")
PRECISIONS = {"paddle": ("fp32", "bf16", "int8"), "openvino": ("fp32", "bf16", "int8"), "onnxruntime": ("fp32", "int8")}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
VERIFY_BATCH = 4
# against Paddle in the model's own precision, on noise: catches a runtime computing the model wrongly
# (cosine -0.49 seen); accuracy on real clips is the evaluation's business
MIN_RUNTIME_COSINE = {"fp32": 0.99, "bf16": 0.99, "int8": 0.95}


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16() -> bool:
    """BF16 arithmetic in hardware (AVX-512 BF16 or AMX); emulated BF16 would only be slower."""
    return bool(cpu_flags() & set(BF16_FLAGS))


def check_precision(runtime: str, precision: str, info: ModelInfo, nncf: bool = False) -> str:
    """The precision to run, or a ConfigError naming what to change.

    ``nncf``: an OpenVINO INT8 model calibrated by NNCF from this FP32 model exists (made at packaging
    with ``--calib-list``), so OpenVINO can run this FP32 model as INT8.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision == "auto":
        return info.precision
    if precision not in PRECISIONS[runtime]:
        raise ConfigError(f"{runtime} has no {precision} on CPU; choose one of {', '.join(PRECISIONS[runtime])}")
    if precision == "int8" and not info.quantized and not (runtime == "openvino" and nncf):
        raise ConfigError(
            f"precision int8 needs a quantized model, but {info.model_file} has none; quantize it "
            "with vslim-quant (the INT8 model keeps your calibration on every runtime), or package "
            "it with --calib-list for OpenVINO's own INT8 (NNCF)"
        )
    if precision == "bf16" and not has_bf16():
        raise ConfigError(
            f"this CPU has no BF16 instructions ({' or '.join(BF16_FLAGS)} in /proc/cpuinfo); "
            "use precision fp32 or int8"
        )
    if info.quantized and precision != "int8" and runtime != "paddle":
        raise ConfigError(f"{info.model_dir} is an INT8 model: run it as int8, or give the FP32 model for {precision}")
    return precision


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def likely_cause(runtime: str, precision: str) -> str:
    """Why a runtime's INT8 may disagree on this CPU, when the ISA explains it (measured on an AVX2-only host)."""
    if precision != "int8" or cpu_flags() & set(VNNI_FLAGS):
        return ""
    if runtime == "onnxruntime":
        return (
            " — likely cause: this CPU has no VNNI (" + ", ".join(VNNI_FLAGS) + "), and ONNX Runtime's INT8 "
            "kernels without it multiply u8 x s8 with 16-bit saturation (vpmaddubsw), which loses precision; "
            "the conversion itself was checked with optimisations off and matches Paddle"
        )
    return ""


# --------------------------------------------------------------------------- the converted model


def cache_home() -> Path:
    return Path(os.environ.get("VSLIM_HOME") or Path.home() / ".cache" / "vslim")


def _model_key(info: ModelInfo) -> str:
    h = hashlib.sha256()
    for path in (info.model_file, info.params_file):
        h.update(sha256_of(path).encode())
    return h.hexdigest()[:16]


def converted_onnx(info: ModelInfo, cache: Path | None = None) -> Path:
    """The model as ONNX (paddle2onnx, checked against Paddle when made), cached by content.

    The cache folder holds ``model.onnx`` and ``onnx_report.json`` with its sha256;
    a file that no longer matches is refused, never run.
    """
    from ..onnx_export import MIN_COSINE, OnnxConfig, export_onnx

    folder = (cache or cache_home() / "converted") / f"onnx-{_model_key(info)}"  # the same files: the same folder
    onnx, report = folder / "model.onnx", folder / "onnx_report.json"
    if not report.is_file():
        export_onnx(OnnxConfig(str(info.model_dir), str(folder), overwrite=folder.exists()))
    recorded = json.loads(report.read_text())
    if not onnx.is_file() or sha256_of(onnx) != recorded.get("sha256"):
        raise ModelError(
            f"the cached conversion {onnx} does not match its checksum (damaged or edited): delete "
            f"{folder} and run again to convert anew"
        )
    floor = MIN_COSINE[info.precision]
    if recorded["check_vs_paddle"]["cosine_min"] < floor:
        raise ModelError(
            f"the ONNX conversion of {info.model_dir} disagrees with Paddle (cosine "
            f"{recorded['check_vs_paddle']['cosine_min']:.4f} < {floor}); use --runtime paddle"
        )
    return onnx


def verified(predictor: _RuntimePredictor, record: bool = True, reference: dict | None = None) -> dict:
    """This runtime and precision against Paddle on a seeded batch, once per converted model (then cached).

    A runtime can run a valid ONNX model wrongly (OpenVINO 2026.4 ran the small
    PP-TSM's QDQ graph with outputs of cosine -0.49 to Paddle's): such a pair is
    refused here, with the figures, instead of answering.
    """
    from ..accuracy import cosine_similarity
    from ..fsio import write_json

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
            expected = Predictor(info.model_dir, PredictorConfig(threads=predictor.config.threads), info).run_feeds(
                feeds
            )[first]
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


NNCF_IR, NNCF_RECORD = "nncf-int8.xml", "nncf-int8.json"


def make_nncf_int8(onnx: Path, clips, source: str) -> Path:
    """OpenVINO's own INT8 of an FP32 model: NNCF post-training quantization on ``clips``, saved as IR beside
    the ONNX with checksums (what a user of OpenVINO would build by hand, here kept with the bundle)."""
    import nncf
    import openvino as ov

    from ..fsio import write_json

    folder = onnx.parent
    if (folder / NNCF_RECORD).is_file():
        return folder / NNCF_IR
    model = ov.Core().read_model(str(onnx))
    # clips: an array or a ClipStore, read one clip at a time
    quantized = nncf.quantize(model, nncf.Dataset(clips, lambda c: c[None]), subset_size=len(clips))
    staging = folder / f".{NNCF_IR}.partial"
    ov.save_model(quantized, str(staging.with_suffix(".xml")))
    xml, weights = staging.with_suffix(".xml"), staging.with_suffix(".bin")
    xml.rename(folder / NNCF_IR)
    weights.rename(folder / NNCF_IR.replace(".xml", ".bin"))
    write_json(
        folder / NNCF_RECORD,
        {
            "xml_sha256": sha256_of(folder / NNCF_IR),
            "bin_sha256": sha256_of(folder / NNCF_IR.replace(".xml", ".bin")),
            "calibration_clips": len(clips),
            "calibration_list": source,
        },
    )
    return folder / NNCF_IR


def nncf_model(folder: Path) -> Path:
    """The NNCF INT8 IR in ``folder``, refused when it no longer matches its checksums."""
    record = json.loads((folder / NNCF_RECORD).read_text()) if (folder / NNCF_RECORD).is_file() else {}
    xml, weights = folder / NNCF_IR, folder / NNCF_IR.replace(".xml", ".bin")
    if not (
        xml.is_file()
        and weights.is_file()
        and sha256_of(xml) == record.get("xml_sha256")
        and sha256_of(weights) == record.get("bin_sha256")
    ):
        raise ModelError(
            f"OpenVINO's INT8 model in {folder} is missing or does not match its checksums: repackage "
            "with --calib-list to calibrate it anew"
        )
    return xml


# --------------------------------------------------------------------------- predictors


LARGE_CLIP_ELEMENTS = 32 * 3 * 224 * 224  # past 32 images of 224x224 per clip, memory before reuse speed


def clip_elements(info) -> int:
    """Elements of one clip over all the model's inputs (dynamic dimensions counted as 1)."""
    return sum(int(np.prod([max(d, 1) for d in s.shape[1:]])) for s in info.inputs)


class _RuntimePredictor:
    """What both ONNX-based runtimes share: the model's declared inputs and outputs, input checks."""

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
        if self.runtime != "openvino" or self.config.precision != "int8":
            check_precision(self.runtime, self.config.precision, self.info)  # before converting anything
        self.onnx = converted_onnx(self.info, cache)
        self.precision = check_precision(
            self.runtime, self.config.precision, self.info, nncf=(self.onnx.parent / NNCF_IR).is_file()
        )
        self.input_names = [s.name for s in self.info.inputs]
        self.output_names = [s.name for s in self.info.outputs]
        self._start()
        self.agreement = verified(self, record_checks, reference)

    def _start(self) -> None:
        """Load the converted model into the runtime."""

    @property
    def input_spec(self):
        return self.info.inputs[0]

    @property
    def meta(self):
        return self.info.meta

    # the same input checks as Paddle's predictor, so every runtime refuses bad feeds in the same words
    check_input = Predictor.check_input
    checked_feeds = Predictor.checked_feeds

    def run_feeds(self, feeds: dict[str, np.ndarray], fetch: list[str] | None = None) -> dict[str, np.ndarray]:
        arrays, fetch = self.checked_feeds(feeds, fetch)
        try:
            outputs = self._infer(arrays)
        except InferenceError:
            raise
        except Exception as exc:
            raise InferenceError(f"{self.runtime} inference failed: {exc}") from exc
        return {n: outputs[self.output_names.index(n)] for n in fetch}

    def run(self, clips: np.ndarray) -> np.ndarray:
        return self.run_feeds({self.input_names[0]: clips})[self.output_names[0]]

    def run_batched(self, clips: np.ndarray, batch_size: int) -> np.ndarray:
        return np.concatenate([self.run(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)])

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

    def _infer(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxRuntimePredictor(_RuntimePredictor):
    """ONNX Runtime's CPU provider; INT8 runs the QDQ graph of PaddleSlim's model (its calibration)."""

    runtime = "onnxruntime"

    def _start(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if clip_elements(self.info) > LARGE_CLIP_ELEMENTS:
            # its arena keeps the largest activations allocated: on a 250-image PP-TSN clip peak RSS 5.7 GB with
            # it, 2.6 GB without, for 3% more time (measured); small clips keep it
            options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(str(self.onnx), options, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._session.get_inputs()]

    def _infer(self, arrays):
        return self._session.run(None, {n: arrays[s] for n, s in zip(self._names, self.input_names)})

    def clone(self) -> OnnxRuntimePredictor:
        return self  # an InferenceSession runs concurrent calls safely


class OpenVinoPredictor(_RuntimePredictor):
    """OpenVINO on CPU, compiled per batch size (static shapes run faster than a dynamic batch).

    Precision is OpenVINO's inference precision hint: ``f32`` for fp32 and for the
    layers an INT8 (QDQ) model keeps in float, ``bf16`` for bf16.
    """

    runtime = "openvino"

    def _start(self) -> None:
        import openvino as ov

        self._core = ov.Core()
        self.nncf = self.precision == "int8" and not self.info.quantized
        self._model = self._core.read_model(str(nncf_model(self.onnx.parent) if self.nncf else self.onnx))
        self._compiled: dict[int, object] = {}
        self._requests: dict[int, object] = {}
        self._lock = threading.Lock()

    def _compile(self, batch: int):
        with self._lock:
            if batch not in self._compiled:
                model = self._model.clone()
                model.reshape(
                    {
                        port.get_any_name(): [batch] + [d if d > 0 else 1 for d in spec.shape[1:]]
                        for port, spec in zip(model.inputs, self.info.inputs)
                    }
                )
                streams = self.config.streams  # one per server worker: OpenVINO's throughput mode
                options = {
                    "INFERENCE_NUM_THREADS": self.config.threads * streams,
                    "NUM_STREAMS": streams,
                    "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
                }
                if not self.nncf:  # NNCF's INT8 keeps OpenVINO's default for the layers it leaves in float
                    options["INFERENCE_PRECISION_HINT"] = "bf16" if self.precision == "bf16" else "f32"
                self._compiled[batch] = self._core.compile_model(model, "CPU", options)
            return self._compiled[batch]

    def _infer(self, arrays):
        batch = int(next(iter(arrays.values())).shape[0])
        request = self._requests.get(batch)
        if request is None:
            request = self._requests[batch] = self._compile(batch).create_infer_request()
        results = request.infer([arrays[n] for n in self.input_names])
        return [np.array(results[i]) for i in range(len(self.output_names))]

    def clone(self) -> OpenVinoPredictor:
        """Another predictor sharing the compiled models, with its own infer requests (one per thread)."""
        twin = object.__new__(OpenVinoPredictor)
        twin.__dict__.update(self.__dict__)
        twin._requests = {}
        return twin


def open_predictor(
    model_dir: Path | str,
    config: PredictorConfig | None = None,
    info: ModelInfo | None = None,
    cache: Path | None = None,
    warn=lambda message: None,
    record_checks: bool | None = None,
    reference: dict | None = None,
):
    """The predictor of ``config.runtime`` for ``model_dir`` (Paddle Inference by default).

    ``auto`` takes the choice recorded in a bundle's ``runtime.json`` (Paddle when
    there is none, or when the recorded runtime is not installed: ``warn`` says so).
    ``cache``: where conversions are kept (a bundle keeps its own). ``reference``: Paddle's outputs on
    ``seeded_feeds(inputs)``, when the caller has them (the conversion check then loads no Paddle model).
    """
    config = (config or PredictorConfig()).validate()
    if record_checks is None:
        record_checks = cache is None  # the user's cache takes new checks; a bundle's stays as packaged
    if config.runtime == "auto" or cache is None:
        from .selection import resolve

        config, found = resolve(config, model_dir, warn)
        record_checks = record_checks and found is None
        cache = cache or found
    if config.runtime == "paddle":
        return Predictor(model_dir, config, info)
    if config.device != "cpu":
        raise ConfigError(f"runtime {config.runtime} runs on the CPU here; use --runtime paddle for the GPU")
    cls = OpenVinoPredictor if config.runtime == "openvino" else OnnxRuntimePredictor
    module = "openvino" if config.runtime == "openvino" else "onnxruntime"
    try:
        __import__(module)
    except ImportError:
        extra = "openvino" if module == "openvino" else "onnx"
        raise ConfigError(
            f"runtime {config.runtime} is not installed: pip install -c constraints.txt 'vslim[{extra}]'"
        ) from None
    return cls(model_dir, config, info, cache, record_checks, reference)
