"""What Paddle Lite packaging raises when the toolchain or optimizer cannot do what was asked."""

from vslim.errors import VslimError


class LiteError(VslimError):
    """The Paddle Lite toolchain or optimizer cannot do what was asked."""
