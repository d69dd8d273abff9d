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

from .elfheaders import (
    E_PHOFF_AT,
    E_SHOFF_AT,
    HEADER,
    P_OFFSET_AT,
    PROGRAM,
    PT_LOAD,
    SECTION,
    SH_OFFSET_AT,
    SHF_ALLOC,
    SHT_NULL,
    SHT_STRTAB,
    SHT_SYMTAB,
    ElfHeaders,
    NotReadable,
    Program,
    Section,
)

_PAGE = 4096  # the smallest page any Lambda target maps; a PT_LOAD slides by whole pages at least


class CannotExcise(Exception):
    """The object's layout is not one this module can edit safely; the message says why."""


def _parse(data: bytes | bytearray) -> ElfHeaders:
    try:
        return ElfHeaders.parse(data)
    except NotReadable as exc:
        raise CannotExcise(str(exc)) from exc


def has_symbol_table(data: bytes) -> bool:
    """Whether the object carries a .symtab this module could try to cut."""
    try:
        return any(s.type == SHT_SYMTAB and s.size > 0 for s in ElfHeaders.parse(data).sections)
    except NotReadable:
        return False


def excise_symbol_table(data: bytes) -> bytearray:
    """`data` without its .symtab and .strtab. Raises CannotExcise when the layout does not allow it."""
    elf = _parse(data)
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
    _check_loader_view(data, elf, out)
    return out


def _removable(elf: ElfHeaders) -> tuple[Section, ...]:
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


def _check_nothing_else_within(elf: ElfHeaders, removed: tuple[Section, ...], start: int, end: int) -> None:
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
    if overlaps(0, HEADER.size) or overlaps(elf.phoff, elf.phsize) or overlaps(elf.shoff, elf.shsize):
        raise CannotExcise("a header table lies within the symbol table")


def _slide_unit(elf: ElfHeaders, end: int) -> int:
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


def _rewrite_offsets(
    out: bytearray, elf: ElfHeaders, end: int, slide: int, removed: tuple[Section, ...]
) -> None:
    if elf.phoff >= end:
        struct.pack_into("<Q", out, E_PHOFF_AT, elf.phoff - slide)
    if elf.shoff >= end:
        struct.pack_into("<Q", out, E_SHOFF_AT, elf.shoff - slide)
    phoff = elf.phoff - slide if elf.phoff >= end else elf.phoff
    shoff = elf.shoff - slide if elf.shoff >= end else elf.shoff
    for i, program in enumerate(elf.programs):
        if program.offset >= end:
            struct.pack_into("<Q", out, phoff + i * PROGRAM.size + P_OFFSET_AT, program.offset - slide)
    removed_indexes = {s.index for s in removed}
    for section in elf.sections:
        at = shoff + section.index * SECTION.size
        if section.index in removed_indexes:
            SECTION.pack_into(out, at, 0, SHT_NULL, 0, 0, 0, 0, 0, 0, 0, 0)
        elif section.type != SHT_NULL and section.offset >= end:
            struct.pack_into("<Q", out, at + SH_OFFSET_AT, section.offset - slide)


def _check_loader_view(original: bytes, before: ElfHeaders, cut: bytearray) -> None:
    """Read the result back as the loader would: the same ELF header but for the two table offsets, the
    same segments (address, sizes, flags, alignment, congruence) and, byte for byte, the same contents
    in every one of them. Anything else is a bug here, and the original stays."""
    try:
        after = ElfHeaders.parse(cut)
    except NotReadable as exc:
        raise CannotExcise(f"the cut object could not be read back ({exc})") from exc
    header_fields = list(HEADER.unpack_from(original, 0)), list(HEADER.unpack_from(cut, 0))
    for fields in header_fields:
        fields[5:7] = []  # e_phoff and e_shoff may move
    if header_fields[0] != header_fields[1]:
        raise CannotExcise("the cut changed the ELF header")
    if [p.loader_view for p in before.programs] != [p.loader_view for p in after.programs]:
        raise CannotExcise("the cut changed a segment")
    for old, new in zip(before.programs, after.programs, strict=True):
        if old.filesz and _mapped(original, before, old) != _mapped(cut, after, new):
            raise CannotExcise("the cut changed the contents of a segment")


def _mapped(data: bytes | bytearray, elf: ElfHeaders, program: Program) -> bytes | memoryview:
    """A segment's bytes as the loader maps them, with what the cut rewrites zeroed on both sides: the
    file offsets in the ELF and program headers (which the first segment usually maps), and the section
    headers, which the loader never reads (patchelf may put them inside a segment it appends)."""
    start, end = program.offset, program.offset + program.filesz
    moving = [(E_PHOFF_AT, 16), (elf.shoff, elf.shsize)] + [(p.at + P_OFFSET_AT, 8) for p in elf.programs]
    inside = [(at, size) for at, size in moving if start <= at and at + size <= end]
    if not inside:
        return memoryview(data)[start:end]
    copy = bytearray(data[start:end])
    for at, size in inside:
        copy[at - start : at - start + size] = bytes(size)
    return bytes(copy)
