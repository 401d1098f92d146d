"""Usage errors are Typer's usage message and exit code 2, never a traceback, whichever Click the
installed Typer carries (Typer >= 0.16 bundles its own copy; the `click` package is not it)."""

from __future__ import annotations

import pytest

from tests.bench.cli_runner import run_main

USAGE_ERRORS = [
    (["ablate", "--grid", "layers", "--limit", "abc"], "--limit"),
    (["ablate"], "--grid"),
    (["ablate", "--grid", "layers", "--no-such-option"], "--no-such-option"),
    (["no-such-command"], "no-such-command"),
    (["compare"], "current"),
    (["sample", "--steps", "ten"], "--steps"),
    (["vbench", "no-such-subcommand"], "no-such-subcommand"),
]


@pytest.mark.parametrize("args,named", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_error_is_typer_usage_message_with_exit_2(capsys, monkeypatch, args, named):
    code, out, err = run_main(capsys, monkeypatch, *args)
    assert code == 2
    assert "Traceback" not in out + err
    assert "Usage: arlon-bench" in err
    assert named.lower() in err.lower()


def test_help_and_version_exit_0(capsys, monkeypatch):
    code, out, _ = run_main(capsys, monkeypatch, "--version")
    assert code == 0 and out.startswith("arlon-bench ")
    code, out, _ = run_main(capsys, monkeypatch, "ablate", "--help")
    assert code == 0 and "--grid" in out


def test_user_error_is_one_line_exit_2(capsys, monkeypatch):
    code, out, err = run_main(capsys, monkeypatch, "validate", "no/such/grid.yaml")
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "not found" in err


def test_full_disk_is_one_line_naming_the_file(capsys, monkeypatch):
    import errno

    import bench.cli.validate

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/results.csv")

    monkeypatch.setattr(bench.cli.validate, "validate_grid", full_disk)
    code, out, err = run_main(capsys, monkeypatch, "validate", "layers")
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "No space left on device" in lines[0] and "runs/x/results.csv" in lines[0] and "finished work is kept" in lines[0]


def test_an_oserror_that_is_no_machine_state_keeps_its_traceback(capsys, monkeypatch):
    import bench.cli.validate

    def bug(*args, **kwargs):
        raise OSError("a bug of ours, not the machine's state")

    monkeypatch.setattr(bench.cli.validate, "validate_grid", bug)
    with pytest.raises(OSError, match="a bug of ours"):
        run_main(capsys, monkeypatch, "validate", "layers")
