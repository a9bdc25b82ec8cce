"""The ``onnxruntime`` runtime: ONNX Runtime's CPU provider on the converted model (QDQ for INT8)."""

from __future__ import annotations

from ..model_info import large_clip
from .converted import ConvertedPredictor


class OnnxRuntimePredictor(ConvertedPredictor):
    """ONNX Runtime's CPU provider; INT8 runs the QDQ graph of PaddleSlim's model (its calibration)."""

    runtime = "onnxruntime"

    def _start(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if large_clip(self.info):
            # its arena keeps the largest activations allocated: on a 250-image PP-TSN clip peak RSS 5.7 GB with
            # it, 2.6 GB without, for 3% more time (measured); small clips keep it
            options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(str(self.onnx), options, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._session.get_inputs()]

    def _infer(self, arrays):
        return self._session.run(None, {n: arrays[s] for n, s in zip(self._names, self.input_names)})

    def clone(self) -> OnnxRuntimePredictor:
        return self  # an InferenceSession runs concurrent calls safely
