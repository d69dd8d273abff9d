"""The symbol versions an ELF object needs of its libraries (`.gnu.version_r`), read with a few structs.

Why not pyelftools here: building an ELFFile makes its struct parsers anew for every object, and its
version table is read entry by entry through them: 2 to 3 ms an object, with the GIL held, over the 240
shared objects of a cold sklearn build (0.5 CPU-s). The audit reads only this table of most objects;
pyelftools still names the symbols behind a version that is too new, which only a failing audit does.

It reads what pyelftools reads, the same way: the first section of type SHT_GNU_verneed, `sh_info`
entries from its offset, each entry's `vn_cnt` auxiliaries from `vn_aux`, and names from the string table
that `sh_link` names. A wheel is hostile input: every read is bounds-checked (NotReadable). The steps
`vn_next` and `vna_next` are unsigned, so a walk only goes forward, and one of 0 (the gABI's mark of the
last entry) ends it, where pyelftools would read that entry again up to `sh_info` (2**32) times.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .elfheaders import NotReadable

SHT_GNU_VERNEED = 0x6FFFFFFE
_SHOFF_AT = 40  # e_shoff in the ELF64 header
_SHENTSIZE_AT = 58  # e_shentsize, then e_shnum
_SECTION = struct.Struct("<IIQQQQIIQQ")
_VERNEED = struct.Struct("<HHIII")  # vn_version, vn_cnt, vn_file, vn_aux, vn_next
_VERNAUX = struct.Struct("<IHHII")  # vna_hash, vna_flags, vna_other, vna_name, vna_next
_MAX_NAME = 4096


def section_types(data: memoryview | bytes) -> dict[int, tuple[int, int, int, int]]:
    """The first section of each type: type -> (index, sh_offset, sh_link, sh_info); none for an object
    without section headers (sstrip'd, rare in wheels: no GLIBC check then). Raises NotReadable when the
    table is cut short or malformed. The audit finds the symbol tables by it too."""
    if len(data) < 64:
        raise NotReadable("truncated ELF header")
    shoff = struct.unpack_from("<Q", data, _SHOFF_AT)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, _SHENTSIZE_AT)
    if shoff == 0:
        return {}
    if shnum == 0:  # extended numbering: the count is the first section header's sh_size
        if shentsize < _SECTION.size or shoff + _SECTION.size > len(data):
            raise NotReadable("the section header table is cut short or malformed")
        shnum = _SECTION.unpack_from(data, shoff)[5]
    if (shnum and shentsize < _SECTION.size) or shoff + shnum * shentsize > len(data):
        raise NotReadable("the section header table is cut short or malformed")
    found: dict[int, tuple[int, int, int, int]] = {}
    for index in range(shnum):
        _name, kind, _flags, _addr, offset, _size, link, info, _align, _entsize = _SECTION.unpack_from(
            data, shoff + index * shentsize
        )
        if kind not in found:
            found[kind] = (index, offset, link, info)
    return found


def version_needs(data: memoryview | bytes) -> Iterator[tuple[str, int]]:
    """(version name, vna_other) of every auxiliary entry of the version-needs table, in file order.
    Nothing for an object without one. Raises NotReadable for a table that points outside the file."""
    sections = section_types(data)
    verneed = sections.get(SHT_GNU_VERNEED)
    if verneed is None:
        return
    _index, offset, link, count = verneed
    strings = _string_table_offset(data, link)
    at = offset
    for _ in range(count):
        _version, aux_count, _file, aux, following = _unpack(_VERNEED, data, at)
        if aux_count == 0:
            raise NotReadable("a version-needs entry has no auxiliary entries")
        yield from _auxiliaries(data, at + aux, aux_count, strings)
        if following == 0:
            return
        at += following


def _auxiliaries(data: memoryview | bytes, at: int, count: int, strings: int) -> Iterator[tuple[str, int]]:
    for _ in range(count):
        _hash, _flags, other, name, following = _unpack(_VERNAUX, data, at)
        yield _string(data, strings + name), other
        if following == 0:
            return
        at += following


def _string_table_offset(data: memoryview | bytes, link: int) -> int:
    """sh_offset of the section that `link` names (the table the version names are in)."""
    shoff = struct.unpack_from("<Q", data, _SHOFF_AT)[0]
    shentsize = struct.unpack_from("<H", data, _SHENTSIZE_AT)[0]
    return _unpack(_SECTION, data, shoff + link * shentsize)[4]


def _unpack(shape: struct.Struct, data: memoryview | bytes, at: int) -> tuple[int, ...]:
    if not 0 <= at <= len(data) - shape.size:
        raise NotReadable("the version-needs table points outside the file")
    return shape.unpack_from(data, at)


def _string(data: memoryview | bytes, at: int) -> str:
    if not 0 <= at < len(data):
        raise NotReadable("a version name lies outside the file")
    chunk = bytes(data[at : at + _MAX_NAME])
    end = chunk.find(b"\0")
    return (chunk if end < 0 else chunk[:end]).decode("utf-8", "replace")
