"""Paddle Inference predictor wrapper (CPU, oneDNN, GPU, TensorRT) and model-folder inspection."""

from .predictor import ModelInfo, Predictor, inspect_model

__all__ = ["ModelInfo", "Predictor", "inspect_model"]
