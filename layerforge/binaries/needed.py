"""Will the loader on Lambda find every library each ELF object of a layer needs (its DT_NEEDED)?

The host that builds has libGL, libX11 and libglib; Lambda's runtimes do not. A name is found, as the
target's loader would find it:
- in the layer: in a folder of the object's RUNPATH/RPATH (`$ORIGIN` resolved, `/opt/...` mapped into
  the layer), in the layer's `lib/` (Lambda puts /opt/lib on LD_LIBRARY_PATH), or by a SONAME some
  object of the layer answers to (auditwheel's bundled copies: once loaded, the loader reuses them);
- in the runtime itself (`system_libraries.runtime_libraries`);
- in what the caller says is provided elsewhere: another layer's `lib/`, `[audit] system_libraries`.
Anything else is an error finding worded by `system_libraries.missing_library`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ..cache import file_identity
from ..system_libraries import LAYER_LIBRARY_FOLDER, LAYER_MOUNT, missing_library, runtime_libraries
from ..target import Target
from .elfheaders import Dynamic, ElfHeaders, NotReadable, mapped_file

CODE = "system-library"


@dataclass(frozen=True)
class LinkedObject:
    """One ELF object of the layer and what its dynamic section asks of the loader."""

    path: str  # layer-relative posix path
    origin: str | None  # the wheel it came from
    dynamic: Dynamic


@dataclass(frozen=True)
class MissingLibrary:
    """The libraries one object needs that the loader on the target will not find."""

    libraries: tuple[str, ...]
    path: str
    origin: str | None
    message: str
    fix: str


def read_dynamic(path: Path) -> Dynamic | None:
    """The object's NEEDED, SONAME and search path; None when it cannot be read (the audit says so).

    Remembered by the file's identity (cache.file_identity, as the proved digests are): a build's load
    proof reads every shared object of the tree before the checks, and the verification cache the ones
    they loaded after them, at the end of the build."""
    try:
        identity = file_identity(os.stat(path))
    except OSError:
        return None
    if identity in _READ:
        return _READ[identity]
    try:
        with mapped_file(path) as view:
            dynamic = dynamic_of(view)
    except OSError:
        return None
    if len(_READ) >= _READ_KEPT:  # a process that builds many layers keeps the last ones only
        _READ.clear()
    _READ[identity] = dynamic
    return dynamic


_READ: dict[tuple[int, int, int, int], Dynamic | None] = {}
_READ_KEPT = 16_384


def dynamic_of(data: bytes | memoryview) -> Dynamic | None:
    """`read_dynamic` of an object already in memory (mapped)."""
    try:
        return ElfHeaders.parse(data).dynamic(data)
    except NotReadable:
        return None


def missing_libraries(
    objects: Iterable[LinkedObject], files: Iterable[str], target: Target, provided: Iterable[str] = ()
) -> tuple[MissingLibrary, ...]:
    """Each object with the libraries the loader would not find for it on `target`, in path order.

    `files` are every layer-relative path of the layer (a library is found by file name in a folder);
    `provided` are SONAMEs available from elsewhere (other layers, the recipe's declaration)."""
    objects = sorted(objects, key=lambda obj: obj.path)
    present = frozenset(files)
    answers = {obj.dynamic.soname for obj in objects if obj.dynamic.soname}
    available = runtime_libraries(target) | frozenset(provided) | answers
    found: list[MissingLibrary] = []
    for obj in objects:
        folders = (*_search_folders(obj), LAYER_LIBRARY_FOLDER)
        missing = tuple(
            library
            for library in dict.fromkeys(obj.dynamic.needed)
            if "/" not in library
            and library not in available
            and not any(posixpath.join(folder, library) in present for folder in folders)
        )
        if missing:
            message, fix = missing_library(missing, obj.path, distribution_of(obj.origin), target)
            found.append(MissingLibrary(missing, obj.path, obj.origin, message, fix))
    return tuple(found)


def _search_folders(obj: LinkedObject) -> Iterator[str]:
    for folder in obj.dynamic.search_folders(posixpath.dirname(obj.path)):
        if folder.startswith(LAYER_MOUNT + "/"):
            yield folder[len(LAYER_MOUNT) + 1 :]
        elif not folder.startswith("/"):  # else a folder of the build machine: not on Lambda
            yield folder


def library_names(root: Path) -> frozenset[str]:
    """What a layer's `lib/` offers the loader: its file names and the SONAMEs its objects answer to."""
    folder = root / LAYER_LIBRARY_FOLDER
    if not folder.is_dir():
        return frozenset()
    names: set[str] = set()
    for path in folder.iterdir():
        if path.is_file():
            names.add(path.name)
            dynamic = read_dynamic(path)
            if dynamic is not None and dynamic.soname:
                names.add(dynamic.soname)
    return frozenset(names)


def distribution_of(origin: str | None) -> str | None:
    """The project a wheel file name belongs to; the name as given when it is not a wheel's."""
    if origin is None:
        return None
    try:
        name, *_ = parse_wheel_filename(origin)
    except InvalidWheelFilename:
        return origin
    return str(name)
