"""The version-needs reader against pyelftools, on objects compiled here and on this machine's own
libraries, and on tables a hostile wheel could hand it."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from layerforge.binaries.elfheaders import NotReadable, mapped_file
from layerforge.binaries.version_needs import SHT_GNU_VERNEED, version_needs
from tests.support.elf import compile_source

# Needs versions of two libraries, libc and libm: two entries, each with its auxiliaries.
SOURCE = """#include <pthread.h>
#include <math.h>
static void *run(void *arg) { return arg; }
int demo(double x) { pthread_t t; return pthread_create(&t, 0, run, 0) + (int)cos(x); }
"""
_SH_INFO_AT, _SH_OFFSET_AT = 44, 24  # in a section header
_VN_CNT_AT, _VN_AUX_AT, _VN_NEXT_AT = 2, 8, 12  # in an Elf64_Verneed
_VNA_NAME_AT, _VNA_NEXT_AT = 8, 12  # in an Elf64_Vernaux


def _pyelftools(path: Path) -> list[tuple[str, int]]:
    """What pyelftools reads of the first version-needs section, in order."""
    with path.open("rb") as stream:
        for section in ELFFile(stream).iter_sections():
            if isinstance(section, GNUVerNeedSection):
                return [
                    (aux.name, aux["vna_other"]) for _v, auxes in section.iter_versions() for aux in auxes
                ]
    return []


def _ours(path: Path) -> list[tuple[str, int]]:
    with mapped_file(path) as data:
        return list(version_needs(data))


def _read(data: bytearray) -> list[tuple[str, int]]:
    return list(version_needs(memoryview(bytes(data))))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_source(tmp_path_factory.mktemp("verneed") / "demo.so", SOURCE, "-lm")


def _table(data: bytearray) -> tuple[int, int]:
    """Where the version-needs section's header sits, and where its table starts."""
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    for index in range(shnum):
        at = shoff + index * shentsize
        if struct.unpack_from("<I", data, at + 4)[0] == SHT_GNU_VERNEED:
            return at, struct.unpack_from("<Q", data, at + _SH_OFFSET_AT)[0]
    raise AssertionError("the object has no version-needs section")


def _entries(data: bytearray, start: int) -> list[int]:
    """Offsets of the table's entries, following vn_next."""
    found = [start]
    while step := struct.unpack_from("<I", data, found[-1] + _VN_NEXT_AT)[0]:
        found.append(found[-1] + step)
    return found


def test_a_compiled_object_reads_as_pyelftools_reads_it(compiled: Path) -> None:
    ours = _ours(compiled)
    assert ours == _pyelftools(compiled)
    names = {name for name, _ in ours}
    assert "GLIBC_2.2.5" in names, names
    assert len({index for _, index in ours}) == len(ours)  # each version its own index
    assert len(_entries(bytearray(compiled.read_bytes()), _table(bytearray(compiled.read_bytes()))[1])) == 2


def test_objects_built_elsewhere_read_as_pyelftools_reads_them() -> None:
    """The interpreter's own extension modules and this machine's libraries: objects of other linkers,
    with one version-needs entry or many."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = sorted((Path(sys.base_prefix) / "lib" / version / "lib-dynload").glob("*.so"))
    candidates += sorted(p for p in Path("/usr/lib").rglob("*.so*") if p.is_file() and not p.is_symlink())[
        :300
    ]
    compared = 0
    for path in candidates:
        with path.open("rb") as stream:
            head = stream.read(6)
        if head[:4] != b"\x7fELF" or head[4:6] != b"\x02\x01":  # 64-bit little-endian: what the audit reads
            continue
        assert _ours(path) == _pyelftools(path), path
        compared += 1
    if compared < 10:
        pytest.skip(f"only {compared} 64-bit little-endian objects found to compare")


def test_an_object_without_the_table_needs_nothing(compiled: Path) -> None:
    data = bytearray(compiled.read_bytes())
    header, _start = _table(data)
    struct.pack_into("<I", data, header + 4, 1)  # SHT_PROGBITS
    assert _read(data) == []


def test_an_object_without_section_headers_needs_nothing(compiled: Path) -> None:
    data = bytearray(compiled.read_bytes())
    struct.pack_into("<Q", data, 40, 0)  # e_shoff = 0, as sstrip leaves an object
    assert _read(data) == []


def test_a_count_of_four_billion_ends_at_the_last_entry(compiled: Path) -> None:
    """sh_info 2**32-1 and vn_cnt 65,535: pyelftools would read the last entry and auxiliary again that
    many times. The walk ends where the chain says it ends, with the same answers."""
    data = bytearray(compiled.read_bytes())
    expected = _read(data)
    header, start = _table(data)
    struct.pack_into("<I", data, header + _SH_INFO_AT, 0xFFFFFFFF)
    last = _entries(data, start)[-1]
    struct.pack_into("<H", data, last + _VN_CNT_AT, 0xFFFF)
    assert _read(data) == expected


def test_vn_next_of_zero_ends_the_table(compiled: Path) -> None:
    data = bytearray(compiled.read_bytes())
    _header, start = _table(data)
    first_only = _read(data)[: _count_auxiliaries(data, start)]
    struct.pack_into("<I", data, start + _VN_NEXT_AT, 0)
    assert _read(data) == first_only


@pytest.mark.parametrize(("field_at", "what"), [(_VN_AUX_AT, "vn_aux"), (_VN_NEXT_AT, "vn_next")])
def test_an_entry_pointing_outside_the_file_is_refused(compiled: Path, field_at: int, what: str) -> None:
    data = bytearray(compiled.read_bytes())
    _header, start = _table(data)
    struct.pack_into("<I", data, start + field_at, 0x7FFFFFF0)
    with pytest.raises(NotReadable, match="outside the file"):
        _read(data)


def test_a_name_outside_the_file_is_refused(compiled: Path) -> None:
    data = bytearray(compiled.read_bytes())
    _header, start = _table(data)
    auxiliary = start + struct.unpack_from("<I", data, start + _VN_AUX_AT)[0]
    struct.pack_into("<I", data, auxiliary + _VNA_NAME_AT, 0x7FFFFFF0)
    with pytest.raises(NotReadable, match="outside the file"):
        _read(data)


def test_a_section_table_past_the_end_is_refused(compiled: Path) -> None:
    data = bytearray(compiled.read_bytes())
    struct.pack_into("<Q", data, 40, len(data) - 10)  # e_shoff
    with pytest.raises(NotReadable, match="cut short"):
        _read(data)


def test_an_entry_without_auxiliaries_is_refused_as_pyelftools_refuses_it(compiled: Path) -> None:
    data = bytearray(compiled.read_bytes())
    _header, start = _table(data)
    struct.pack_into("<H", data, start + _VN_CNT_AT, 0)
    with pytest.raises(NotReadable, match="no auxiliary"):
        _read(data)


def _count_auxiliaries(data: bytearray, entry: int) -> int:
    return int(struct.unpack_from("<H", data, entry + _VN_CNT_AT)[0])
