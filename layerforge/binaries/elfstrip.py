"""Strip debug information and symbol tables from the shared objects of a layer tree, and prove each
result still loads.

Why so careful: serverless-python-requirements ran `strip` over every `*.so` and broke some of them.
Measured on the sklearn stack: no extension module in today's manylinux wheels carries DWARF, while
the libraries auditwheel bundles into `numpy.libs/` and `scipy.libs/` (OpenBLAS, libgfortran) and 48
extension modules it patched were rewritten by patchelf, and GNU strip re-lays them out so that glibc
refuses them with "ELF load command address/offset not page-aligned". So this module
1. runs binutils' `strip` only on ELF shared objects that carry DWARF, and never on those under
   `*.libs/`;
2. removes a symbol table (the `unneeded` level) by cutting it out (`elfexcise`), an edit that keeps
   every segment where it was; it saves 13.8 MB on the sklearn stack where `strip` managed 8.9 MB;
3. edits a temporary copy, never the file in place;
4. keeps the result only if the loader would see the same object: the same machine, type, dynamic
   section, dynamic symbols and loadable segments, each still congruent to its alignment;
5. replaces the file atomically with its original mode. `os.replace` gives it a new inode, so a tree
   hard-linked from a wheel cache never corrupts the cache.
Anything that goes wrong skips that one file with a reason: stripping saves bytes, it must never fail
a build.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from ..target import host_machine
from .binfmt import iter_files, sniff
from .elfexcise import CannotExcise, excise_file
from .elfheaders import ElfHeaders, NotReadable, mapped_file

# `debug` is the default: it removes only DWARF (.debug_*), which nothing reads at run time, and keeps
# .symtab, so native crash traces (faulthandler, py-spy, perf) still show function names. `unneeded`
# also drops .symtab; it is still safe for extension modules, because the dynamic loader and CPython's
# import (PyInit_*) use only .dynsym, which is kept. It saves 13.8 MB of the sklearn stack's shared
# objects, where `debug` finds no DWARF at all, at the cost of nameless native frames. Both levels go
# through the same checks.
StripLevel = Literal["debug", "unneeded"]

_DEBUG_PREFIXES = (".debug_", ".zdebug_")
# Dynamic tags whose value pyelftools resolves to a string, and the attribute it stores it in.
_NAMED_TAGS = {"DT_NEEDED": "needed", "DT_RPATH": "rpath", "DT_RUNPATH": "runpath", "DT_SONAME": "soname"}
_STRIP_TIMEOUT_S = 300
_ELF_TYPES = {1: "a relocatable object (.o)", 2: "an executable", 4: "a core dump"}
_SKIPPED_LIBS_REASON = (
    "bundled by auditwheel (matches {glob!r}): patchelf rewrote its layout, and a stripped copy fails "
    'to load with "ELF load command address/offset not page-aligned"'
)
_ELF_ERRORS = (ELFError, ConstructError, struct.error, ValueError, KeyError, OSError)


@dataclass(frozen=True)
class StripReport:
    """What `strip_debug` did, by relative posix path. Files that are not ELF are not listed at all."""

    stripped: tuple[str, ...] = ()
    saved: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    unchanged: tuple[str, ...] = ()  # shared objects with nothing to strip
    skipped: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def bytes_saved(self) -> int:
        return sum(self.saved.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "stripped": list(self.stripped),
            "saved": dict(self.saved),
            "bytes_saved": self.bytes_saved,
            "unchanged": list(self.unchanged),
            "skipped": dict(self.skipped),
        }


def strip_debug(
    root: Path,
    *,
    skip_globs: Iterable[str] = ("*.libs/*",),
    jobs: int = 2,
    level: StripLevel = "debug",
    tool: str | None = None,
    paths: Iterable[str] | None = None,
) -> StripReport:
    """Strip the ELF shared objects under `root` in `jobs` threads (strip runs as a subprocess, so the
    threads overlap). `tool` names the strip program; by default `<machine>-linux-gnu-strip` when it is
    on PATH (a cross binutils for foreign objects), else `strip`. `paths` (relative posix paths) are the
    files to look at, when the caller knows them: a build's tree, while bytecode is written beside."""
    settings = _Settings(tuple(skip_globs), level, tool)
    files = list(iter_files(root)) if paths is None else [(rel, root / rel) for rel in sorted(paths)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        outcomes = list(pool.map(lambda item: _strip_safely(item[1], item[0], settings), files))
    return _report(outcome for outcome in outcomes if outcome is not None)


@dataclass(frozen=True)
class _Settings:
    globs: tuple[str, ...]
    level: StripLevel
    tool: str | None


@dataclass(frozen=True)
class _Outcome:
    rel: str
    saved: int | None = None  # set when the file was replaced
    skipped: str | None = None  # set when the file was left alone for a reason worth telling


def _report(outcomes: Iterable[_Outcome]) -> StripReport:
    stripped: list[str] = []
    unchanged: list[str] = []
    saved: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for outcome in sorted(outcomes, key=lambda o: o.rel):
        if outcome.skipped is not None:
            skipped[outcome.rel] = outcome.skipped
        elif outcome.saved is not None:
            stripped.append(outcome.rel)
            saved[outcome.rel] = outcome.saved
        else:
            unchanged.append(outcome.rel)
    return StripReport(tuple(stripped), MappingProxyType(saved), tuple(unchanged), MappingProxyType(skipped))


def _strip_safely(path: Path, rel: str, settings: _Settings) -> _Outcome | None:
    try:
        return _strip_file(path, rel, settings)
    except Exception as exc:  # a failed strip of one file must never fail the build
        return _Outcome(rel, skipped=f"left as it was after an unexpected {type(exc).__name__}: {exc}")


def _strip_file(path: Path, rel: str, settings: _Settings) -> _Outcome | None:
    sniffed = sniff(path)
    if sniffed.kind != "elf":
        return None
    ident = sniffed.elf
    if ident is None:
        return _Outcome(rel, skipped="malformed ELF header")
    if not ident.is_shared_object:
        kind = _ELF_TYPES.get(ident.e_type, f"ELF type {ident.e_type}")
        return _Outcome(rel, skipped=f"not a shared object but {kind}; only shared objects are stripped")
    candidate = _Candidate(path, rel, ident.machine)
    try:
        names = _section_names(path)
        # Most wheels carry no DWARF: leaving them to the cut (or alone) is both the fastest path and the
        # safest, since strip re-lays out even a file it removes nothing from.
        if not any(name.startswith(_DEBUG_PREFIXES) for name in names):
            if settings.level == "unneeded" and ".symtab" in names:
                return _write_cut(candidate)  # refused with a reason for an ELF class it cannot edit
            return _Outcome(rel)
        before = _Layout.read(path)
    except _ELF_ERRORS as exc:
        return _Outcome(rel, skipped=f"its ELF structure could not be read ({exc})")
    matched = next((glob for glob in settings.globs if fnmatch.fnmatchcase(rel, glob)), None)
    if matched is not None:
        return _Outcome(rel, skipped=_SKIPPED_LIBS_REASON.format(glob=matched))
    program = _find_strip(ident.machine, settings.tool)
    if program is None:
        missing = _wanted_tool(ident.machine, settings.tool)
        return _Outcome(rel, skipped=f"no strip program: {missing}; install binutils")
    return _strip_checked(candidate, before, program, settings.level)


@dataclass(frozen=True)
class _Candidate:
    path: Path
    rel: str
    machine: str


def _strip_checked(candidate: _Candidate, before: _Layout, program: str, level: StripLevel) -> _Outcome:
    with _temporary_beside(candidate.path) as temp:
        failure = _run_strip(program, level, candidate.path, temp, machine=candidate.machine)
        if failure is not None:
            return _Outcome(candidate.rel, skipped=failure)
        problem = _compare(before, temp)
        if problem is not None:
            why = f"{Path(program).name} produced an object that would not load the same ({problem})"
            return _Outcome(candidate.rel, skipped=f"{why}; kept the original")
        return _replace(candidate, temp)


def _write_cut(candidate: _Candidate) -> _Outcome:
    """Cut .symtab out; elfexcise reads its result back as the loader would before it returns."""
    with _temporary_beside(candidate.path) as temp:
        try:
            excise_file(candidate.path, temp)
        except CannotExcise as exc:
            return _Outcome(candidate.rel, skipped=f"kept its symbol table: {exc}")
        return _replace(candidate, temp)


@contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".lfstrip", dir=path.parent)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
    finally:
        temp.unlink(missing_ok=True)


def _replace(candidate: _Candidate, temp: Path) -> _Outcome:
    saved = candidate.path.stat().st_size - temp.stat().st_size
    if saved <= 0:
        return _Outcome(candidate.rel)
    shutil.copymode(candidate.path, temp)
    os.replace(temp, candidate.path)
    return _Outcome(candidate.rel, saved=saved)


def _run_strip(program: str, level: StripLevel, source: Path, out: Path, *, machine: str) -> str | None:
    """Run strip; None on success, else why it failed, in words a user can act on."""
    command = [program, f"--strip-{level}", "-o", str(out), str(source)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=_STRIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{Path(program).name} did not finish in {_STRIP_TIMEOUT_S} s"
    except OSError as exc:
        return f"could not run {program}: {exc}"
    if done.returncode == 0:
        return None
    detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    if machine != host_machine():
        # Debian's x86_64 binutils answers "Unable to recognise the format" for aarch64 objects.
        # Forcing the generic elf64-little target "works" but writes e_machine = 0: never do that.
        package = f"binutils-{machine.replace('_', '-')}-linux-gnu"
        return (
            f"{Path(program).name} cannot strip {machine} objects on this {host_machine()} host ({detail}); "
            f"install {machine}-linux-gnu-strip (Debian and Ubuntu: `apt-get install {package}`) "
            f"or build on an {machine} machine"
        )
    return f"{Path(program).name} failed: {detail}"


def _find_strip(machine: str, tool: str | None) -> str | None:
    if tool is not None:
        return shutil.which(tool)
    return shutil.which(f"{machine}-linux-gnu-strip") or shutil.which("strip")


def _wanted_tool(machine: str, tool: str | None) -> str:
    if tool is not None:
        return f"{tool} is not on PATH"
    return f"neither {machine}-linux-gnu-strip nor strip is on PATH"


# --- what the dynamic loader sees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """The parts of a shared object that the dynamic loader reads."""

    machine: str
    elf_type: str
    loads: tuple[tuple[object, ...], ...]  # each PT_LOAD but its file offset, which strip may move
    misaligned: tuple[int, ...]  # indexes of PT_LOADs whose offset and address disagree modulo p_align
    dynamic: tuple[tuple[object, ...], ...]
    dynamic_symbols: int

    @classmethod
    def read(cls, path: Path) -> _Layout:
        with path.open("rb") as stream:
            elf = ELFFile(stream)
            # One pass over the sections and one over the segments: pyelftools builds a DynamicSegment
            # (which scans every section) each time it meets PT_DYNAMIC, so each extra pass costs a re-read.
            dynsym = next((s for s in elf.iter_sections() if s.name == ".dynsym"), None)
            loads, misaligned, dynamic = _segments(elf)
            return cls(
                machine=str(elf["e_machine"]),
                elf_type=str(elf["e_type"]),
                loads=loads,
                misaligned=misaligned,
                dynamic=dynamic,
                dynamic_symbols=dynsym.num_symbols() if isinstance(dynsym, SymbolTableSection) else -1,
            )


def _section_names(path: Path) -> list[str]:
    """Read with the fast reader; pyelftools reads an ELF class it does not handle (32-bit, big-endian)."""
    try:
        with mapped_file(path) as data:
            return ElfHeaders.parse(data).section_names(data)
    except NotReadable:
        with path.open("rb") as stream:
            return [section.name for section in ELFFile(stream).iter_sections()]


_Segments = tuple[tuple[tuple[object, ...], ...], tuple[int, ...], tuple[tuple[object, ...], ...]]


def _segments(elf: ELFFile) -> _Segments:
    """Each PT_LOAD but its file offset (which strip may move), the misaligned ones, PT_DYNAMIC's tags."""
    loads: list[tuple[object, ...]] = []
    misaligned: list[int] = []
    dynamic: list[tuple[object, ...]] = []
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_LOAD":
            align = int(segment["p_align"])
            offset, vaddr = int(segment["p_offset"]), int(segment["p_vaddr"])
            filesz = int(segment["p_filesz"])
            # glibc's dl-load refuses a segment whose offset and address differ modulo its alignment, and
            # one whose bytes lie past the end of the file.
            if (align > 1 and (vaddr - offset) % align) or offset + filesz > elf.stream_len:
                misaligned.append(len(loads))
            loads.append((segment["p_flags"], vaddr, filesz, int(segment["p_memsz"]), align))
        elif isinstance(segment, DynamicSegment):
            for tag in segment.iter_tags():
                # The names prove that .dynstr survived, not just the offsets into it.
                kind = tag["d_tag"]
                name = getattr(tag, _NAMED_TAGS[kind]) if kind in _NAMED_TAGS else None
                dynamic.append((kind, tag["d_val"], name))
    return tuple(loads), tuple(misaligned), tuple(dynamic)


def _compare(before: _Layout, out: Path) -> str | None:
    """Why `out` would not load like the original, or None when it would."""
    try:
        after = _Layout.read(out)
    except _ELF_ERRORS as exc:
        return f"not a readable ELF file: {exc}"
    checks = (
        (after.machine == before.machine, f"machine changed from {before.machine} to {after.machine}"),
        (after.elf_type == before.elf_type, "ELF type changed"),
        (after.dynamic == before.dynamic, "dynamic section changed"),
        (after.dynamic_symbols == before.dynamic_symbols, "dynamic symbol table changed"),
        (after.loads == before.loads, "loadable segments changed"),
        (not after.misaligned, "ELF load command address/offset not page-aligned"),
    )
    return next((problem for ok, problem in checks if not ok), None)
