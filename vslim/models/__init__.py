"""The model zoo: PP-TSM, TSM and a small PP-TSM, with PaddleVideo-compatible parameter names."""

from .zoo import ARCHS, ArchSpec, build_model, get_arch

__all__ = ["ARCHS", "ArchSpec", "build_model", "get_arch"]
