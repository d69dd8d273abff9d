"""The size report's findings: the audit's check that every library each ELF object needs is found.

A function and its layers are one process on Lambda: a library in any layer's lib/ (/opt/lib) or the
function's lib/ (/var/task/lib) is on LD_LIBRARY_PATH for all of them, so each source is checked with
what all the others provide. The check is `binaries.audit`'s, in its words; only its system-library
findings are the size report's (the rest is `verify`'s). A published layer (`--layer-arn`) is read by
its central directory alone, so its objects are not checked, and the report says so.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..binaries.audit import Finding, audit_tree
from ..binaries.needed import CODE, library_names
from ..target import Target
from ..tree.layerzip import extract_layer, owners

_MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class LibraryCheck:
    """What the check found, or why it did not run (`target` None)."""

    target: Target | None
    findings: tuple[Finding, ...] = ()
    not_checked: tuple[str, ...] = ()  # sources whose objects could not be read
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "runtime": self.target.runtime if self.target else None,
            "arch": self.target.arch if self.target else None,
            "findings": [finding.as_dict() for finding in self.findings],
            "not_checked": list(self.not_checked),
            "reason": self.reason or None,
        }


def recorded_target(paths: Iterable[Path]) -> Target | None:
    """The runtime and architecture a build manifest records, given or beside a zip; the first found."""
    for path in paths:
        manifest = (
            path if path.name.endswith(_MANIFEST_SUFFIX) else path.with_name(path.stem + _MANIFEST_SUFFIX)
        )
        try:
            loaded = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(loaded, dict) and loaded.get("runtime") and loaded.get("arch"):
            return Target(str(loaded["runtime"]), str(loaded["arch"]))
    return None


def check_libraries(
    paths: Sequence[Path], target: Target | None, *, remote: Sequence[str] = ()
) -> LibraryCheck:
    """Check every local zip or folder of `paths` against `target`, each with what all provide."""
    if target is None:
        return LibraryCheck(
            None,
            reason="system libraries not checked: no build manifest names the runtime; pass --runtime",
        )
    with tempfile.TemporaryDirectory(prefix="layerforge-size-libraries-") as scratch:
        roots = [(path, _tree_of(path, Path(scratch) / str(number))) for number, path in enumerate(paths)]
        provided = frozenset().union(*(library_names(root) for _, (root, _) in roots))
        findings: list[Finding] = []
        for path, (root, origins) in roots:
            report = audit_tree(root, target, origins, provided=provided)
            label = _zip_of(path).name
            findings += [
                replace(finding, path=f"{label}:{finding.path}")
                for finding in report.findings
                if finding.code == CODE
            ]
    return LibraryCheck(target, tuple(findings), tuple(remote))


def _tree_of(path: Path, scratch: Path) -> tuple[Path, dict[str, str]]:
    """The source unpacked (a folder as it is), and which distribution ships each file."""
    if path.is_dir():
        return path, {}
    tree = extract_layer(_zip_of(path), scratch, python=False)
    return tree.root, owners(tree)


def _zip_of(path: Path) -> Path:
    if not path.name.endswith(_MANIFEST_SUFFIX):
        return path
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return path.parent / str(manifest["zip"])
