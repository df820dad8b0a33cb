"""Errors a user sees: each carries one sentence that says what went wrong and what to do."""

from __future__ import annotations

from collections.abc import Callable


class SfumatoError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class UsageError(SfumatoError):
    """Bad command-line or API usage (exit status 2)."""


class ConfigError(SfumatoError):
    """An invalid configuration file or setting (exit status 2)."""


class EncoderError(SfumatoError):
    """An encoder cannot be loaded or cannot do what was asked (unknown name, missing weights...)."""


class UnknownEncoderError(EncoderError, UsageError):
    """An encoder spec that names nothing known: bad usage (exit status 2)."""


class MissingPackageError(EncoderError):
    """An encoder needs an optional package for what was asked: the message names the extra."""


class BadImageError(SfumatoError):
    """A file that will never be cloaked as it is: corrupt, truncated, unsupported or too large.

    The daemon moves such files to the failed folder; retrying cannot help.
    """


class TruncatedImageError(BadImageError):
    """The file ends before its image does: most often it is still being written.

    The daemon leaves such a file in the outbox and looks again once it has been quiet for a
    while; only a file that stays truncated is failed, whole.
    """


class TransientError(SfumatoError):
    """A failure that may go away on retry: disk full, out of memory, a busy device."""


class Cancelled(SfumatoError):
    """The caller asked the running job to stop (SIGTERM): nothing was written."""


def stop_if_asked(should_stop: Callable[[], bool] | None) -> None:
    """Raise :class:`Cancelled` if the caller has asked to stop; long jobs call this between phases."""
    if should_stop is not None and should_stop():
        raise Cancelled("stopped on request")
