"""Video data: PaddleVideo list files, frame decoding, the PP-TSM clip pipeline, synthetic data."""

from .lists import VideoEntry, read_list
from .pipeline import ClipPipeline

__all__ = ["VideoEntry", "read_list", "ClipPipeline"]
