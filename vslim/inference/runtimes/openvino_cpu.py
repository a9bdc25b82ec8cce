"""The ``openvino`` runtime: OpenVINO on CPU, on the converted model or on its own INT8 calibrated by NNCF.

NNCF's INT8 of an FP32 model (made at packaging with ``--calib-list``, what a user of OpenVINO would build by
hand) is kept as IR beside the conversion with checksums, and covered by the bundle's manifest.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelError
from ...fsio import sha256_of, write_json
from .converted import ConvertedPredictor

NNCF_IR, NNCF_RECORD = "nncf-int8.xml", "nncf-int8.json"


def make_nncf_int8(onnx: Path, clips, source: str) -> Path:
    """OpenVINO's own INT8 of an FP32 model: NNCF post-training quantization on ``clips``, saved as IR beside
    the ONNX with checksums (what a user of OpenVINO would build by hand, here kept with the bundle)."""
    import nncf
    import openvino as ov

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


class OpenVinoPredictor(ConvertedPredictor):
    """OpenVINO on CPU, compiled per batch size (static shapes run faster than a dynamic batch).

    Precision is OpenVINO's inference precision hint: ``f32`` for fp32 and for the
    layers an INT8 (QDQ) model keeps in float, ``bf16`` for bf16.
    """

    runtime = "openvino"

    def own_int8_ready(self, folder: Path) -> bool:
        return (folder / NNCF_IR).is_file()

    def _start(self) -> None:
        import openvino as ov

        self._core = ov.Core()
        self.nncf = self.precision == "int8" and not self.info.quantized
        self._model = self._core.read_model(str(nncf_model(self.onnx.parent) if self.nncf else self.onnx))
        self._compiled: dict[int, Any] = {}  # openvino.CompiledModel
        self._requests: dict[int, Any] = {}  # openvino.InferRequest
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
