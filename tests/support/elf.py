"""Tiny native binaries for tests: real ELF shared objects compiled by gcc, and fakes.

- :func:`compile_shared_object` compiles a real x86_64 ``.so`` (cached per test session).
  With ``uses_pthread_create=True`` it needs ``GLIBC_2.34`` (libpthread merged into libc in
  2.34), too new for a glibc 2.26 runtime; otherwise it needs only old versions (``GLIBC_2.2.5``).
- :func:`with_machine` copies an ELF object with another ``e_machine`` (fakes an aarch64 object).
- :func:`fake_pe` and :func:`fake_macho` write headers-only Windows and macOS binaries, enough
  for any magic-number sniffing (``.pyd``/``.dll`` and ``.dylib``/``.so``).
- :func:`compile_linked_object` compiles a real ``.so`` whose DT_NEEDED names the libraries given
  (each built as a stub with that SONAME and linked against), with an optional RUNPATH and SONAME.
- :func:`required_symbol_versions` lists the versions an object needs (``GLIBC_2.34``, ...).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Literal

import pytest

__all__ = [
    "EM_AARCH64",
    "EM_X86_64",
    "MACHINES",
    "MACHO_FAT_MAGIC",
    "MACHO_MAGIC_64",
    "compile_linked_object",
    "compile_shared_object",
    "fake_macho",
    "fake_pe",
    "required_symbol_versions",
    "with_machine",
]

EM_X86_64 = 62
EM_AARCH64 = 183
MACHINES: dict[str, int] = {
    "i386": 3,
    "arm": 40,
    "ppc64le": 21,
    "s390x": 22,
    "x86_64": EM_X86_64,
    "aarch64": EM_AARCH64,
}
_E_MACHINE_OFFSET = 18

_PLAIN_SOURCE = """\
#include <string.h>
int layerforge_test_len(const char *s) { return (int)strlen(s); }
"""

_PTHREAD_SOURCE = """\
#include <pthread.h>
#include <string.h>
static void *run(void *arg) { return arg; }
int layerforge_test_len(const char *s) { return (int)strlen(s); }
int layerforge_test_spawn(void) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, run, NULL) != 0) return -1;
    return pthread_join(thread, NULL);
}
"""

_cache_lock = threading.Lock()
_cache: dict[tuple[bool, bool], Path] = {}


@functools.cache
def _session_dir() -> Path:
    # One folder per test process (each xdist worker has its own), removed when it exits.
    path = Path(tempfile.mkdtemp(prefix="layerforge-elf-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _compile(uses_pthread_create: bool, debug: bool) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot compile a test shared object")
    work = _session_dir()
    stem = f"lib{'pthread' if uses_pthread_create else 'plain'}{'-g' if debug else '-s'}"
    src = work / f"{stem}.c"
    out = work / f"{stem}.so"
    src.write_text(_PTHREAD_SOURCE if uses_pthread_create else _PLAIN_SOURCE)
    # debug=True: DWARF sections (something to strip); debug=False: fully stripped (-s).
    flags = ["-g"] if debug else ["-s"]
    cmd = [gcc, "-shared", "-fPIC", "-O0", *flags, "-o", str(out), str(src)]
    if uses_pthread_create:
        cmd.append("-pthread")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc failed ({proc.returncode}): {proc.stderr}")
    if uses_pthread_create and "GLIBC_2.34" not in required_symbol_versions(out):
        pytest.skip("this host's glibc is older than 2.34: pthread_create is not GLIBC_2.34 here")
    return out


def compile_shared_object(dest: Path, *, uses_pthread_create: bool = False, debug: bool = True) -> Path:
    """Copy a gcc-compiled x86_64 shared object to ``dest`` (parents created) and return it.

    ``uses_pthread_create``: calls ``pthread_create``, so needs ``GLIBC_2.34``; otherwise the
    newest version needed is ``GLIBC_2.2.5``. ``debug``: built with ``-g`` (has ``.debug_*``
    sections) or with ``-s`` (no ``.symtab`` nor debug sections). Compiled once per session.
    Skips the test if gcc is missing, or if the host's glibc predates 2.34 when pthread is asked.
    """
    key = (uses_pthread_create, debug)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _compile(uses_pthread_create, debug)
        built = _cache[key]
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, dest)
    dest.chmod(0o755)
    return dest


def with_machine(src: Path, dest: Path, machine: str | int) -> Path:
    """Copy the little-endian ELF ``src`` to ``dest`` with ``e_machine`` set to ``machine``.

    ``machine`` is a name of :data:`MACHINES` (``"aarch64"``, ``"x86_64"``, ...) or a number.
    """
    number = MACHINES[machine] if isinstance(machine, str) else machine
    data = bytearray(src.read_bytes())
    if data[:4] != b"\x7fELF":
        raise ValueError(f"{src} is not an ELF file")
    if data[5] != 1:
        raise ValueError(f"{src} is not little-endian ELF")
    struct.pack_into("<H", data, _E_MACHINE_OFFSET, number)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(data))
    return dest


_PE_MACHINES = {"x86_64": 0x8664, "aarch64": 0xAA64, "i386": 0x14C}


def fake_pe(dest: Path, machine: Literal["x86_64", "aarch64", "i386"] = "x86_64") -> Path:
    """Write a headers-only PE image (``MZ`` stub, ``PE\\0\\0`` at ``e_lfanew``) to ``dest``.

    Name it ``.pyd`` or ``.dll``. The COFF header names ``machine`` and flags a DLL.
    """
    e_lfanew = 0x80
    data = bytearray(e_lfanew)
    data[0:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, e_lfanew)
    data += b"PE\0\0"
    # COFF header: Machine, NumberOfSections, TimeDateStamp, PointerToSymbolTable,
    # NumberOfSymbols, SizeOfOptionalHeader, Characteristics (EXECUTABLE|LARGE_ADDRESS|DLL).
    data += struct.pack("<HHIIIHH", _PE_MACHINES[machine], 0, 0, 0, 0, 0, 0x2022)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(data))
    return dest


MACHO_MAGIC_64 = 0xFEEDFACF
MACHO_FAT_MAGIC = 0xCAFEBABE
_MACHO_CPUS = {"x86_64": 0x01000007, "arm64": 0x0100000C}
_MH_BUNDLE = 8


def _thin_macho(cpu: str) -> bytes:
    # mach_header_64: magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags, reserved
    return struct.pack("<IIIIIIII", MACHO_MAGIC_64, _MACHO_CPUS[cpu], 0, _MH_BUNDLE, 0, 0, 0, 0)


def fake_macho(
    dest: Path,
    cpu: Literal["x86_64", "arm64"] = "arm64",
    *,
    universal: bool = False,
) -> Path:
    """Write a headers-only Mach-O to ``dest`` (name it ``.so`` or ``.dylib``).

    Thin: a little-endian ``mach_header_64`` (magic ``0xfeedfacf``, bytes ``cf fa ed fe``).
    ``universal``: a big-endian fat header (magic ``0xcafebabe``) holding x86_64 and arm64
    slices (``cpu`` is then ignored).
    """
    if not universal:
        data = _thin_macho(cpu)
    else:
        cpus = ["x86_64", "arm64"]
        align = 12  # each slice at a 4096-byte boundary
        offsets = [(n + 1) << align for n in range(len(cpus))]
        image = bytearray(struct.pack(">II", MACHO_FAT_MAGIC, len(cpus)))
        for name, offset in zip(cpus, offsets, strict=True):
            # fat_arch: cputype, cpusubtype, offset, size, align
            image += struct.pack(">IIIII", _MACHO_CPUS[name], 0, offset, 32, align)
        for name, offset in zip(cpus, offsets, strict=True):
            image = image.ljust(offset, b"\0") + _thin_macho(name)
        data = bytes(image)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest


def required_symbol_versions(path: Path) -> set[str]:
    """The symbol versions an ELF object needs from its libraries (``.gnu.version_r``)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    names: set[str] = set()
    with path.open("rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for _verneed, auxiliaries in section.iter_versions():
                    names.update(aux.name for aux in auxiliaries)
    return names


def compile_source(dest: Path, source: str, *flags: str) -> Path:
    """Compile C `source` into a shared object at `dest` with gcc and `flags` (libraries, -Wl options).
    Skips the test when gcc is not installed."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot compile a test shared object")
    dest.parent.mkdir(parents=True, exist_ok=True)
    source_path = dest.with_name(dest.name + ".c")
    source_path.write_text(source)
    _gcc([gcc, "-shared", "-fPIC", "-O1", "-o", str(dest), str(source_path), *flags])
    return dest


def compile_linked_object(
    dest: Path, needs: tuple[str, ...], *, runpath: str | None = None, soname: str | None = None
) -> Path:
    """Compile an x86_64 ``.so`` at ``dest`` whose DT_NEEDED lists each SONAME of ``needs``.

    Each needed library is a stub compiled with that SONAME in a scratch folder (not shipped), so the
    object really asks the loader for it, as a wheel linked against libGL asks for ``libGL.so.1``.
    ``runpath`` becomes DT_RUNPATH (``$ORIGIN/...`` as auditwheel writes it); ``soname`` DT_SONAME."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot compile a test shared object")
    work = Path(tempfile.mkdtemp(prefix="linked-", dir=_session_dir()))
    stubs: list[str] = []
    for number, library in enumerate(needs):
        stub = work / f"stub{number}.so"
        source = work / f"stub{number}.c"
        source.write_text(f"int layerforge_stub_{number}(void) {{ return {number}; }}\n")
        _gcc([gcc, "-shared", "-fPIC", f"-Wl,-soname,{library}", "-o", str(stub), str(source)])
        stubs.append(str(stub))
    # Weak references: the object loads against any library of that name, as long as one is found.
    calls = "".join(
        f"extern int layerforge_stub_{n}(void) __attribute__((weak));\n" for n in range(len(needs))
    )
    body = " + ".join(f"(layerforge_stub_{n} ? layerforge_stub_{n}() : 0)" for n in range(len(needs))) or "0"
    source = work / "linked.c"
    source.write_text(f"{calls}int layerforge_linked(void) {{ return {body}; }}\n")
    command = [gcc, "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(dest), str(source), *stubs]
    if runpath is not None:
        command.append(f"-Wl,--enable-new-dtags,-rpath,{runpath}")
    if soname is not None:
        command.append(f"-Wl,-soname,{soname}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _gcc(command)
    return dest


def _gcc(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc failed ({proc.returncode}): {proc.stderr}")
