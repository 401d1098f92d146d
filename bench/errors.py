"""Errors of the benchmark harness that a user can cause (bad grid file, bad override, ...)."""

from arlon.errors import ArlonError


class BenchError(ArlonError):
    """Base class for harness errors; the CLI prints them as one line and exits with code 2."""
