"""Errors a user can cause. Each message says what is wrong and how to fix it.

The CLI boundary (`bench/cli/app.py`) prints these as one line and exits with code 2; anything
else is a bug and keeps its traceback.
"""


class ArlonError(Exception):
    """Base class for every error the user can fix."""


class ConfigError(ArlonError):
    """A configuration value is invalid or inconsistent with another one."""


class MissingWeightsError(ArlonError):
    """A checkpoint that the configuration asks for cannot be found on disk."""


class CheckpointMismatchError(ArlonError):
    """A checkpoint was found but its entry names or shapes do not match the model."""


class VideoDecodeError(ArlonError):
    """A video file cannot be read or is corrupt."""
