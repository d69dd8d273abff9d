"""Read the headers of a 64-bit little-endian ELF object (x86_64 and aarch64: every Lambda target).

Why not pyelftools here: it builds objects for every section and scans all of them again for each
dynamic segment, about 10 ms a file; a build reads some 200 shared objects on its critical path. These
few fixed-size structs are what slimming needs: the segments, the sections and their names, and the
dynamic section's NEEDED and SONAME. Everything is bounds-checked: a wheel is hostile input.
pyelftools still reads anything else (the strip checks, the audit's symbol versions).
"""

from __future__ import annotations

import mmap
import os
import posixpath
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ELFCLASS64 = 2
ELFDATA2LSB = 1
SHT_NULL = 0
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOBITS = 8
SHF_ALLOC = 0x2
PT_LOAD = 1
PT_DYNAMIC = 2
DT_NULL = 0
DT_NEEDED = 1
DT_STRTAB = 5
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29
_SHN_LORESERVE = 0xFF00

HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
PROGRAM = struct.Struct("<IIQQQQQQ")
SECTION = struct.Struct("<IIQQQQIIQQ")
_DYN = struct.Struct("<qQ")
E_PHOFF_AT, E_SHOFF_AT = 32, 40  # where e_phoff and e_shoff sit in the ELF header
P_OFFSET_AT, SH_OFFSET_AT = 8, 24  # where the file offset sits in a program and a section header


@contextmanager
def mapped_file(path: Path) -> Iterator[memoryview]:
    """The file's bytes, mapped rather than read: only the pages looked at are loaded. Raises OSError."""
    with path.open("rb") as stream:
        if os.fstat(stream.fileno()).st_size == 0:
            yield memoryview(b"")  # mmap refuses an empty file
            return
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            yield view


class NotReadable(Exception):
    """Not an ELF64 little-endian object whose headers can be trusted; the message says why."""


@dataclass(frozen=True)
class Program:
    at: int  # where this header sits in the file
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int

    @property
    def loader_view(self) -> tuple[int, ...]:
        """What the loader reads of this header but the file offset, and the offset's congruence."""
        congruence = (self.vaddr - self.offset) % self.align if self.align > 1 else 0
        return (self.type, self.flags, self.vaddr, self.filesz, self.memsz, self.align, congruence)


@dataclass(frozen=True)
class Section:
    index: int
    name_at: int  # offset of its name in the section-name table
    type: int
    flags: int
    offset: int
    size: int
    link: int
    align: int

    @property
    def occupies_file(self) -> bool:
        return self.type not in (SHT_NULL, SHT_NOBITS) and self.size > 0

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader reads to find an object's libraries."""

    needed: tuple[str, ...] = ()
    soname: str | None = None
    search_path: tuple[str, ...] = ()  # DT_RUNPATH, else DT_RPATH, split; may hold $ORIGIN

    def search_folders(self, origin: str) -> tuple[str, ...]:
        """The search path with $ORIGIN (or ${ORIGIN}) as `origin`, the object's own folder, normalised."""
        return tuple(
            posixpath.normpath(entry.replace("${ORIGIN}", "$ORIGIN").replace("$ORIGIN", origin))
            for entry in self.search_path
        )


@dataclass(frozen=True)
class ElfHeaders:
    phoff: int
    phsize: int
    shoff: int
    shsize: int
    shstrndx: int
    programs: tuple[Program, ...]
    sections: tuple[Section, ...]

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> ElfHeaders:
        try:
            return cls._parse(data)
        except struct.error as exc:
            raise NotReadable(f"truncated ELF headers ({exc})") from exc

    @classmethod
    def _parse(cls, data: bytes | bytearray | memoryview) -> ElfHeaders:
        if len(data) < HEADER.size or bytes(data[:4]) != b"\x7fELF":
            raise NotReadable("not an ELF file")
        if data[4] != ELFCLASS64 or data[5] != ELFDATA2LSB:
            raise NotReadable("only 64-bit little-endian objects are handled")
        fields = HEADER.unpack_from(data, 0)
        phoff, shoff = fields[5], fields[6]
        phentsize, phnum, shentsize, shnum, shstrndx = fields[9:14]
        if (phnum and phentsize != PROGRAM.size) or shentsize != SECTION.size:
            raise NotReadable("unexpected header entry sizes")
        if shnum == 0 or shstrndx >= _SHN_LORESERVE or shstrndx >= shnum:
            raise NotReadable("extended section numbering")
        if phoff + phnum * PROGRAM.size > len(data) or shoff + shnum * SECTION.size > len(data):
            raise NotReadable("header tables run past the end of the file")
        programs = tuple(_program(data, phoff + i * PROGRAM.size) for i in range(phnum))
        sections = tuple(_section(data, i, shoff + i * SECTION.size) for i in range(shnum))
        if any(s.occupies_file and s.end > len(data) for s in sections):
            raise NotReadable("a section runs past the end of the file")
        return cls(phoff, phnum * PROGRAM.size, shoff, shnum * SECTION.size, shstrndx, programs, sections)

    def section_names(self, data: bytes | bytearray | memoryview) -> list[str]:
        """Each section's name, by index ('' where the name table cannot give one)."""
        table = self.sections[self.shstrndx]
        names = bytes(data[table.offset : table.end]) if table.occupies_file else b""
        return [_c_string(names, section.name_at) for section in self.sections]

    def dynamic(self, data: bytes | bytearray | memoryview) -> Dynamic:
        """NEEDED, SONAME and the search path from the dynamic segment, read as the loader reads it."""
        dynamic = next((p for p in self.programs if p.type == PT_DYNAMIC and p.filesz), None)
        if dynamic is None:
            return Dynamic()
        if dynamic.offset + dynamic.filesz > len(data):
            raise NotReadable("the dynamic segment runs past the end of the file")
        entries: list[tuple[int, int]] = []
        for at in range(dynamic.offset, dynamic.offset + dynamic.filesz - _DYN.size + 1, _DYN.size):
            tag, value = _DYN.unpack_from(data, at)
            if tag == DT_NULL:
                break
            entries.append((tag, value))
        strtab = next((value for tag, value in entries if tag == DT_STRTAB), None)
        if strtab is None:
            return Dynamic()
        base = self.file_offset(strtab)

        def strings(wanted: int) -> list[str]:
            return [self._string(data, base, value) for tag, value in entries if tag == wanted]

        # The loader reads DT_RPATH only when there is no DT_RUNPATH.
        search = strings(DT_RUNPATH) or strings(DT_RPATH)
        return Dynamic(
            needed=tuple(strings(DT_NEEDED)),
            soname=next(iter(strings(DT_SONAME)), None),
            search_path=tuple(entry for line in search for entry in line.split(":") if entry),
        )

    def file_offset(self, vaddr: int) -> int:
        """Where the byte the loader maps at `vaddr` sits in the file."""
        for program in self.programs:
            if program.type == PT_LOAD and program.vaddr <= vaddr < program.vaddr + program.filesz:
                return program.offset + (vaddr - program.vaddr)
        raise NotReadable(f"address {vaddr:#x} is in no loaded segment")

    @staticmethod
    def _string(data: bytes | bytearray | memoryview, base: int, offset: int) -> str:
        start = base + offset
        if not 0 <= start < len(data):
            raise NotReadable("a dynamic string lies outside the file")
        end = bytes(data[start : start + 4096]).find(b"\0")
        if end < 0:
            raise NotReadable("an unterminated dynamic string")
        return bytes(data[start : start + end]).decode("utf-8", "replace")


def _c_string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset:end].decode("utf-8", "replace") if 0 <= offset < len(table) and end >= 0 else ""


def _program(data: bytes | bytearray | memoryview, at: int) -> Program:
    p_type, flags, offset, vaddr, _paddr, filesz, memsz, align = PROGRAM.unpack_from(data, at)
    return Program(at, p_type, flags, offset, vaddr, filesz, memsz, align)


def _section(data: bytes | bytearray | memoryview, index: int, at: int) -> Section:
    name_at, s_type, flags, _addr, offset, size, link, _info, align, _entsize = SECTION.unpack_from(data, at)
    return Section(index, name_at, s_type, flags, offset, size, link, align)
