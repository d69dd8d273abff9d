"""The folders of layerforge/ and which may import which (docs/architecture.md draws the same table).

Every import of a layerforge module is read with `ast`, deferred imports inside functions included, and
checked against ALLOWED. A wrong-way import fails here with the line that makes it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "layerforge"

# The foundation: Lambda facts as data, recipes, the exception hierarchy, and small shared utilities.
FOUNDATION = frozenset(
    {"__init__", "__version__", "target", "recipe", "errors", "events", "fsutil", "cache", "staging"}
    | {"limits", "system_libraries", "rangefile"}
    | {
        "member_cache",
        "piece_cache",
        "proof_cache",
        "audit_cache",
        "cache_admin",
    }  # more kinds of cache under the wheel cache's root, and their upkeep
)
# Subsystem (or top-level module) -> what it may import besides itself. The foundation may import only
# the foundation; `cli` may import everything and nothing imports it.
STAGES = frozenset({"runners", "resolve", "binaries", "tree", "verify", "report", "aws", "sbom"})
ALLOWED: dict[str, frozenset[str]] = {
    "foundation": frozenset(),
    "runners": frozenset(),
    "resolve": frozenset({"runners", "binaries"}),  # a host-built wheel must hold no native code
    "binaries": frozenset(),
    "tree": frozenset({"binaries", "runners"}),
    "verify": frozenset({"runners", "binaries", "tree"}),
    "aws": frozenset({"sbom"}),  # publish uploads the SBOM beside the zip
    "sbom": frozenset({"resolve", "tree", "binaries"}),
    "report": frozenset({"tree", "aws", "binaries"}),  # binaries: the system-library findings
    "build": STAGES,
    "function": STAGES | {"build"},
    "project": STAGES | {"build"},  # a project of layers: cells built, published, catalogued
    "doctor": STAGES | {"build", "function"},
}


def unit_of(module: str) -> str:
    """The folder (or `foundation`, or `build`) that a dotted module below layerforge belongs to."""
    parts = module.split(".")
    assert parts[0] == "layerforge", module
    head = parts[1] if len(parts) > 1 else "__init__"
    if head in ("__main__", "entry"):  # the console script and `python -m layerforge` start the CLI
        return "cli"
    if head in FOUNDATION:
        return "foundation"
    return head


def module_name(path: Path, root: Path = PACKAGE) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every layerforge import in the file, relative ones resolved."""
    module = module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name) for alias in node.names if alias.name.startswith("layerforge")
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if not stem.startswith("layerforge"):
                continue
            if node.module is None or (node.level == 0 and stem == "layerforge"):
                # `from . import a`: each name may itself be a module
                found += [(node.lineno, f"{stem}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, stem))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    wrong: list[str] = []
    for path in sorted(root.rglob("*.py")):
        here = unit_of(module_name(path, root))
        for line, target in imported_modules(path, root):
            there = unit_of(target)
            where = f"{path.relative_to(root.parent)}:{line} imports {target}"
            if there in (here, "foundation") or (here == "cli" and there != "cli"):
                continue
            if there == "cli":
                wrong.append(f"{where}: nothing imports cli")
            elif here == "foundation":
                wrong.append(f"{where}: the foundation imports no subsystem")
            elif there not in ALLOWED.get(here, frozenset()):
                wrong.append(f"{where}: {here} may not import {there}")
    return wrong


def test_imports_point_one_way() -> None:
    assert violations() == []


def test_every_folder_is_in_the_table() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - {"cli"} == set(ALLOWED) - {"foundation", "build"}
    top = {p.stem for p in PACKAGE.glob("*.py")}
    expected = (FOUNDATION - {"__version__"}) | {"__main__", "entry", "build"}
    assert top == expected, "a new top-level module belongs in a folder or in FOUNDATION"


def test_every_folder_says_what_it_owns_and_may_import() -> None:
    for folder in sorted(set(ALLOWED) - {"foundation", "build"}):
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and "May import" in doc, folder


@pytest.mark.parametrize(
    ("file", "line", "why"),
    [
        ("resolve/lock.py", "from ..verify.local import VerifyReport", "resolve may not import verify"),
        ("target.py", "from .tree.unpack import LayerTree", "the foundation imports no subsystem"),
        ("aws/layers.py", "from ..cli.output import render_error", "nothing imports cli"),
        ("runners/docker.py", "from ..verify import container", "runners may not import verify"),
        ("tree/slim.py", "    from ..report import size_report", "tree may not import report"),
        ("sbom/inventory.py", "from ..verify.local import VerifyReport", "sbom may not import verify"),
        ("binaries/audit.py", "from ..sbom import SBOM_SUFFIX", "binaries may not import sbom"),
    ],
)
def test_a_wrong_way_import_is_caught(tmp_path: Path, file: str, line: str, why: str) -> None:
    """The check itself, on a copy of the package with one wrong-way import added (deferred ones too)."""
    copy = tmp_path / "layerforge"
    for source in PACKAGE.rglob("*.py"):
        destination = copy / source.relative_to(PACKAGE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(source.read_text())
    changed = copy / file
    if line.startswith(" "):  # deferred, inside a function
        changed.write_text(changed.read_text() + f"\n\ndef _wrong_way() -> None:\n{line}\n")
    else:
        changed.write_text(f"{line}\n" + changed.read_text())
    found = violations(copy)
    assert len(found) == 1 and why in found[0], found
