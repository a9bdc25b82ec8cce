"""The one error type vslim shows users.

Library code raises a subclass of :class:`VslimError` whose message says what is
wrong and what to do about it; the CLI prints that message without a traceback
and exits non-zero. Any other exception escaping to the CLI is a bug in vslim.
"""


class VslimError(Exception):
    """A problem the user can fix; the message names it and the fix."""

    exit_code = 2


class ConfigError(VslimError):
    """A config file or option is invalid."""


class DataError(VslimError):
    """A list file, video or frame folder cannot be used."""


class ModelError(VslimError):
    """A model folder, weights file or architecture is missing or inconsistent."""


class InferenceError(VslimError):
    """The predictor cannot be built or run with the requested settings."""


class QuantizationError(VslimError):
    """Post-training or quantization-aware INT8 conversion failed."""


class OutputExistsError(VslimError):
    """An output path exists and overwriting was not asked for."""


class ServingError(VslimError):
    """A serving bundle, server or client cannot do what was asked."""


class BundleError(ServingError):
    """A serving bundle is incomplete, changed or malformed."""


class RequestError(ServingError):
    """A request a server must refuse; ``kind`` picks the protocol's error code.

    ``invalid`` (gRPC INVALID_ARGUMENT, HTTP 400), ``too_large`` (RESOURCE_EXHAUSTED,
    413), ``unsupported`` (INVALID_ARGUMENT, 415), ``unavailable`` (UNAVAILABLE, 503),
    ``internal`` (INTERNAL, 500).
    """

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


class LiteError(VslimError):
    """The Paddle Lite toolchain or optimizer cannot do what was asked."""
