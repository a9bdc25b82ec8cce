"""What the compression passes raise when they cannot do what was asked."""

from vslim.errors import VslimError


class QuantizationError(VslimError):
    """Post-training or quantization-aware INT8 conversion failed."""
