"""The one error type vslim shows users.

Library code raises a subclass of :class:`VslimError` whose message says what is
wrong and what to do about it; the CLI prints that message without a traceback
and exits non-zero. Any other exception escaping to the CLI is a bug in vslim. The errors every
feature shares live here; each feature's own live beside it (``compress/errors.py``,
``serving/errors.py``, ``lite/errors.py``).
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


class OutputExistsError(VslimError):
    """An output path exists and overwriting was not asked for."""
