"""Static checks of a layer tree: will every binary in it load on the target Lambda runtime?

Runs on any host and never executes, imports or loads what it audits. It catches, before an upload:
Windows or macOS binaries (the seed guide's Error 3), extension modules built for another Python (its
Error 4) or another architecture, objects that need a newer glibc than the runtime's Amazon Linux, and
objects that need a library neither the layer nor the runtime has (libGL.so.1: see `needed`).
Each finding names the file, the wheel it came from, and what to do.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerSymSection
from elftools.elf.sections import SymbolTableSection
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ..audit_cache import AuditCache
from ..cache import known_sha256
from ..errors import AuditError
from ..piece_cache import code_fingerprint
from ..target import RUNTIMES, Target
from . import elfheaders, needed, version_needs
from .binfmt import E_MACHINES, ElfIdent, Sniffed, iter_files, sniff
from .elfheaders import Dynamic, NotReadable, mapped_file
from .needed import CODE as MISSING_LIBRARY
from .needed import LinkedObject, distribution_of, dynamic_of, missing_libraries

Severity = Literal["error", "warning"]
Version = tuple[int, int]

_WINDOWS_SUFFIXES = frozenset({".pyd", ".dll", ".exe"})
_MACOS_SUFFIXES = frozenset({".dylib"})
# CPython on Linux imports only `.cpython-XY-<machine>-linux-gnu.so`, `.abi3.so` and `.so` (its
# importlib.machinery.EXTENSION_SUFFIXES): a file with any other tag is never even looked at.
_CPYTHON_TAG = re.compile(r"\.cpython-(?P<major>\d)(?P<minor>\d+)(?P<flags>[a-z]*)-(?P<platform>[\w-]+)\.so$")
_PYPY_TAG = re.compile(r"\.pypy\d+-pp\d+-[\w-]+\.so$")
_WINDOWS_TAG = re.compile(r"\.cp(?P<major>\d)(?P<minor>\d+)-(?P<platform>win\w+)\.pyd$", re.IGNORECASE)
_GLIBC_VERSION = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)*$")
_MAX_SYMBOLS_NAMED = 5
# Version indexes 0 and 1 are "local" and "global"; bit 15 marks a hidden version (ELF gABI).
_VERSYM_HIDDEN = 0x8000
_SHT_DYNSYM = 11
_SHT_GNU_VERSYM = 0x6FFFFFFF
_ELF_READ_ERRORS = (ELFError, ConstructError, NotReadable, struct.error, OSError, ValueError, KeyError)


@dataclass(frozen=True)
class Finding:
    """One problem with one file. Errors fail a build; warnings are shown and kept in the report."""

    severity: Severity
    code: str
    path: str
    origin: str | None
    message: str
    fix: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.path}{_from(self.origin)}: {self.message}\n    fix: {self.fix}"


@dataclass(frozen=True)
class AuditReport:
    """Every finding in sorted path order, and what the audit saw: ELF objects by machine, newest GLIBC."""

    findings: tuple[Finding, ...]
    shared_objects: int
    machines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    max_glibc: Version | None = None

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "shared_objects": self.shared_objects,
            "machines": dict(self.machines),
            "max_glibc": ".".join(map(str, self.max_glibc)) if self.max_glibc else None,
            "findings": [f.as_dict() for f in self.findings],
        }

    def raise_for_errors(self) -> None:
        errors = self.errors
        if not errors:
            return
        listing = "\n".join(f"  - {f.describe()}" for f in errors)
        raise AuditError(
            f"the audit found {len(errors)} binar{'y' if len(errors) == 1 else 'ies'} "
            f"that cannot load on the target:\n{listing}",
            hint="each would fail at import on Lambda; apply the fix shown for each file and build again",
        )


def audit_tree(
    root: Path,
    target: Target,
    origins: Mapping[str, str] | None = None,
    *,
    provided: Iterable[str] = (),
    cache_dir: Path | None = None,
) -> AuditReport:
    """Check every file under `root` against `target`. `origins` maps relative posix paths to wheel names;
    `provided` names libraries (SONAMEs) that another layer or the recipe's `[audit] system_libraries`
    supplies at run time. With `cache_dir`, what was read of an object whose sha256 this process has
    proved (a piece's checkout, cache.py) is filed there, and read back instead of the object next time."""
    origins = origins or {}
    readings = _Readings(AuditCache(cache_dir) if cache_dir is not None else None, target)
    findings: list[Finding] = []
    machines: Counter[str] = Counter()
    max_glibc: Version | None = None
    files: list[str] = []
    linked: list[LinkedObject] = []
    for rel, path in iter_files(root):
        files.append(rel)
        result = _audit_file(path, rel, target, origins.get(rel), readings)
        findings.extend(result.findings)
        if result.elf is not None:
            machines[result.elf.machine] += 1
        if result.glibc is not None and (max_glibc is None or result.glibc > max_glibc):
            max_glibc = result.glibc
        if result.dynamic is not None:
            linked.append(LinkedObject(rel, origins.get(rel), result.dynamic))
    for missing in missing_libraries(linked, files, target, provided):
        findings.append(
            Finding("error", MISSING_LIBRARY, missing.path, missing.origin, missing.message, missing.fix)
        )
    findings.sort(key=lambda finding: finding.path)  # stable: one file's findings keep their order
    return AuditReport(
        findings=tuple(findings),
        shared_objects=sum(machines.values()),
        machines=MappingProxyType(dict(sorted(machines.items()))),
        max_glibc=max_glibc,
    )


@dataclass(frozen=True)
class _FileResult:
    findings: tuple[Finding, ...] = ()
    elf: ElfIdent | None = None
    glibc: Version | None = None
    dynamic: Dynamic | None = None  # what the loader must find for it, when it is for the target


def _audit_file(path: Path, rel: str, target: Target, origin: str | None, readings: _Readings) -> _FileResult:
    sniffed = sniff(path)
    suffix = path.suffix.lower()
    if sniffed.kind == "pe" or suffix in _WINDOWS_SUFFIXES:
        return _FileResult((_foreign(rel, origin, target, "windows"),))
    if sniffed.kind == "macho" or suffix in _MACOS_SUFFIXES:
        return _FileResult((_foreign(rel, origin, target, "macos"),))
    if sniffed.kind != "elf":
        return _FileResult(tuple(_check_tag(rel, origin, target, arch_reported=False)))
    return _audit_elf(path, rel, target, origin, sniffed, readings)


def _audit_elf(
    path: Path, rel: str, target: Target, origin: str | None, sniffed: Sniffed, readings: _Readings
) -> _FileResult:
    ident = sniffed.elf
    if ident is None:
        return _FileResult((_unreadable(rel, origin, "its ELF header is truncated or malformed"),))
    header = _check_header(ident, rel, origin, target)
    tag = _check_tag(rel, origin, target, arch_reported=header is not None)
    if header is not None:
        # Symbol versions of an object that cannot load anyway would only add noise.
        return _FileResult((header, *tag), ident)
    try:
        needs, dynamic = readings.read(path)
    except _ELF_READ_ERRORS as exc:
        unreadable = _unreadable(rel, origin, f"its ELF structure could not be read ({exc})")
        return _FileResult((*tag, unreadable), ident)
    too_new = _check_glibc(needs, rel, origin, target)
    return _FileResult((*tag, *too_new), ident, needs.newest, dynamic)


# --- foreign binaries -------------------------------------------------------------------------------------


def _foreign(rel: str, origin: str | None, target: Target, system: Literal["windows", "macos"]) -> Finding:
    name = rel.rsplit("/", 1)[-1]
    is_extension = name.lower().endswith((".pyd", ".so"))
    # A pure wheel may carry launchers for other systems as data (setuptools' cli-64.exe, distlib's
    # t64.exe): Linux never loads them, so they are dead weight, not a broken import.
    severity: Severity = "error" if is_extension or _wheel_is_for(origin, system) else "warning"
    label = "Windows" if system == "windows" else "macOS"
    if is_extension:
        message = (
            f"{label} extension module{_built_for(name)} in a layer for {target.runtime} on Linux: "
            f'Lambda cannot load it, so the import fails with "No module named ..."'
        )
    else:
        message = f"{label} binary in a layer for Linux: nothing on Lambda can load it"
    wheel_kind = "win_amd64" if system == "windows" else "macosx"
    fix = (
        f"build the layer for the Linux target with layerforge "
        f"(`layerforge build RECIPE --runtime {target.runtime} --arch {target.arch}`), which picks "
        f"manylinux wheels, never a {wheel_kind} wheel; if you run pip yourself, pass "
        f"`--platform manylinux2014_{target.machine} --only-binary=:all:`"
    )
    if origin and any(p.startswith("manylinux") for p in _wheel_platforms(origin)):
        # The wheel says Linux and ships a foreign binary: its tag lies, and no choice of wheel was wrong.
        fix = (
            f"the wheel {origin} is tagged for Linux but ships a {label} binary: its tag lies. Pin another "
            f"release of it (or build it from source in the Lambda image), and report it to its maintainers"
        )
    if severity == "warning":
        fix = "nothing breaks; to save space, remove it with a `[strip] remove` rule in the recipe"
    return Finding(severity, f"{system}-binary", rel, origin, message, fix)


def _built_for(name: str) -> str:
    match = _WINDOWS_TAG.search(name)
    if match is None:
        return ""
    return f" (built for Python {match['major']}.{match['minor']} on {match['platform']})"


def _wheel_is_for(origin: str | None, system: Literal["windows", "macos"]) -> bool:
    prefix = "win" if system == "windows" else "macosx"
    return any(platform.startswith(prefix) for platform in _wheel_platforms(origin))


def _wheel_platforms(origin: str | None) -> frozenset[str]:
    if origin is None:
        return frozenset()
    try:
        _, _, _, tags = parse_wheel_filename(origin)
    except InvalidWheelFilename:
        return frozenset()
    return frozenset(tag.platform for tag in tags)


# --- ELF header and extension-module tags -----------------------------------------------------------------


def _check_header(ident: ElfIdent, rel: str, origin: str | None, target: Target) -> Finding | None:
    if ident.bits != 64 or not ident.little_endian:
        shape = f"{ident.bits}-bit {'little' if ident.little_endian else 'big'}-endian"
        message = f"{shape} ELF object for {ident.machine}: Lambda loads only 64-bit little-endian code"
        return Finding("error", "elf-class", rel, origin, message, _fix_arch(target))
    if ident.e_machine == E_MACHINES[target.machine]:
        return None
    message = (
        f"built for {ident.machine}, but the layer targets {target.arch} ({target.machine}): it fails to "
        f'load, with the misleading "cannot open shared object file: No such file or directory"'
    )
    return Finding("error", "elf-machine", rel, origin, message, _fix_arch(target))


def _fix_arch(target: Target) -> str:
    other = next(arch for arch in ("x86_64", "arm64") if arch != target.arch)
    return (
        f"rebuild with `layerforge build RECIPE --arch {target.arch}`, which picks {target.machine} wheels; "
        f"if you meant an {other} layer, build it with `--arch {other}` and use it with {other} functions"
    )


def _check_tag(rel: str, origin: str | None, target: Target, *, arch_reported: bool) -> list[Finding]:
    """The ABI tag in an extension module's name decides whether CPython even looks at the file."""
    name = rel.rsplit("/", 1)[-1]
    if _PYPY_TAG.search(name):
        message = "PyPy extension module: Lambda runs CPython, which never imports it"
        return [Finding("error", "abi-tag", rel, origin, message, _fix_python(target, None))]
    match = _CPYTHON_TAG.search(name)
    if match is None:
        return []  # `foo.abi3.so` and plain `foo.so` load on every CPython 3
    findings: list[Finding] = []
    version = (int(match["major"]), int(match["minor"]))
    if version != target.python_version:
        message = (
            f"python{version[0]}.{version[1]} extension in a python{target.python_dotted} layer: "
            f"{target.runtime} imports only *.cpython-{target.abi[2:]}-{target.machine}-linux-gnu.so, "
            f'*.abi3.so and *.so, so the import fails with "No module named ..."'
        )
        findings.append(Finding("error", "abi-tag", rel, origin, message, _fix_python(target, version)))
    elif match["flags"]:
        kind = "free-threaded" if "t" in match["flags"] else "debug"
        abi = f"{target.abi}{match['flags']}"
        message = f"extension for the {kind} CPython build ({abi}): Lambda runs the default build"
        fix = f"pin a wheel tagged {target.abi}, not {target.abi}{match['flags']}"
        findings.append(Finding("error", "abi-tag", rel, origin, message, fix))
    platform_finding = _check_tag_platform(match["platform"], rel, origin, target, arch_reported)
    if platform_finding is not None:
        findings.append(platform_finding)
    return findings


def _check_tag_platform(
    platform: str, rel: str, origin: str | None, target: Target, arch_reported: bool
) -> Finding | None:
    expected = f"{target.machine}-linux-gnu"
    if platform == expected:
        return None
    arch, _, system = platform.partition("-")
    if system == "linux-gnu":
        if arch_reported:
            return None  # one problem, one finding: the ELF header check named the architecture
        message = f"extension module tagged for {arch} in a layer for {target.machine}: CPython skips it"
        return Finding("error", "abi-tag", rel, origin, message, _fix_arch(target))
    if system == "linux-musl":
        message = "extension module built for musl libc (a musllinux wheel): Lambda's Amazon Linux uses glibc"
        fix = f"use manylinux wheels: `layerforge build RECIPE --runtime {target.runtime}` never picks musl"
        return Finding("error", "abi-tag", rel, origin, message, fix)
    message = f"extension module tagged for {platform}, not {expected}: CPython on Lambda will not import it"
    return Finding("error", "abi-tag", rel, origin, message, _fix_python(target, None))


def _fix_python(target: Target, version: Version | None) -> str:
    pinned = f"pin a wheel built for {target.abi} (manylinux, {target.machine})"
    runtime = f"python{version[0]}.{version[1]}" if version else None
    if runtime in RUNTIMES and runtime != target.runtime:
        return f"rebuild with `layerforge build RECIPE --runtime {runtime}` or {pinned}"
    build = f"`layerforge build RECIPE --runtime {target.runtime}`"
    return f"rebuild with {build}, which picks {target.abi} wheels, or {pinned}"


# --- GLIBC symbol versions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GlibcNeeds:
    """GLIBC versions an object requires: version-table index -> (major, minor)."""

    by_index: Mapping[int, Version]
    symbols: Mapping[Version, tuple[str, ...]] = field(default_factory=dict)

    @property
    def newest(self) -> Version | None:
        return max(self.by_index.values(), default=None)


def _read_object(path: Path, above: Version) -> tuple[_GlibcNeeds, Dynamic | None]:
    """Its `.gnu.version_r` (the symbols named only when some version is newer than `above`) and its
    dynamic section, from one mapping of the file: a 30 MB OpenBLAS costs the pages of a few small tables,
    not a load into memory. The header check passed: it is a 64-bit little-endian object of the target's
    machine. Raises what reading the version table raises; a dynamic section that cannot be read is None."""
    with mapped_file(path) as data:
        by_index: dict[int, Version] = {}
        for name, index in version_needs.version_needs(data):
            match = _GLIBC_VERSION.match(name)
            if match:
                by_index[index] = (int(match[1]), int(match[2]))
        dynamic = dynamic_of(data)
        if max(by_index.values(), default=above) <= above:
            return _GlibcNeeds(by_index), dynamic
        # The loader goes by type, not by name: the first section of each type, as the table above.
        sections = {kind: found[0] for kind, found in version_needs.section_types(data).items()}
    with path.open("rb") as stream:
        return _GlibcNeeds(by_index, _symbols_needing(ELFFile(stream), sections, by_index, above)), dynamic


class _Readings:
    """What the audit reads of an ELF object, through the audit cache when the object's sha256 is known."""

    def __init__(self, cache: AuditCache | None, target: Target) -> None:
        self._cache = cache
        self._above = target.glibc

    def read(self, path: Path) -> tuple[_GlibcNeeds, Dynamic | None]:
        """Raises what _read_object raises; an object that cannot be read is never filed."""
        sha256 = known_sha256(path.stat()) if self._cache is not None else None
        if self._cache is None or sha256 is None:
            return _read_object(path, self._above)
        key = _reading_key(sha256, self._above)
        filed = _decoded(self._cache.get(key))
        if filed is not None:
            return filed
        needs, dynamic = _read_object(path, self._above)
        self._cache.put(key, _encoded(needs, dynamic))
        return needs, dynamic


def _reading_key(sha256: str, above: Version) -> str:
    """The object's bytes, the glibc above which symbols are named, and the code that reads them."""
    material = f"{sha256}\0glibc {above[0]}.{above[1]}\0{_reader_fingerprint()}"
    return hashlib.sha256(material.encode()).hexdigest()


@cache
def _reader_fingerprint() -> str:
    # The modules whose code decides a reading: this one, and the readers of the dynamic section and the
    # version-needs table.
    modules = (__file__, elfheaders.__file__, needed.__file__, version_needs.__file__)
    return code_fingerprint([Path(str(module)) for module in modules])


def _encoded(needs: _GlibcNeeds, dynamic: Dynamic | None) -> dict[str, Any]:
    return {
        "glibc": sorted([index, *version] for index, version in needs.by_index.items()),
        "symbols": sorted([*version, list(names)] for version, names in needs.symbols.items()),
        "dynamic": None
        if dynamic is None
        else {
            "needed": list(dynamic.needed),
            "soname": dynamic.soname,
            "search_path": list(dynamic.search_path),
        },
    }


def _decoded(facts: Mapping[str, Any] | None) -> tuple[_GlibcNeeds, Dynamic | None] | None:
    """A filed reading, or None (read the object again) when any part of it is not what `_encoded` writes:
    a cache restored from elsewhere is input too."""
    if facts is None:
        return None
    try:
        by_index = {_number(i): (_number(major), _number(minor)) for i, major, minor in facts["glibc"]}
        symbols = {
            (_number(major), _number(minor)): tuple(_strings(names))
            for major, minor, names in facts["symbols"]
        }
        found = facts["dynamic"]
        dynamic = (
            None
            if found is None
            else Dynamic(
                tuple(_strings(found["needed"])),
                _optional_string(found["soname"]),
                tuple(_strings(found["search_path"])),
            )
        )
    except (KeyError, TypeError, ValueError):
        return None
    return _GlibcNeeds(by_index, symbols), dynamic


def _number(value: object) -> int:
    if type(value) is not int:
        raise TypeError(value)
    return value


def _strings(values: object) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise TypeError(values)
    return values


def _optional_string(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(value)
    return value


def _symbols_needing(
    elf: ELFFile, sections: Mapping[int, int], by_index: Mapping[int, Version], above: Version
) -> dict[Version, tuple[str, ...]]:
    if _SHT_GNU_VERSYM not in sections or _SHT_DYNSYM not in sections:
        return {}
    versym = elf.get_section(sections[_SHT_GNU_VERSYM])
    dynsym = elf.get_section(sections[_SHT_DYNSYM])
    if not isinstance(versym, GNUVerSymSection) or not isinstance(dynsym, SymbolTableSection):
        return {}
    wanted = {index: version for index, version in by_index.items() if version > above}
    found: dict[Version, set[str]] = {}
    for number, symbol in enumerate(dynsym.iter_symbols()):
        index = versym.get_symbol(number)["ndx"]
        if isinstance(index, int) and (index & ~_VERSYM_HIDDEN) in wanted and symbol.name:
            found.setdefault(wanted[index & ~_VERSYM_HIDDEN], set()).add(symbol.name)
    return {version: tuple(sorted(names)) for version, names in found.items()}


def _check_glibc(needs: _GlibcNeeds, rel: str, origin: str | None, target: Target) -> tuple[Finding, ...]:
    newest = needs.newest
    if newest is None or newest <= target.glibc:
        return ()
    detail = _symbols_note(needs)
    required = f"GLIBC_{newest[0]}.{newest[1]}"
    message = (
        f"needs {required}{detail}, but {target.runtime} runs on {target.facts.os} with glibc "
        f'{target.glibc[0]}.{target.glibc[1]}: it fails to load with "version `{required}\' not found"'
    )
    return (Finding("error", "glibc-too-new", rel, origin, message, _fix_glibc(target, newest, origin)),)


def _symbols_note(needs: _GlibcNeeds) -> str:
    newest = needs.newest
    names = needs.symbols.get(newest, ()) if newest else ()
    if not names:
        return ""
    shown = ", ".join(names[:_MAX_SYMBOLS_NAMED]) + (", ..." if len(names) > _MAX_SYMBOLS_NAMED else "")
    return f" (for {shown})"


def _fix_glibc(target: Target, needed: Version, origin: str | None) -> str:
    oldest_tag = f"manylinux_{target.glibc[0]}_{target.glibc[1]}"
    project = _project(origin)
    fix = f"pin an older release of {project} with a wheel tagged {oldest_tag} or older (manylinux2014 fits)"
    newer = [facts.name for facts in RUNTIMES.values() if facts.glibc >= needed]
    if newer:
        fix += f", or target a runtime with a newer glibc: {', '.join(newer)} ({RUNTIMES[newer[0]].os})"
    return fix


def _project(origin: str | None) -> str:
    return distribution_of(origin) or "the package that ships it"


def _unreadable(rel: str, origin: str | None, why: str) -> Finding:
    # A warning, not an error: packages ship deliberately odd ELF files as test data, and the
    # import check in verify.py catches an extension module that is truly broken.
    message = f"starts like an ELF object but {why}, so it was not checked"
    fix = "if this is a library or extension module, reinstall its wheel; if it is data, nothing to do"
    return Finding("warning", "elf-unreadable", rel, origin, message, fix)


def _from(origin: str | None) -> str:
    return f" (from {origin})" if origin else ""
