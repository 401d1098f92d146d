"""The `arlon-bench` command line: a thin layer over `arlon` and `bench` library functions.

`main()` is the one error boundary: an error the user can fix (ArlonError and subclasses) prints
one red line and exits with code 2; anything else is a bug and keeps its traceback.
`ARLON_DEBUG=1` shows tracebacks for known errors too.
"""

from __future__ import annotations

import errno
import os
from importlib.metadata import version
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from arlon.errors import ArlonError
from bench.cli import ablate as ablate_command
from bench.cli import compare as compare_command
from bench.cli import grids as grids_command
from bench.cli import perf as perf_command
from bench.cli import report as report_command
from bench.cli import sample as sample_command
from bench.cli import status as status_command
from bench.cli import toy_eval as toy_eval_command
from bench.cli import train as train_command
from bench.cli import validate as validate_command
from bench.cli import vbench as vbench_command


class LiteralHelpGroup(TyperGroup):
    """The command tree, with every help text, epilog and option help printed as written.

    Typer's default `rich_markup_mode="rich"` reads them as rich markup, which would eat a `[values]`
    in a help text (`--set KEY=[a, b]`); escaping them once, as Typer builds the tree, keeps its
    rich help panels and loses nothing.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        _escape_help(self)


def _escape_help(command: TyperCommand | TyperGroup) -> None:
    for owner in (command, *command.params):
        for attribute in ("help", "short_help", "epilog"):
            text = getattr(owner, attribute, None)
            if text:
                setattr(owner, attribute, escape(text))
    for subcommand in getattr(command, "commands", {}).values():
        _escape_help(subcommand)


app = typer.Typer(
    name="arlon-bench",
    help="Reproduce and extend ARLON: sample videos, train, run ablation grids, score and report.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="rich",
    cls=LiteralHelpGroup,
)
app.command(name="sample", epilog=sample_command.EXAMPLES)(sample_command.sample)
app.command(name="perf", epilog=perf_command.EXAMPLES)(perf_command.perf)
app.command(name="gpu-check", epilog=perf_command.GPU_CHECK_EXAMPLES)(perf_command.gpu_check)
app.command(name="train", epilog=train_command.EXAMPLES)(train_command.train)
app.command(name="prepare", epilog=train_command.PREPARE_EXAMPLES)(train_command.prepare)
app.command(name="toy-eval", epilog=toy_eval_command.EXAMPLES)(toy_eval_command.toy_eval)
app.command(name="ablate", epilog=ablate_command.ABLATE_EXAMPLES)(ablate_command.ablate)
app.command(name="generate", epilog=ablate_command.GENERATE_EXAMPLES)(ablate_command.generate)
app.command(name="score", epilog=ablate_command.SCORE_EXAMPLES)(ablate_command.score)
app.command(name="report", epilog=report_command.EXAMPLES)(report_command.report)
app.command(name="compare", epilog=compare_command.EXAMPLES)(compare_command.compare)
app.command(name="status", epilog=status_command.EXAMPLES)(status_command.status)
app.command(name="grids", epilog=grids_command.EXAMPLES)(grids_command.grids)
app.command(name="validate", epilog=validate_command.EXAMPLES)(validate_command.validate)
app.add_typer(vbench_command.app, name="vbench")
app.command(name="export-vbench", epilog=vbench_command.EXPORT_EXAMPLES)(vbench_command.export_vbench)
app.command(name="import-vbench", epilog=vbench_command.IMPORT_EXAMPLES)(vbench_command.import_vbench)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"arlon-bench {version('arlon-bench')}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Reproduce and extend ARLON: sample videos, train, run ablation grids, score and report."""

err_console = Console(stderr=True)

# What the user can do about an OSError that reaches the boundary: the machine's state (a full disk, a
# read-only folder, a path that is a file where a folder is needed) is not a bug of ours, and every
# write is atomic, so what was finished before it is kept and a rerun resumes from there.
FILESYSTEM_HINTS = {
    errno.ENOSPC: "free some space (or write elsewhere with --out) and run the command again; finished work is kept",
    errno.EDQUOT: "free some of your quota (or write elsewhere with --out) and run the command again; finished work is kept",
    errno.EACCES: "check the permissions of that path, or write elsewhere with --out",
    errno.EPERM: "check the permissions of that path, or write elsewhere with --out",
    errno.EROFS: "that file system is read-only: write elsewhere with --out",
    errno.EISDIR: "that path is a folder where a file is needed: give a file path",
    errno.ENOTDIR: "a part of that path is a file where a folder is needed: give another path",
    errno.ENOENT: "that path (or its folder) does not exist: check it",
    errno.ELOOP: "that path is a symbolic link loop: give another path",
    errno.ENAMETOOLONG: "give a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run the command again",
    errno.EIO: "the disk reported an I/O error: check the device, then run the command again",
}


def filesystem_error_line(err: OSError) -> str | None:
    """One line for an OSError of the machine's state, or None for one that is not (a bug keeps its traceback)."""
    hint = FILESYSTEM_HINTS.get(err.errno)
    if hint is None:
        return None
    where = f" ({err.filename})" if err.filename else ""
    return f"{err.strerror or err}{where}: {hint}"


def main() -> None:
    """Run the app in Typer's standalone mode, so that usage errors (an unknown option or command, a
    value of the wrong type, a missing required option) are shown by Typer itself as its usage message
    with exit code 2, whichever copy of Click the installed Typer carries (its own bundled one since
    Typer 0.16, the `click` package before). Commands exit with `typer.Exit(code)` or `SystemExit`.
    """
    try:
        app(prog_name="arlon-bench", standalone_mode=True)
    except ArlonError as err:
        if os.environ.get("ARLON_DEBUG") == "1":
            raise
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except OSError as err:
        line = filesystem_error_line(err)
        if line is None or os.environ.get("ARLON_DEBUG") == "1":
            raise
        err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
