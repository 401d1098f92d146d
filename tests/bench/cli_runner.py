"""Run the real `arlon-bench` entry point inside a test, error boundary included."""

from __future__ import annotations

import sys

from bench.cli.app import main


def run_main(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """`arlon-bench ARGS...` -> (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["arlon-bench", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err
