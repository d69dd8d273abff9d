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
2. verification imports every extension module that needs the dropped copy, directly or through another
   bundled library, first thing in a fresh interpreter: a wrong declaration fails the build instead of
   a function.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .binfmt import sniff
from .cache import sha256_of
from .elfheaders import ElfHeaders, NotReadable, mapped_file
from .unpack import LAYER_PREFIX, LayerTree

RULE_PREFIX = "recipe:shared_libraries"


@dataclass(frozen=True)
class SharedCopy:
    """A library left out because an identical one in `kept` is loaded first."""

    dropped: str  # path in the layer, under python/
    kept: str
    rule: str
    distribution: str  # the one that loses its copy


def find_shared_copies(
    tree: LayerTree, shared: Mapping[str, str], removed: Iterable[str] = ()
) -> tuple[SharedCopy, ...]:
    """The copies `shared` (dropped folder -> kept folder) lets the layer leave out."""
    gone = set(removed)
    found: list[SharedCopy] = []
    for dropped_folder, kept_folder in sorted(shared.items()):
        rule = f"{RULE_PREFIX}:{dropped_folder}={kept_folder}"
        prefix = f"{LAYER_PREFIX}/{dropped_folder}/"
        for path in sorted(tree.files):
            if not path.startswith(prefix) or "/" in path[len(prefix) :] or path in gone:
                continue
            twin = f"{LAYER_PREFIX}/{kept_folder}/{path[len(prefix) :]}"
            if twin in tree.files and twin not in gone and _same_library(tree, path, twin):
                found.append(SharedCopy(path, twin, rule, tree.files[path].distribution))
    return tuple(found)


def _same_library(tree: LayerTree, path: str, twin: str) -> bool:
    if tree.files[path].size != tree.files[twin].size or path in tree.held or twin in tree.held:
        return False
    first, second = tree.root / path, tree.root / twin
    name = posixpath.basename(path)
    return _soname(first) == name == _soname(second) and sha256_of(first) == sha256_of(second)


def _soname(path: Path) -> str | None:
    if sniff(path).kind != "elf":
        return None
    return _dynamic_names(path)[1]


def _dynamic_names(path: Path) -> tuple[tuple[str, ...], str | None]:
    """(DT_NEEDED names, DT_SONAME) of an ELF file; empty when it cannot be read. Mapped, not read: only
    the pages of the headers and the dynamic section are touched."""
    try:
        with mapped_file(path) as view:
            return ElfHeaders.parse(view).dynamic_names(view)
    except (OSError, ValueError, NotReadable):  # ValueError: an empty file cannot be mapped
        return (), None


@dataclass(frozen=True)
class LoadProof:
    """The imports that prove a layer's shared copies are loaded before they are needed.

    `alone` holds, for each distribution that lost a copy, its extension modules that need it: each group
    must import with nothing imported before it, as on a cold start that imports only that package.
    `also` holds modules that need a library of the same name but keep their own copy."""

    alone: tuple[tuple[str, ...], ...] = ()
    also: tuple[str, ...] = ()


def load_proof(tree: LayerTree, copies: Iterable[SharedCopy]) -> LoadProof:
    """Which extension modules load a dropped copy, directly or through other bundled libraries."""
    copies = tuple(copies)
    if not copies:
        return LoadProof()
    losers = {copy.distribution for copy in copies}
    alone: dict[str, list[str]] = {}
    also: list[str] = []
    for path, module in _modules_needing(tree, copies):
        distribution = tree.files[path].distribution
        if distribution in losers:
            alone.setdefault(distribution, []).append(module)
        else:
            also.append(module)
    return LoadProof(tuple(tuple(group) for _, group in sorted(alone.items())), tuple(also))


def _modules_needing(tree: LayerTree, copies: tuple[SharedCopy, ...]) -> list[tuple[str, str]]:
    """(path, module) of each extension module that needs a dropped copy's name, in path order."""
    dropped = {copy.dropped for copy in copies}
    libraries: dict[str, tuple[tuple[str, ...], str]] = {}  # path -> (needed, the name it answers to)
    for path in sorted(tree.files):
        name = posixpath.basename(path)
        if path in dropped or path in tree.held or not (name.endswith(".so") or ".so." in name):
            continue
        needed, soname = _dynamic_names(tree.root / path)
        if needed:
            libraries[path] = (needed, soname or name)
    wanted = {posixpath.basename(path) for path in dropped}
    modules: dict[str, str] = {}
    grew = True
    while grew:  # a library that needs a wanted name is wanted too, until nothing new turns up
        grew = False
        for path, (needed, answers_to) in libraries.items():
            if path in modules or answers_to in wanted or not wanted.intersection(needed):
                continue
            module = _extension_module(path)
            if module is not None:
                modules[path] = module
            else:
                wanted.add(answers_to)
                grew = True
    return sorted(modules.items())


def _extension_module(path: str) -> str | None:
    """`python/scipy/linalg/_flapack.cpython-311-x86_64-linux-gnu.so` -> `scipy.linalg._flapack`."""
    parts = path.split("/")
    if parts[0] != LAYER_PREFIX or len(parts) < 2:
        return None
    *packages, filename = parts[1:]
    name = filename.split(".", 1)[0]
    dotted = [*packages, name]
    return ".".join(dotted) if all(part.isidentifier() for part in dotted) else None
