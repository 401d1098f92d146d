"""The consoles the commands print with, and the few styled words they use.

Most of what a command prints comes from users and files: grid names and descriptions, cell labels,
prompts, `--set` values, paths, error messages. Read as rich markup, a `[/x]` in any of them raises
rich's `MarkupError` (after all the work is done, when it is in the results table) and a `[values]`
silently vanishes. So these consoles read no markup, no emoji codes and highlight nothing: every
string prints verbatim, and the styles of the commands' own words are given as spans of a `Text`.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def cli_console(stderr: bool = False) -> Console:
    """A console on which every string prints as it is written (see the module's docstring)."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


def styled(label: str, style: str, message: str = "") -> Text:
    """`label` in `style`, then ` message` verbatim: `styled("error:", "red", str(err))`."""
    return Text.assemble((label, style), f" {message}" if message else "")


def error_text(message: str) -> Text:
    return styled("error:", "red", message)


def note_text(message: str) -> Text:
    return styled("note:", "yellow", message)
