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


class LiteError(VslimError):
    """The Paddle Lite toolchain or optimizer cannot do what was asked."""
