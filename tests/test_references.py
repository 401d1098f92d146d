"""Every reference in the repository's code, comments and documents is one a reader can follow.

Allowed: the ARLON paper's sections and equations, upstream files and functions (Open-Sora v1.2,
VBench, ...), and pages of our own `docs/`. Not allowed: documents that exist outside the
repository (a numbered section of an outside specification, a numbered tracker issue, a path into a
shared folder of notes).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg"}
SKIPPED_DIRS = {".git", ".venv", "venv", "runs", "build", "dist", "node_modules", "__pycache__", ".pytest_cache"}

# Each pattern names a document a reader of the repository cannot open.
UNFOLLOWABLE = {
    "a section of a specification outside the repository": re.compile(
        r"\bspec(?:ification)?\s+(?:sections?\b|§|\d)", re.IGNORECASE
    ),
    "a numbered issue of an unnamed tracker": re.compile(r"\bissues?[ -]#?\d+", re.IGNORECASE),
    "a path into a shared folder outside the repository": re.compile(r"\bshared/specs?\b|/work/shared\b"),
    "a specification file outside the repository": re.compile(r"(?<![\w-])(?:opensora-v1\.2|vbench)\.md\b"),
    "an unnamed specification": re.compile(r"\b(?:from|in|see) the spec\b", re.IGNORECASE),
}
# `docs/page.md` or `docs/page.md, 'Heading'`: the page must exist, and the heading in it.
DOCS_CITATION = re.compile(r"(?<![\w/])docs/([\w.-]+\.md)(?:, '([^']+)')?")


def _candidate_files() -> list[Path]:
    """What git tracks or would track (ignored files, e.g. virtualenvs and CI's side installs, are not
    ours); every file below the root outside a git checkout."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return list(ROOT.rglob("*"))
    return [ROOT / name for name in listed.decode().split("\0") if name]


def scanned_files() -> list[Path]:
    """The repository's source, config and document files, without data: of reports/ and the tests'
    golden/ folders only the README pages are read (the rest is generated)."""
    files = []
    for path in _candidate_files():
        relative = path.relative_to(ROOT)
        if not path.is_file() or path == Path(__file__).resolve():
            continue
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative.parts[:-1]):
            continue
        is_data = relative.parts[0] == "reports" or "golden" in relative.parts[:-1]
        if is_data and path.name != "README.md":
            continue  # run results, copied grids, expected outputs
        if path.suffix in SCANNED_SUFFIXES or relative.parts[0] == ".ci":
            files.append(path)
    return sorted(files)


def _lines(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        yield f"{path.relative_to(ROOT)}:{number}", line


def test_the_scan_sees_the_code_the_comments_and_the_documents():
    relative = {str(p.relative_to(ROOT)) for p in scanned_files()}
    assert {"README.md", "arlon/models/stdit3.py", "bench/cli/app.py", "ablations/layers.yaml"} <= relative
    assert not any(name.startswith(("reports/tiny/", ".venv/")) for name in relative)


@pytest.mark.parametrize("kind", sorted(UNFOLLOWABLE))
def test_no_reference_to_a_document_outside_the_repository(kind):
    pattern = UNFOLLOWABLE[kind]
    found = [f"{where}: {line.strip()}" for path in scanned_files() for where, line in _lines(path) if pattern.search(line)]
    assert not found, f"{len(found)} line(s) cite {kind}; cite the paper, the upstream file or a docs/ page:\n" + "\n".join(found)


def test_every_cited_docs_page_and_heading_exists():
    missing = []
    for path in scanned_files():
        for where, line in _lines(path):
            for page, heading in DOCS_CITATION.findall(line):
                target = ROOT / "docs" / page
                if not target.is_file():
                    missing.append(f"{where}: docs/{page} does not exist")
                elif heading and not _has_heading(target, heading):
                    missing.append(f"{where}: docs/{page} has no heading starting with {heading!r}")
    assert not missing, "\n".join(missing)


def test_the_docs_pages_are_reachable_from_the_readme():
    pages = sorted((ROOT / "docs").glob("*.md"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert pages and all(f"docs/{page.name}" in readme for page in pages)


def _has_heading(page: Path, heading: str) -> bool:
    titles = [line.lstrip("#").strip() for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    return any(title.startswith(heading) for title in titles)
