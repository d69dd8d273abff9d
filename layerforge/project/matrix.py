"""The GitHub Actions matrix of a project: one job per cell, on a runner native to the cell's arch.

`--cells` keeps the cells whose names match a pattern; `--changed-since REF` keeps the cells whose
recipe file, committed lock or project entry changed since REF (in the working tree too), or whose lock
was written by another layerforge version than this one.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError, RecipeError
from .config import Cell, Project, project_from_text

# Native runners: an arm64 layer is import-checked on real aarch64, not under emulation.
RUNNERS = {"x86_64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}


def matrix(cells: Iterable[Cell]) -> dict[str, list[dict[str, str]]]:
    return {
        "include": [
            {
                "cell": cell.name,
                "recipe": cell.layer.spec,
                "runtime": cell.target.runtime,
                "arch": cell.target.arch,
                "runs-on": RUNNERS[cell.target.arch],
            }
            for cell in cells
        ]
    }


def select(cells: Sequence[Cell], patterns: Sequence[str]) -> tuple[Cell, ...]:
    """The cells whose names match any pattern (fnmatch: `sklearn-*-arm64`); a pattern matching none is
    an error, since a typo would otherwise build or publish nothing."""
    if not patterns:
        return tuple(cells)
    names = [cell.name for cell in cells]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            close = difflib.get_close_matches(pattern, names, n=1)
            suggestion = f"did you mean {close[0]!r}? " if close else ""
            raise InputError(
                f"no cell matches {pattern!r}", hint=f"{suggestion}cells: {', '.join(names) or 'none'}"
            )
    return tuple(cell for cell in cells if any(fnmatch.fnmatchcase(cell.name, p) for p in patterns))


def changed_since(project: Project, cells: Sequence[Cell], ref: str) -> tuple[Cell, ...]:
    root = _git(project.path.parent, "rev-parse", "--show-toplevel").strip()
    top = Path(root).resolve()
    if not _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False):
        raise InputError(
            f"--changed-since {ref}: no such commit in {top}",
            hint="name a commit, branch or tag (in GitHub Actions, check out with fetch-depth: 0)",
        )
    changed = {
        top / line
        for line in _git(top, "diff", "--name-only", ref, "--").splitlines()
        + _git(top, "ls-files", "--others", "--exclude-standard").splitlines()
        if line
    }
    before = _cells_at(project, top, ref)
    return tuple(cell for cell in cells if _changed(project, cell, changed, before))


def _changed(project: Project, cell: Cell, changed: set[Path], before: dict[str, Any] | None) -> bool:
    files = [cell.layer.recipe_file, project.lock_for(cell)]
    if any(path is not None and path.resolve() in changed for path in files):
        return True
    # A new cell, or one whose entry in the project file reads differently (another recipe, a new name).
    if before is None or before.get(cell.name) != cell.layer.spec:
        return True
    lock = project.lock_for(cell)
    return lock is not None and _lock_version(lock) not in (None, __version__)


def _cells_at(project: Project, top: Path, ref: str) -> dict[str, Any] | None:
    """Cell name -> recipe spec in the project file as it was at REF; None when it did not exist or load."""
    relative = project.path.resolve().relative_to(top).as_posix()
    try:
        text = _git(top, "show", f"{ref}:{relative}")
        old = project_from_text(text, project.path)
    except (InputError, RecipeError):
        return None
    return {cell.name: cell.layer.spec for cell in old.cells}


def _lock_version(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("layerforge_version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _git(where: Path, *args: str, check: bool = True) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise InputError("--changed-since needs git, which is not on PATH", hint="install git") from None
    if done.returncode != 0 and not check:
        return ""
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise InputError(
            f"git {' '.join(args[:2])} failed in {where}: {message}",
            hint="--changed-since takes a commit of the repository that holds the project file "
            "(in GitHub Actions, check out with fetch-depth: 0)",
        )
    return done.stdout
