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


class CorruptFileError(ArlonError):
    """A file is there but cannot be what it should be (truncated, hand-edited, its hash does not match)."""


class OutputPathError(ArlonError):
    """A path given for output cannot take it (a folder where a file goes, a file where a folder goes, ...)."""


class WriteError(ArlonError):
    """Writing a file failed (a full disk, a read-only folder); the file it would replace is untouched."""
