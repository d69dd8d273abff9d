"""Cut the symbol table out of a shared object without moving anything the dynamic loader maps.

Why not `strip`: auditwheel bundles libraries and patches extension modules with patchelf, which appends
new PT_LOAD segments (a moved .dynamic and .dynstr) after the file's .symtab. GNU strip, llvm-strip and
eu-strip all re-lay those files out so that an appended segment's offset no longer agrees with its
address modulo its alignment, and glibc refuses the result ("ELF load command address/offset not
page-aligned"). On the sklearn stack that leaves 5.3 MB of .symtab in 48 files that strip cannot touch.

What this does instead is the one edit that cannot change what the loader sees: it removes .symtab and
the string table it names, and slides everything after them down by a whole number of the largest
alignment that follows. Every segment keeps its address, its sizes and its congruence; only the file
offsets in the headers change. What the slide cannot take (less than one alignment unit) becomes
zeros. The two section headers stay, zeroed to nameless SHT_NULL entries, so no section index changes:
.dynsym's symbols name their sections by index. Only ELF64 little-endian objects (x86_64 and aarch64,
every Lambda target) are handled; anything unusual is refused with a reason, never guessed at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ELFCLASS64 = 2
ELFDATA2LSB = 1
SHT_NULL = 0
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOBITS = 8
SHF_ALLOC = 0x2
PT_LOAD = 1
_PAGE = 4096  # the smallest page any Lambda target maps; a PT_LOAD slides by whole pages at least
_SHN_LORESERVE = 0xFF00

_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_PROGRAM = struct.Struct("<IIQQQQQQ")
_SECTION = struct.Struct("<IIQQQQIIQQ")


class CannotExcise(Exception):
    """The object's layout is not one this module can edit safely; the message says why."""


@dataclass(frozen=True)
class _Program:
    at: int  # where this header sits in the file
    type: int
    offset: int
    filesz: int
    align: int


@dataclass(frozen=True)
class _Section:
    index: int
    at: int
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int

    @property
    def occupies_file(self) -> bool:
        return self.type not in (SHT_NULL, SHT_NOBITS) and self.size > 0

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class _Elf:
    phoff: int
    phsize: int
    shoff: int
    shsize: int
    shstrndx: int
    programs: tuple[_Program, ...]
    sections: tuple[_Section, ...]

    @classmethod
    def parse(cls, data: bytes) -> _Elf:
        if len(data) < _HEADER.size or data[:4] != b"\x7fELF":
            raise CannotExcise("not an ELF file")
        if data[4] != ELFCLASS64 or data[5] != ELFDATA2LSB:
            raise CannotExcise("only 64-bit little-endian objects are handled")
        fields = _HEADER.unpack_from(data, 0)
        phoff, shoff = fields[5], fields[6]
        phentsize, phnum, shentsize, shnum, shstrndx = fields[9:14]
        if (phnum and phentsize != _PROGRAM.size) or shentsize != _SECTION.size:
            raise CannotExcise("unexpected header entry sizes")
        if shnum == 0 or shstrndx >= _SHN_LORESERVE:
            raise CannotExcise("extended section numbering")
        if phoff + phnum * _PROGRAM.size > len(data) or shoff + shnum * _SECTION.size > len(data):
            raise CannotExcise("header tables run past the end of the file")
        programs = tuple(_program(data, phoff + i * _PROGRAM.size) for i in range(phnum))
        sections = tuple(_section(data, i, shoff + i * shentsize) for i in range(shnum))
        if any(s.occupies_file and s.end > len(data) for s in sections):
            raise CannotExcise("a section runs past the end of the file")
        return cls(phoff, phnum * _PROGRAM.size, shoff, shnum * _SECTION.size, shstrndx, programs, sections)


def _program(data: bytes, at: int) -> _Program:
    p_type, _flags, offset, _vaddr, _paddr, filesz, _memsz, align = _PROGRAM.unpack_from(data, at)
    return _Program(at, p_type, offset, filesz, align)


def _section(data: bytes, index: int, at: int) -> _Section:
    _name, s_type, flags, _addr, offset, size, link, info, align, _entsize = _SECTION.unpack_from(data, at)
    return _Section(index, at, s_type, flags, offset, size, link, info, align)


def has_symbol_table(data: bytes) -> bool:
    """Whether the object carries a .symtab this module could try to cut."""
    try:
        return any(s.type == SHT_SYMTAB and s.size > 0 for s in _Elf.parse(data).sections)
    except (CannotExcise, struct.error):
        return False


def excise_symbol_table(data: bytes) -> bytearray:
    """`data` without its .symtab and .strtab. Raises CannotExcise when the layout does not allow it."""
    try:
        elf = _Elf.parse(data)
    except struct.error as exc:
        raise CannotExcise(f"truncated ELF headers ({exc})") from exc
    removed = _removable(elf)
    start, end = min(s.offset for s in removed), max(s.end for s in removed)
    _check_nothing_else_within(elf, removed, start, end)
    unit = _slide_unit(elf, end)
    slide = (end - start) // unit * unit
    if slide == 0:
        raise CannotExcise(f"the symbol table is smaller than the {unit}-byte alignment of what follows it")
    # Views, not slices: OpenBLAS is 25 MB, and two threads cut two files at once.
    view = memoryview(data)
    out = bytearray(view[:start])
    out += bytes(end - start - slide)
    out += view[end:]
    _rewrite_offsets(out, elf, end, slide, removed)
    return out


def _removable(elf: _Elf) -> tuple[_Section, ...]:
    tables = [s for s in elf.sections if s.type == SHT_SYMTAB]
    if len(tables) != 1 or not tables[0].occupies_file:
        raise CannotExcise("no single .symtab with contents")
    symtab = tables[0]
    if not 0 < symtab.link < len(elf.sections):
        raise CannotExcise(".symtab names no string table")
    strtab = elf.sections[symtab.link]
    if strtab.type != SHT_STRTAB or strtab.index == elf.shstrndx:
        raise CannotExcise(".symtab's string table is also the section-name table")
    for table in (symtab, strtab):
        if table.flags & SHF_ALLOC:
            raise CannotExcise("the symbol table is loaded into memory")
    removed = {symtab.index, strtab.index}
    for section in elf.sections:
        if section.index in removed or section.type == SHT_NULL:
            continue
        # A relocation or group section pointing at .symtab would lose its symbols: a relocatable object.
        if section.link in removed:
            raise CannotExcise(f"section {section.index} refers to the symbol table")
    return (symtab, strtab)


def _check_nothing_else_within(elf: _Elf, removed: tuple[_Section, ...], start: int, end: int) -> None:
    def overlaps(offset: int, size: int) -> bool:
        return size > 0 and offset < end and offset + size > start

    removed_indexes = {s.index for s in removed}
    for section in elf.sections:
        if (
            section.index not in removed_indexes
            and section.occupies_file
            and overlaps(section.offset, section.size)
        ):
            raise CannotExcise(f"section {section.index} lies between .symtab and its string table")
    for program in elf.programs:
        if overlaps(program.offset, program.filesz):
            raise CannotExcise("a segment covers the symbol table")
    if overlaps(0, _HEADER.size) or overlaps(elf.phoff, elf.phsize) or overlaps(elf.shoff, elf.shsize):
        raise CannotExcise("a header table lies within the symbol table")


def _slide_unit(elf: _Elf, end: int) -> int:
    """The largest alignment among what lies after the cut: sliding by multiples of it keeps every
    segment congruent to its address and every section aligned."""
    unit = 8  # the section-header table
    for program in elf.programs:
        if program.offset >= end:
            floor = _PAGE if program.type == PT_LOAD else 1
            unit = max(unit, floor, program.align)
    for section in elf.sections:
        if section.occupies_file and section.offset >= end:
            unit = max(unit, section.align)
    if unit & (unit - 1):
        raise CannotExcise(f"an alignment of {unit} is not a power of two")
    return unit


def _rewrite_offsets(out: bytearray, elf: _Elf, end: int, slide: int, removed: tuple[_Section, ...]) -> None:
    if elf.phoff >= end:
        struct.pack_into("<Q", out, 32, elf.phoff - slide)
    if elf.shoff >= end:
        struct.pack_into("<Q", out, 40, elf.shoff - slide)
    phoff = elf.phoff - slide if elf.phoff >= end else elf.phoff
    shoff = elf.shoff - slide if elf.shoff >= end else elf.shoff
    for i, program in enumerate(elf.programs):
        if program.offset >= end:
            struct.pack_into("<Q", out, phoff + i * _PROGRAM.size + 8, program.offset - slide)
    removed_indexes = {s.index for s in removed}
    for section in elf.sections:
        at = shoff + section.index * _SECTION.size
        if section.index in removed_indexes:
            _SECTION.pack_into(out, at, 0, SHT_NULL, 0, 0, 0, 0, 0, 0, 0, 0)
        elif section.type != SHT_NULL and section.offset >= end:
            struct.pack_into("<Q", out, at + 24, section.offset - slide)
