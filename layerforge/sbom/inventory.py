"""What a layer ships, read from its files: distributions (dist-info), native libraries, top-level names.

The same reading serves `build` (its tree knows which wheel each file came from) and `sbom ZIP` (a zip
from anywhere: the owner of `numpy.libs/` is the distribution named numpy, of `pkg/.libs/` the one whose
top_level.txt names pkg). Nothing is invented: a name without metadata has no version.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name

from ..binaries.elfheaders import mapped_file
from ..binaries.needed import dynamic_of
from ..cache import known_sha256
from ..resolve.locked import LockedPackage
from ..tree.toplevel import top_level_name
from ..tree.unpack import LAYER_PREFIX
from .licenses import LicenseInfo, license_of

_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


@dataclass(frozen=True)
class Distribution:
    name: str  # as its METADATA spells it
    version: str
    license: LicenseInfo
    dist_info: str  # layer path of the .dist-info folder
    wheel: str | None = None  # from the lock, when there is one
    sha256: str | None = None

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class NativeLibrary:
    """A shared object bundled by auditwheel (`<dist>.libs/`, or `<package>/.libs/`)."""

    path: str  # layer path
    soname: str | None
    sha256: str
    owner: str | None  # canonical name of the distribution that ships it

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Inventory:
    distributions: tuple[Distribution, ...]
    libraries: tuple[NativeLibrary, ...]
    top_level: tuple[str, ...]  # every importable top-level name in the layer
    unattributed: tuple[str, ...]  # top-level names no distribution's metadata claims

    def licenses(self) -> list[tuple[str, str | None, LicenseInfo]]:
        return [(d.name, d.version, d.license) for d in self.distributions]


def read_inventory(
    root: Path,
    paths: Iterable[str],
    *,
    owners: Mapping[str, str] | None = None,
    locked: Sequence[LockedPackage] = (),
) -> Inventory:
    """The inventory of the layer unpacked at `root`; `paths` are its files (`python/...`), `owners` the
    distribution of each file when known (a build's tree), `locked` the lock's pins."""
    paths = sorted(paths)
    pins: dict[str, LockedPackage] = {canonicalize_name(pin.name): pin for pin in locked}
    distributions, claimed = _distributions(root, paths, pins)
    by_key = {d.key: d for d in distributions}
    owner_of_package = {name: key for key, names in claimed.items() for name in names}
    libraries = []
    for path in paths:
        if not _is_bundled(path) or not (root / path).is_file():
            continue
        read = _read_library(root / path)
        if read is None:
            continue
        soname, sha256 = read
        owner = (owners or {}).get(path) or _owner_by_folder(path, by_key, owner_of_package)
        libraries.append(NativeLibrary(path, soname, sha256, owner))
    top_level = sorted(
        {name for path in paths if path.endswith(_MODULE_SUFFIXES) and (name := top_level_name(path))}
    )
    if owners:
        owned = {top_level_name(path) for path, owner in owners.items() if owner in by_key}
    else:
        owned = set(owner_of_package)
    return Inventory(
        distributions=tuple(distributions),
        libraries=tuple(libraries),
        top_level=tuple(top_level),
        unattributed=tuple(name for name in top_level if name not in owned),
    )


def _distributions(
    root: Path, paths: list[str], pins: Mapping[str, LockedPackage]
) -> tuple[list[Distribution], dict[str, set[str]]]:
    found: list[Distribution] = []
    claimed: dict[str, set[str]] = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != LAYER_PREFIX or not parts[1].endswith(".dist-info"):
            continue
        if parts[2] != "METADATA":
            continue
        headers = HeaderParser().parsestr((root / path).read_text("utf-8", "replace"))
        name, version = headers.get("Name"), headers.get("Version")
        if not name or not version:
            continue
        pin = pins.get(canonicalize_name(name))
        if pin is not None and pin.version != version:
            pin = None  # a lock of other versions says nothing about these files
        info_dir = path.rsplit("/", 1)[0]
        found.append(
            Distribution(
                name=name.strip(),
                version=version.strip(),
                license=license_of(headers),
                dist_info=info_dir,
                wheel=pin.wheel if pin else None,
                sha256=pin.sha256 if pin else None,
            )
        )
        top_level = root / info_dir / "top_level.txt"
        if top_level.is_file():
            names = top_level.read_text("utf-8", "replace").split()
            claimed.setdefault(canonicalize_name(name), set()).update(names)
    found.sort(key=lambda d: (d.key, d.version))
    return found, claimed


def _is_bundled(path: str) -> bool:
    """Under `python/<something>.libs/` or `python/<package>/.libs/`, where auditwheel grafts libraries."""
    folders = path.split("/")[1:-1]
    return path.startswith(LAYER_PREFIX + "/") and any(f.endswith(".libs") for f in folders)


def _owner_by_folder(
    path: str, by_key: Mapping[str, Distribution], packages: Mapping[str, str]
) -> str | None:
    head = path.split("/")[1]
    if head.endswith(".libs") and head != ".libs":
        key = canonicalize_name(head.removesuffix(".libs"))
        if key in by_key:
            return key
    return packages.get(head)


def _read_library(path: Path) -> tuple[str | None, str] | None:
    """(SONAME, sha256) of an ELF object, from one mapping of the file; None for anything else.

    A build's tree is links to pieces whose checkout proved each file's sha256: such a file's digest is
    taken from that proof (by inode, size and mtime, stat-ed before the mapping), and only the pages that
    hold its headers are read (the sklearn stack bundles 52 MB of libraries)."""
    found = os.stat(path)
    with mapped_file(path) as data:
        if bytes(data[:4]) != b"\x7fELF":
            return None
        dynamic = dynamic_of(data)
        soname = dynamic.soname if dynamic is not None else None
        return soname, known_sha256(found) or hashlib.sha256(data).hexdigest()
