"""Which shared objects the verifying process loaded from the host, and which of those Lambda lacks.

The static audit (`binaries/needed.py`) sees DT_NEEDED; it cannot see `ctypes.CDLL("libX11.so.6")` or a
`dlopen` in C code. The bootstrap lists what its process has mapped after the imports and after the
smoke code (`_bootstrap._loaded_objects`); this module sorts each object into one of three:
- the layer's: under the read-only copy of the layer (its `lib/` included);
- the interpreter's: the interpreter's executable, libpython, the standard library's extension modules
  (lib-dynload), and every library these need, transitively (libssl for `_ssl`, libffi for `_ctypes`):
  Lambda's Python brings its own, whatever this host's are; glibc's own libraries, its gconv and NSS
  modules, which every runtime has in its own build;
- the host's: anything else. One that is neither in the runtime's table nor provided by another layer
  or `[audit] system_libraries` fails verification, in the static audit's words.

In a container (`container.py`) the filesystem outside the layer is the Lambda image's own, which is
what the function gets on Lambda: nothing loaded from it is refused there, so this check runs for a
local interpreter only, where the host is not the runtime.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..binaries.needed import read_dynamic
from ..system_libraries import is_glibc_own, missing_library, runtime_libraries
from ..target import Target

# What loads a library that no DT_NEEDED names, as far as the check can tell.
_DLOPEN = "the layer's code (ctypes or dlopen, at import or in the smoke code)"


@dataclass(frozen=True)
class HostLibrary:
    """A library the check loaded from this machine that Lambda's runtime will not have."""

    name: str
    path: str  # where this machine had it
    message: str
    fix: str


def host_libraries(
    records: Iterable[Mapping[str, Any] | None],
    *,
    layer: Path,
    target: Target,
    provided: Iterable[str] = (),
    runtime_paths: Iterable[str] = (),
) -> tuple[HostLibrary, ...]:
    """One entry per library loaded from the host that Lambda's runtime does not have.

    `records` are the bootstrap runs' `loaded_objects` (None for a run that died first); `layer` is the
    read-only copy the runs saw; `provided` names libraries another layer or the recipe supplies;
    `runtime_paths` are folders that stand in for the runtime's own packages (theirs, like the
    interpreter's)."""
    paths: set[str] = set()
    own_roots: set[str] = set(runtime_paths)
    executables: set[str] = set()
    for record in records:
        if record:
            paths.update(str(path) for path in record.get("paths", []))
            own_roots.add(str(record.get("stdlib", "")))
            executables.add(str(record.get("executable", "")))
    layer_root = os.path.realpath(layer) + os.sep
    in_layer = {path for path in paths if os.path.realpath(path).startswith(layer_root)}
    others = sorted(paths - in_layer)
    names = {path: _name(path) for path in others}
    interpreter = _interpreter_closure(others, names, own_roots - {""}, executables - {""})
    allowed = runtime_libraries(target) | frozenset(provided)
    refused = [
        path
        for path in others
        if path not in interpreter and names[path] not in allowed and not _system_own(path, names[path])
    ]
    if not refused:
        return ()
    # Only a refusal names its needers: reading every layer object's dynamic section is for that case.
    needers = _needers(in_layer, layer_root)
    # What a refused library needs goes with it (libX11 brings libxcb): the one to fix is the first.
    brought = {library for path in refused for library in _needed(path)}
    failures: list[HostLibrary] = []
    for path in refused:
        name = names[path]
        if name in brought and name not in needers:
            continue
        message, fix = missing_library((name,), needers.get(name, _DLOPEN), None, target)
        failures.append(HostLibrary(name, path, message, fix))
    return tuple(failures)


def _needed(path: str) -> tuple[str, ...]:
    dynamic = read_dynamic(Path(path))
    return dynamic.needed if dynamic is not None else ()


def _name(path: str) -> str:
    """The name the loader knows an object by: its SONAME, else its file name."""
    dynamic = read_dynamic(Path(path))
    return dynamic.soname if dynamic is not None and dynamic.soname else posixpath.basename(path)


def _interpreter_closure(
    paths: list[str], names: Mapping[str, str], roots: set[str], executables: set[str]
) -> set[str]:
    """The interpreter's own objects and, transitively, the host libraries they need."""
    own = {
        path
        for path in paths
        if posixpath.basename(path).startswith("libpython")
        or any(path.startswith(root.rstrip("/") + "/") for root in roots)
    }
    wanted: set[str] = set()
    for path in (*executables, *own):
        wanted.update(_needed(path))
    grew = True
    while grew:
        grew = False
        for path in paths:
            if path in own or (names[path] not in wanted and posixpath.basename(path) not in wanted):
                continue
            own.add(path)
            wanted.update(_needed(path))
            grew = True
    return own


def _needers(in_layer: set[str], layer_root: str) -> dict[str, str]:
    """Library name -> the first layer object (as a layer path) whose DT_NEEDED names it."""
    found: dict[str, str] = {}
    for path in sorted(in_layer):
        for library in _needed(path):
            found.setdefault(library, os.path.realpath(path)[len(layer_root) :])
    return found


def _system_own(path: str, name: str) -> bool:
    """glibc's own libraries and the modules it loads itself (charset converters, NSS)."""
    return is_glibc_own(name) or "/gconv/" in path or name.startswith("libnss_")
