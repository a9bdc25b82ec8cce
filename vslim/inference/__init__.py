"""Running a model: the predictor interface every runtime satisfies, Paddle Inference's predictor (CPU, oneDNN,
GPU, TensorRT), the other runtimes behind :func:`open_predictor`, and model-folder inspection."""

from .base import Predictor
from .model_info import ModelInfo, inspect_model
from .predictor import PaddlePredictor
from .runtimes import open_predictor

__all__ = ["ModelInfo", "PaddlePredictor", "Predictor", "inspect_model", "open_predictor"]
