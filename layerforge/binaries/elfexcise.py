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

import hmac
import struct
from dataclasses import dataclass
from pathlib import Path

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
    mapped_file,
)

_PAGE = 4096  # the smallest page any Lambda target maps; a PT_LOAD slides by whole pages at least


class CannotExcise(Exception):
    """The object's layout is not one this module can edit safely; the message says why."""


_Bytes = bytes | bytearray | memoryview


def _parse(data: _Bytes) -> ElfHeaders:
    try:
        return ElfHeaders.parse(data)
    except NotReadable as exc:
        raise CannotExcise(str(exc)) from exc


@dataclass(frozen=True)
class _Cut:
    """Bytes [start, end) go; everything from `end` on moves down by `slide`; the rest stays zeros."""

    elf: ElfHeaders
    removed: tuple[Section, ...]
    start: int
    end: int
    slide: int

    @property
    def zeros(self) -> int:
        return self.end - self.start - self.slide


def excise_file(source: Path, out: Path) -> None:
    """Write `source` without its .symtab and .strtab to `out`, streaming: OpenBLAS is 25 MB, and two
    threads cut two files at once. Raises CannotExcise, and then `out` holds nothing to keep."""
    with mapped_file(source) as data:
        cut = _plan(data)
        with out.open("wb") as stream:
            stream.write(data[: cut.start])
            stream.write(bytes(cut.zeros))
            stream.write(data[cut.end :])
            for at, patch in _patches(cut):
                stream.seek(at)
                stream.write(patch)
        with mapped_file(out) as written:
            _check_loader_view(data, cut.elf, written)


def _plan(data: _Bytes) -> _Cut:
    elf = _parse(data)
    removed = _removable(elf)
    start, end = min(s.offset for s in removed), max(s.end for s in removed)
    _check_nothing_else_within(elf, removed, start, end)
    unit = _slide_unit(elf, end)
    slide = (end - start) // unit * unit
    if slide == 0:
        raise CannotExcise(f"the symbol table is smaller than the {unit}-byte alignment of what follows it")
    return _Cut(elf, removed, start, end, slide)


def _removable(elf: ElfHeaders) -> tuple[Section, ...]:
    tables = [s for s in elf.sections if s.type == SHT_SYMTAB]
    if len(tables) != 1 or not tables[0].occupies_file:
        raise CannotExcise("no single .symtab with contents")
    symtab = tables[0]
    if not 0 < symtab.link < len(elf.sections):
        raise CannotExcise(".symtab names no string table")
    strtab = elf.sections[symtab.link]
    if strtab.type != SHT_STRTAB:
        raise CannotExcise(".symtab names a section that is not a string table")
    if strtab.index == elf.shstrndx:
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


def _patches(cut: _Cut) -> list[tuple[int, bytes]]:
    """(position in the output, new bytes): the moved offsets, and the two emptied section headers."""
    elf, end, slide = cut.elf, cut.end, cut.slide

    def moved(offset: int) -> int:
        return offset - slide if offset >= end else offset

    patches = [
        (E_PHOFF_AT, struct.pack("<Q", moved(elf.phoff))),
        (E_SHOFF_AT, struct.pack("<Q", moved(elf.shoff))),
    ]
    phoff, shoff = moved(elf.phoff), moved(elf.shoff)
    for i, program in enumerate(elf.programs):
        patches.append((phoff + i * PROGRAM.size + P_OFFSET_AT, struct.pack("<Q", moved(program.offset))))
    removed = {s.index for s in cut.removed}
    for section in elf.sections:
        at = shoff + section.index * SECTION.size
        if section.index in removed:
            patches.append((at, SECTION.pack(0, SHT_NULL, 0, 0, 0, 0, 0, 0, 0, 0)))
        elif section.type != SHT_NULL:
            patches.append((at + SH_OFFSET_AT, struct.pack("<Q", moved(section.offset))))
    return patches


def _check_loader_view(original: _Bytes, before: ElfHeaders, cut: _Bytes) -> None:
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
        # compare_digest for its loop in C over any two buffers: memoryview's `!=` compares item by item
        # through its format code, 0.5 s of CPU (with the GIL held) over the sklearn stack's objects.
        if old.filesz and not hmac.compare_digest(_mapped(original, before, old), _mapped(cut, after, new)):
            raise CannotExcise("the cut changed the contents of a segment")


def _mapped(data: _Bytes, elf: ElfHeaders, program: Program) -> bytes | memoryview:
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
