"""Stripping debug information, on shared objects compiled here with gcc and binutils' real strip."""

from __future__ import annotations

import ctypes
import shutil
import stat
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from layerforge.binaries.binfmt import EM_AARCH64
from layerforge.binaries.elfstrip import StripReport, strip_debug

SOURCE = """#include <string.h>
struct point { int x; int y; const char *label; };
static int area(struct point a, struct point b) { return (b.x - a.x) * (b.y - a.y); }
size_t demo_len(const char *s) {
    struct point a = {0, 0, s}, b = {2, 3, s};
    return strlen(s) + area(a, b) - 6;
}
"""


@dataclass(frozen=True)
class Objects:
    debug: bytes  # gcc -g: carries .debug_* sections
    plain: bytes  # no DWARF, but a .symtab
    aarch64_debug: bytes  # the debug object with e_machine rewritten to EM_AARCH64


def _compile(folder: Path, name: str, *flags: str) -> bytes:
    source = folder / "demo.c"
    source.write_text(SOURCE)
    out = folder / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", *flags, "-o", str(out), str(source)], check=True)
    return out.read_bytes()


@pytest.fixture(scope="session")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    if shutil.which("gcc") is None or shutil.which("strip") is None:
        pytest.skip("gcc and binutils' strip are needed")
    folder = tmp_path_factory.mktemp("strip-objects")
    debug = _compile(folder, "debug.so", "-g")
    aarch64 = bytearray(debug)
    struct.pack_into("<H", aarch64, 18, EM_AARCH64)
    return Objects(debug, _compile(folder, "plain.so"), bytes(aarch64))


def _put(root: Path, rel: str, data: bytes, mode: int = 0o755) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _sections(path: Path) -> set[str]:
    with path.open("rb") as stream:
        return {section.name for section in ELFFile(stream).iter_sections()}


def _machine(path: Path) -> str:
    with path.open("rb") as stream:
        return str(ELFFile(stream)["e_machine"])


def test_debug_build_gets_smaller_and_still_loads(objects: Objects, tmp_path: Path) -> None:
    rel = "python/demo/_ext.cpython-311-x86_64-linux-gnu.so"
    path = _put(tmp_path, rel, objects.debug, mode=0o751)
    assert any(name.startswith(".debug_") for name in _sections(path))

    report = strip_debug(tmp_path)

    assert report.stripped == (rel,)
    assert report.saved[rel] == len(objects.debug) - path.stat().st_size > 0
    assert report.bytes_saved == report.saved[rel]
    assert report.skipped == {} and report.unchanged == ()
    sections = _sections(path)
    assert not any(name.startswith(".debug_") for name in sections)
    assert {".dynsym", ".dynamic", ".symtab"} <= sections  # --strip-debug keeps the symbol table
    assert _machine(path) == "EM_X86_64"
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert ctypes.CDLL(str(path)).demo_len(b"layer") == 5
    assert not list(tmp_path.rglob("*.lfstrip"))


def test_files_under_libs_folders_are_untouched(objects: Objects, tmp_path: Path) -> None:
    rel = "python/numpy.libs/libscipy_openblas64_-56d6093b.so"
    path = _put(tmp_path, rel, objects.debug)

    report = strip_debug(tmp_path)

    assert path.read_bytes() == objects.debug
    assert report.stripped == ()
    assert "auditwheel" in report.skipped[rel]
    assert "not page-aligned" in report.skipped[rel]


def test_non_elf_files_are_ignored(tmp_path: Path) -> None:
    files = {"python/demo/fake.so": b"not an ELF object\n", "python/demo/__init__.py": b"x = 1\n"}
    for rel, data in files.items():
        _put(tmp_path, rel, data, mode=0o644)

    assert strip_debug(tmp_path) == StripReport()
    assert all((tmp_path / rel).read_bytes() == data for rel, data in files.items())


def test_objects_without_debug_info_are_left_alone(objects: Objects, tmp_path: Path) -> None:
    path = _put(tmp_path, "python/demo/plain.so", objects.plain)
    report = strip_debug(tmp_path)
    assert report.unchanged == ("python/demo/plain.so",)
    assert path.read_bytes() == objects.plain


def test_strip_unneeded_drops_the_symbol_table_and_still_loads(objects: Objects, tmp_path: Path) -> None:
    path = _put(tmp_path, "python/demo/plain.so", objects.plain)

    report = strip_debug(tmp_path, level="unneeded")

    assert report.stripped == ("python/demo/plain.so",)
    assert ".symtab" not in _sections(path)
    assert ctypes.CDLL(str(path)).demo_len(b"abc") == 3


def test_executables_are_not_stripped(objects: Objects, tmp_path: Path) -> None:
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    binary = _put(tmp_path, "python/bin/tool", b"")
    subprocess.run(["gcc", "-g", "-no-pie", "-o", str(binary), str(source)], check=True)
    before = binary.read_bytes()

    report = strip_debug(tmp_path)

    assert report.skipped == {
        "python/bin/tool": "not a shared object but an executable; only shared objects are stripped"
    }
    assert binary.read_bytes() == before


def test_a_missing_strip_program_skips_and_reports(objects: Objects, tmp_path: Path) -> None:
    path = _put(tmp_path, "python/demo/_ext.so", objects.debug)

    report = strip_debug(tmp_path, tool="layerforge-no-such-strip")

    assert path.read_bytes() == objects.debug
    assert report.skipped == {
        "python/demo/_ext.so": "no strip program: layerforge-no-such-strip is not on PATH; install binutils"
    }


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-strip") is not None, reason="a cross strip is installed")
def test_foreign_architecture_without_a_cross_strip_is_skipped(objects: Objects, tmp_path: Path) -> None:
    # Debian's x86_64 binutils answers "Unable to recognise the format" for aarch64 objects.
    rel = "python/demo/_ext.cpython-311-aarch64-linux-gnu.so"
    path = _put(tmp_path, rel, objects.aarch64_debug)

    report = strip_debug(tmp_path)

    assert path.read_bytes() == objects.aarch64_debug
    reason = report.skipped[rel]
    assert "cannot strip aarch64 objects" in reason
    assert "apt-get install binutils-aarch64-linux-gnu" in reason


def test_a_result_that_would_not_load_is_rejected(objects: Objects, tmp_path: Path) -> None:
    # What binutils does to libraries patchelf rewrote: a PT_LOAD whose offset and address no longer
    # agree modulo the page size. Here a wrapper runs the real strip, then misaligns one segment.
    wrapper = tmp_path / "bin" / "misaligning-strip"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import struct, subprocess, sys\n"
        "subprocess.run(['strip', *sys.argv[1:]], check=True)\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        "data = bytearray(open(out, 'rb').read())\n"
        "phoff, = struct.unpack_from('<Q', data, 32)\n"
        "entsize, count = struct.unpack_from('<HH', data, 54)\n"
        "for i in range(count):\n"
        "    at = phoff + i * entsize\n"
        "    if struct.unpack_from('<I', data, at)[0] == 1 and struct.unpack_from('<Q', data, at + 8)[0]:\n"
        "        struct.pack_into('<Q', data, at + 8, struct.unpack_from('<Q', data, at + 8)[0] + 8)\n"
        "        break\n"
        "open(out, 'wb').write(data)\n"
    )
    wrapper.chmod(0o755)
    rel = "python/demo/_ext.so"
    path = _put(tmp_path / "tree", rel, objects.debug)

    report = strip_debug(tmp_path / "tree", tool=str(wrapper))

    assert path.read_bytes() == objects.debug
    assert report.stripped == ()
    assert "not page-aligned" in report.skipped[rel]
    assert "kept the original" in report.skipped[rel]


def test_hard_links_into_a_cache_are_not_modified(objects: Objects, tmp_path: Path) -> None:
    cached = _put(tmp_path, "cache/demo.so", objects.debug)
    tree = tmp_path / "tree"
    (tree / "python").mkdir(parents=True)
    (tree / "python/demo.so").hardlink_to(cached)

    report = strip_debug(tree)

    assert report.stripped == ("python/demo.so",)
    assert cached.read_bytes() == objects.debug


def test_many_files_in_parallel_report_in_sorted_order(objects: Objects, tmp_path: Path) -> None:
    names = [f"python/pkg{i}/_ext.so" for i in (3, 1, 2, 0, 5, 4)]
    for rel in names:
        _put(tmp_path, rel, objects.debug)
    (tmp_path / "python/pkg0/link.so").symlink_to("_ext.so")  # stripped once, through its target

    report = strip_debug(tmp_path, jobs=4)

    assert report.stripped == tuple(sorted(names))
    assert len(set(report.saved.values())) == 1
    assert report.as_dict()["bytes_saved"] == 6 * report.saved[names[0]]
