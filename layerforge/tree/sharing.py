"""Leave out a bundled library that another folder of the layer already ships byte for byte.

auditwheel gives each wheel its own copy of what it bundles: numpy.libs and scipy.libs both carry the
same libgfortran and libquadmath, the same bytes under the same name (3.1 MB on the sklearn stack). The
dynamic loader keeps one object per SONAME in a process: once numpy's import has loaded its copy, a
later request for that name from scipy's OpenBLAS is answered by the loaded object, and scipy's copy is
never opened. Which folder loads first is knowledge about the packages (scipy imports numpy before any
extension module of its own), not something a file shows, so a recipe declares it:
`[strip.shared_libraries] "scipy.libs" = "numpy.libs"`. What layerforge proves before it drops a copy:
1. the two copies are byte-identical, have the same file name, and each gives that name as its SONAME,
   the name the loader matches;
2. verification imports every extension module whose libraries would be looked for where the dropped
   copy was (its RPATH or RUNPATH, or those of the bundled library it loads), first thing in a fresh
   interpreter: a wrong declaration fails the build instead of a function.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..binaries.elfheaders import Dynamic
from ..binaries.needed import read_dynamic
from ..cache import sha256_of
from .unpack import LAYER_PREFIX, LayerTree

RULE_PREFIX = "recipe:shared_libraries"


@dataclass(frozen=True)
class SharedCopy:
    """A library left out because an identical one in `kept` is loaded first."""

    dropped: str  # path in the layer, under python/
    kept: str
    rule: str


def find_shared_copies(
    tree: LayerTree, shared: Mapping[str, str], removed: Iterable[str] = ()
) -> tuple[SharedCopy, ...]:
    """The copies `shared` (dropped folder -> kept folder) lets the layer leave out."""
    gone = set(removed)
    found: list[SharedCopy] = []
    for dropped_folder, kept_folder in sorted(shared.items()):
        kept = _libraries(tree, kept_folder)
        for name, path in _libraries(tree, dropped_folder).items():
            twin = kept.get(name)
            if path not in gone and twin is not None and twin not in gone and _same_library(tree, path, twin):
                found.append(SharedCopy(path, twin, _rule(dropped_folder, kept_folder)))
    return tuple(found)


def missing_copies(tree: LayerTree, shared: Mapping[str, str]) -> tuple[SharedCopy, ...]:
    """In a finished layer (`verify ZIP`): each library of a kept folder that the folder sharing it does
    not have. Whether it was dropped or never there, whatever looks for it there must find it loaded."""
    found: list[SharedCopy] = []
    for dropped_folder, kept_folder in sorted(shared.items()):
        present = _libraries(tree, dropped_folder)
        for name, path in _libraries(tree, kept_folder).items():
            if name not in present:
                dropped = f"{LAYER_PREFIX}/{dropped_folder}/{name}"
                found.append(SharedCopy(dropped, path, _rule(dropped_folder, kept_folder)))
    return tuple(found)


def _libraries(tree: LayerTree, folder: str) -> dict[str, str]:
    """File name -> layer path of the files directly in a top-level folder, in name order."""
    prefix = f"{LAYER_PREFIX}/{folder}/"
    return {
        path[len(prefix) :]: path
        for path in sorted(tree.files)
        if path.startswith(prefix) and "/" not in path[len(prefix) :]
    }


def _rule(dropped_folder: str, kept_folder: str) -> str:
    return f"{RULE_PREFIX}:{dropped_folder}={kept_folder}"


def _same_library(tree: LayerTree, path: str, twin: str) -> bool:
    """Byte for byte the same, answering to its file name: once loaded, the loader gives it for that name."""
    if tree.files[path].size != tree.files[twin].size:
        return False
    first, second = tree.root / path, tree.root / twin
    return _dynamic(first).soname == posixpath.basename(path) and sha256_of(first) == sha256_of(second)


def _dynamic(path: Path) -> Dynamic:
    """What the loader reads of an ELF file to find its libraries; nothing when it cannot be read.
    Mapped, not read: only the pages of the headers and the dynamic section are touched."""
    return read_dynamic(path) or Dynamic()


@dataclass(frozen=True)
class LoadProof:
    """The imports that prove a layer's shared copies are loaded before they are needed.

    `alone` holds, for each folder that lost copies, the extension modules whose libraries would be looked
    for there: each group must import with nothing imported before it, as on a cold start that imports
    only that package. `also` holds modules that need a library of the same name but find a copy of
    their own."""

    alone: tuple[tuple[str, ...], ...] = ()
    also: tuple[str, ...] = ()

    def order(self, modules: Iterable[str]) -> tuple[list[str], list[tuple[str, ...]]]:
        """The main check's import order (the first group, then `modules`, then `also`), and the groups
        that need a fresh interpreter of their own."""
        first, *others = self.alone or ((),)
        return list(dict.fromkeys([*first, *modules, *self.also])), others


@dataclass(frozen=True)
class _Object:
    needed: tuple[str, ...]
    answers_to: str
    searches: frozenset[str]  # layer folders its search path names ($ORIGIN resolved)


def load_proof(tree: LayerTree, copies: Iterable[SharedCopy]) -> LoadProof:
    """Which extension modules load a dropped copy's name, and which of them would look for it in the
    folder that no longer has it: directly, or through another bundled library that would."""
    copies = tuple(copies)
    if not copies:
        return LoadProof()
    objects = _objects(tree, {copy.dropped for copy in copies})
    gone: dict[str, set[str]] = {}  # library name -> the folders that lost their copy
    for copy in copies:
        gone.setdefault(posixpath.basename(copy.dropped), set()).add(posixpath.dirname(copy.dropped))
    verdicts: dict[str, str | None] = {}  # path -> the emptied folder its load looks in, None if none
    for _ in range(len(objects) + 1):  # risk spreads one library further each round, never back
        by_name = {obj.answers_to: verdicts[path] for path, obj in objects.items() if path in verdicts}
        changed = False
        for path, obj in objects.items():
            involved, folder = _verdict(obj, gone, by_name)
            if involved and (path not in verdicts or verdicts[path] != folder):
                verdicts[path] = folder
                changed = True
        if not changed:
            break
    alone: dict[str, list[str]] = {}
    also: list[str] = []
    for path, verdict in sorted(verdicts.items()):
        module = _extension_module(path)
        if module is None:
            continue
        if verdict is None:
            also.append(module)
        else:
            alone.setdefault(verdict, []).append(module)
    return LoadProof(tuple(tuple(group) for _, group in sorted(alone.items())), tuple(also))


def _verdict(
    obj: _Object, gone: dict[str, set[str]], by_name: dict[str, str | None]
) -> tuple[bool, str | None]:
    """(whether it needs a shared name at all, the emptied folder its load would look in)."""
    involved = False
    for name in obj.needed:
        emptied = gone.get(name, set()) & obj.searches
        if emptied:
            return True, min(emptied)
        if by_name.get(name) is not None:
            return True, by_name[name]
        involved = involved or name in gone or name in by_name
    return involved, None


def _objects(tree: LayerTree, dropped: set[str]) -> dict[str, _Object]:
    objects: dict[str, _Object] = {}
    for path in sorted(tree.files):
        name = posixpath.basename(path)
        if path in dropped or not (name.endswith(".so") or ".so." in name):
            continue
        dynamic = _dynamic(tree.root / path)
        if dynamic.needed:
            folder = posixpath.dirname(path)
            searches = frozenset(dynamic.search_folders(folder))
            objects[path] = _Object(dynamic.needed, dynamic.soname or name, searches)
    return objects


def _extension_module(path: str) -> str | None:
    """`python/scipy/linalg/_flapack.cpython-311-x86_64-linux-gnu.so` -> `scipy.linalg._flapack`."""
    parts = path.split("/")
    if parts[0] != LAYER_PREFIX or len(parts) < 2:
        return None
    *packages, filename = parts[1:]
    name = filename.split(".", 1)[0]
    dotted = [*packages, name]
    return ".".join(dotted) if all(part.isidentifier() for part in dotted) else None
