"""Tell executable formats apart by their first bytes: ELF, Windows PE, macOS Mach-O, or anything else.

Extensions lie (a `.so` from a macOS wheel is Mach-O, a `.pyd` is PE), so the audit and the stripper look
at magic numbers. Each sniff reads at most 64 bytes, plus 4 more for a PE signature, so a whole layer of
thousands of files is classified in milliseconds without loading any large library into memory.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Kind = Literal["elf", "pe", "macho", "other"]

ET_DYN = 3
EM_X86_64 = 62
EM_AARCH64 = 183

# Machine names as `uname -m`, wheel tags and target.machine spell them, for the e_machine values a
# Python wheel may plausibly carry; anything else is shown as EM_<number>.
MACHINE_NAMES: dict[int, str] = {
    2: "sparc",
    3: "i386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    43: "sparc64",
    EM_X86_64: "x86_64",
    EM_AARCH64: "aarch64",
    243: "riscv64",
    258: "loongarch64",
}
E_MACHINES: dict[str, int] = {name: number for number, name in MACHINE_NAMES.items()}

_ELF_MAGIC = b"\x7fELF"
_MZ_MAGIC = b"MZ"
_PE_SIGNATURE = b"PE\x00\x00"
_MACHO_THIN = {b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"}
_MACHO_FAT_BE = {b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"}
_MACHO_FAT_LE = {b"\xbe\xba\xfe\xca", b"\xbf\xba\xfe\xca"}
# Java class files share the fat Mach-O magic. file(1)'s rule separates them: the next word is the
# architecture count in a fat binary (small), but a class-file version (45 and up) in Java.
_MAX_FAT_ARCHES = 20
_HEAD_BYTES = 64


@dataclass(frozen=True)
class ElfIdent:
    """The fields of an ELF header that decide whether a system can load the object at all."""

    bits: int  # 32 or 64 (EI_CLASS)
    little_endian: bool  # EI_DATA
    e_type: int
    e_machine: int

    @property
    def machine(self) -> str:
        return MACHINE_NAMES.get(self.e_machine, f"EM_{self.e_machine}")

    @property
    def is_shared_object(self) -> bool:
        return self.e_type == ET_DYN


@dataclass(frozen=True)
class Sniffed:
    """What a file is. `elf` is None for non-ELF files and for ELF files too short to have a header."""

    kind: Kind
    elf: ElfIdent | None = None


OTHER = Sniffed("other")


def iter_files(folder: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """Regular files under folder in sorted order, as (relative posix path, path).

    Symlinks are not followed: a link's target is checked where it lives in the tree, and a link that
    leaves the tree is not the layer's content."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_symlink():
            continue
        rel = prefix + entry.name
        if entry.is_dir():
            yield from iter_files(Path(entry.path), rel + "/")
        elif entry.is_file():
            yield rel, Path(entry.path)


def sniff(path: Path) -> Sniffed:
    """Classify one regular file by its magic bytes. Unreadable files count as "other"."""
    try:
        with path.open("rb") as stream:
            return sniff_stream(stream)
    except OSError:
        return OTHER


def sniff_stream(stream: IO[bytes]) -> Sniffed:
    """Classify what a seekable stream holds from where it stands: a file, or a member of a zip."""
    head = stream.read(_HEAD_BYTES)
    if head.startswith(_MZ_MAGIC):
        return Sniffed("pe") if _has_pe_signature(stream, head) else OTHER
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> Sniffed:
    """Classify by the first bytes alone (PE needs the file, see `sniff`)."""
    if head.startswith(_ELF_MAGIC):
        return Sniffed("elf", parse_elf_ident(head))
    if _is_macho(head):
        return Sniffed("macho")
    return OTHER


def parse_elf_ident(head: bytes) -> ElfIdent | None:
    """Read class, byte order, type and machine from the first 20 bytes; None when malformed."""
    if len(head) < 20 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    little = head[5] == 1
    e_type, e_machine = struct.unpack_from("<HH" if little else ">HH", head, 16)
    return ElfIdent(bits=32 * head[4], little_endian=little, e_type=e_type, e_machine=e_machine)


def _has_pe_signature(stream: IO[bytes], head: bytes) -> bool:
    # "MZ" alone is two printable letters that plenty of data files start with; a real PE image
    # points from offset 0x3C to a "PE\0\0" signature.
    if len(head) < 0x40:
        return False
    (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
    try:
        stream.seek(pe_offset)
        signature = stream.read(4)
    except (OSError, ValueError, OverflowError):
        return False
    return signature == _PE_SIGNATURE


def _is_macho(head: bytes) -> bool:
    magic = head[:4]
    if magic in _MACHO_THIN:
        return True
    if len(head) < 8 or magic not in _MACHO_FAT_BE | _MACHO_FAT_LE:
        return False
    arches: int = struct.unpack_from(">I" if magic in _MACHO_FAT_BE else "<I", head, 4)[0]
    return 0 < arches < _MAX_FAT_ARCHES
