"""Unpack wheels into a layer tree safely, and remember which wheel every file came from.

Wheels are hostile input: an entry may try to escape the tree (`..`, absolute paths, drive letters),
smuggle a link, repeat a name, lie about its size or its RECORD hash. Each is refused before anything
of that wheel is written, or (for what can only be seen while reading) before the file is renamed in.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import os
import re
import stat
import struct
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import deflate
from packaging.utils import canonicalize_name, parse_wheel_filename

from ..errors import UnsafeArchiveError

LAYER_PREFIX = "python"
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_RATIO = 200  # deflate tops out near 1032:1; real wheels stay far below 200:1 for large members
RATIO_CHECK_FLOOR = 10 * 1024 * 1024
MAX_NAME_BYTES = 255  # one path component: the limit of ext4, XFS, APFS and NTFS
_DRIVE = re.compile(r"^[A-Za-z]:")
# Members up to this size are read whole and inflated by libdeflate (_SharedArchive.whole); larger ones
# (a CUDA library is a gigabyte) stream through zipfile, a megabyte at a time.
_WHOLE_MEMBER_BYTES = 64 * 1024 * 1024
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # APPNOTE 4.3.7: the local file header, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
_ENCRYPTED = 0x1
_UTF8_NAME = 0x800
_DATA_DIR = re.compile(r"^[^/]+\.data/(purelib|platlib|scripts|headers|data)/(.*)$")


@dataclass(frozen=True)
class LayerFile:
    path: str  # relative posix path inside the layer, under python/
    size: int
    distribution: str  # canonical distribution name
    wheel: str  # wheel file name it came from


@dataclass
class LayerTree:
    """The unpacked layer on disk and the provenance of each file in it.

    `held` lists files that unpack left in their wheel because slimming was expected to remove them:
    they are in `files`, but on disk only once `write_held` wrote them (when a rail spares one).
    """

    root: Path
    files: dict[str, LayerFile] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    held: dict[str, tuple[Path, _Planned]] = field(default_factory=dict)
    # What a piece's record says of its sources: path -> the words of its import statements (slim.py).
    import_words: dict[str, frozenset[str]] = field(default_factory=dict)

    def write_held(self, paths: Iterable[str]) -> None:
        """Write held-back files after all, each checked against its wheel's RECORD."""
        batches: dict[Path, list[_Planned]] = {}
        for path in paths:
            held = self.held.pop(path, None)
            if held is not None:
                batches.setdefault(held[0], []).append(held[1])
        _write_batches(self.root, batches, jobs=1)

    @property
    def python_dir(self) -> Path:
        return self.root / LAYER_PREFIX

    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def origins(self) -> dict[str, str]:
        return {path: f.wheel for path, f in self.files.items()}

    def bytes_by_distribution(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for layer_file in self.files.values():
            totals[layer_file.distribution] = totals.get(layer_file.distribution, 0) + layer_file.size
        return totals

    def files_by_distribution(self) -> dict[str, int]:
        return dict(Counter(layer_file.distribution for layer_file in self.files.values()))

    def distributions(self) -> list[str]:
        return sorted({f.distribution for f in self.files.values()})


@dataclass(frozen=True)
class _Planned:
    info: zipfile.ZipInfo
    destination: str  # relative to the layer root


def plan_wheel(wheel: Path) -> list[_Planned]:
    """Check every entry of a wheel and decide where it lands; raise before writing anything."""
    with _open(wheel) as archive:
        infos = archive.infolist()
    seen: set[str] = set()
    planned: list[_Planned] = []
    total = 0
    for info in infos:
        name = info.filename
        check_entry_name(wheel.name, name)
        if name in seen:
            raise UnsafeArchiveError(
                f"{wheel.name}: entry {name!r} appears twice; refusing an ambiguous wheel"
            )
        seen.add(name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(
                f"{wheel.name}: entry {name!r} is a symbolic link; wheels may not carry links"
            )
        if info.is_dir():
            continue
        if mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode) != 0:
            raise UnsafeArchiveError(f"{wheel.name}: entry {name!r} is not a regular file (mode {oct(mode)})")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise UnsafeArchiveError(
                f"{wheel.name}: declares more than {MAX_TOTAL_BYTES} bytes unpacked; refused"
            )
        if info.file_size > RATIO_CHECK_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise UnsafeArchiveError(
                f"{wheel.name}: entry {name!r} expands {info.compress_size} bytes to {info.file_size}: "
                "a zip bomb, refused"
            )
        destination = _destination(name)
        if destination is not None:
            planned.append(_Planned(info, destination))
    return planned


def check_entry_name(wheel: str, name: str) -> None:
    problem = None
    if "\x00" in name:
        problem = "holds a NUL byte"
    elif "\\" in name:
        problem = "uses a backslash (a Windows path)"
    elif name.startswith("/") or _DRIVE.match(name):
        problem = "is an absolute path"
    elif ".." in (parts := name.split("/")):
        problem = "climbs out of the tree with `..`"
    elif "." in parts:
        problem = "has a `.` component"
    elif "//" in name.rstrip("/"):
        problem = "has an empty path component"
    elif any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in parts):
        problem = f"has a path component longer than {MAX_NAME_BYTES} bytes, which no file system holds"
    if problem:
        raise UnsafeArchiveError(
            f"{wheel}: entry {name!r} {problem}; refusing to unpack this wheel",
            hint="the wheel is malformed or hostile; do not use it",
        )


def _destination(name: str) -> str | None:
    """Where an entry goes in the layer. Scripts, headers and data files have no place on /opt/python."""
    match = _DATA_DIR.match(name)
    if match:
        scheme, rest = match.groups()
        if scheme not in ("purelib", "platlib") or not rest:
            return None
        name = rest
    # Joined as strings: check_entry_name let no `.`, `..` or empty component through, and no directory
    # entry gets here, so pathlib would normalise nothing (and cost 0.05 s a build over 6,000 entries).
    return f"{LAYER_PREFIX}/{name}"


def unpack_all(
    wheels: Sequence[Path],
    root: Path,
    *,
    jobs: int = 4,
    hold_back: Callable[[str, str], bool] | None = None,
) -> LayerTree:
    """Unpack wheels into `root/python`. When two wheels ship the same path, the later (by name) wins.

    `hold_back(path, distribution)` names files not to write yet (those slimming will remove): they
    are listed in the tree all the same, and stay in their wheel until `LayerTree.write_held`.
    """
    plans = {wheel: plan_wheel(wheel) for wheel in sorted(wheels, key=lambda w: w.name)}
    tree = LayerTree(root)
    owner: dict[str, Path] = {}
    for wheel, planned in plans.items():
        for item in planned:
            previous = owner.get(item.destination)
            if previous is not None:
                tree.conflicts.append(
                    f"{item.destination}: in {previous.name} and {wheel.name}; kept {wheel.name}'s"
                )
            owner[item.destination] = wheel
    _refuse_file_folder_clashes(plans)
    root.mkdir(parents=True, exist_ok=True)
    batches: dict[Path, list[_Planned]] = {}
    for wheel, planned in plans.items():
        distribution = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        for item in planned:
            if owner[item.destination] != wheel:
                continue
            tree.files[item.destination] = LayerFile(
                item.destination, item.info.file_size, distribution, wheel.name
            )
            if hold_back is not None and hold_back(item.destination, distribution):
                tree.held[item.destination] = (wheel, item)
            else:
                batches.setdefault(wheel, []).append(item)
    _write_batches(root, batches, jobs=jobs)
    return tree


# scipy's wheel alone is half the bytes of the sklearn stack: split into pieces of about this size and
# taken biggest first, the threads finish together instead of one inflating scipy after the rest.
_PIECE_BYTES = 24 * 1024 * 1024


def _write_batches(root: Path, batches: dict[Path, list[_Planned]], *, jobs: int) -> None:
    # Each wheel is opened once, its directory and RECORD read once, and its pieces' threads read their
    # members through it side by side. A wheel's directory takes 4 to 8 ms to parse alone and up to 25 ms
    # beside the build's other threads: opened once per piece and again for RECORD, 0.37 CPU-s of a cold
    # sklearn build.
    with contextlib.ExitStack() as stack:
        archives = {wheel: _SharedArchive(stack.enter_context(_open(wheel))) for wheel in batches}
        records = {wheel: _read_record(archives[wheel].archive, wheel.name) for wheel in batches}
        pieces = [(wheel, piece) for wheel, planned in batches.items() for piece in _pieces(planned)]
        pieces.sort(key=lambda item: sum(p.info.file_size for p in item[1]), reverse=True)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for _ in pool.map(
                lambda item: _extract(item[0], archives[item[0]], item[1], root, records[item[0]]), pieces
            ):
                pass


def _open(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as error:
        raise UnsafeArchiveError(f"{wheel.name}: not a readable zip ({error})") from None


class _SharedArchive:
    """One opened wheel for the threads that extract its pieces.

    zipfile gives each opened member a position of its own in the file and reads under the archive's
    lock, so members are read side by side (inflating and hashing outside it). Opening and closing a
    member count the archive's open handles without a lock, so those two take this one.

    A deflated or stored member up to _WHOLE_MEMBER_BYTES is read whole instead, by `os.pread` on the
    archive's own descriptor (pread leaves alone the offset zipfile seeks from), and inflated by
    libdeflate: 3 times zlib's speed on these wheels (0.29 against 0.81 CPU-s for the sklearn stack's
    257 MB), with no ZipExtFile and no 1 MB reads. It checks what zipfile checks (the sizes, the CRC-32).
    Either way the local header is checked first (`_data_start`): its signature and name, as zipfile
    checks them, and one thing more: that the member's bytes end before the next member's header
    (zipfile 3.12 and later refuse such overlapping entries, a zip bomb's trick; 3.11.7 does not)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self._lock = threading.Lock()
        assert archive.fp is not None  # opened from a path, and open while the pieces are extracted
        self._fd = archive.fp.fileno()
        starts = sorted({info.header_offset for info in archive.infolist()})
        end_of_members = archive.start_dir  # where the central directory starts
        self._ends = dict(zip(starts, [*starts[1:], end_of_members], strict=True))

    @contextlib.contextmanager
    def member(self, info: zipfile.ZipInfo) -> Iterator[IO[bytes]]:
        self._data_start(info)
        with self._lock:
            handle = self.archive.open(info)
        try:
            yield handle
        finally:
            with self._lock:
                handle.close()

    def whole(self, info: zipfile.ZipInfo) -> bytes | bytearray | None:
        """The member's bytes, checked; None when it is one for `member` (too large, encrypted, or
        compressed otherwise than deflate or not at all). Raises zipfile.BadZipFile for a damaged one."""
        if (
            info.file_size > _WHOLE_MEMBER_BYTES
            or info.flag_bits & _ENCRYPTED
            or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
        ):
            return None
        raw = os.pread(self._fd, info.compress_size, self._data_start(info))
        if len(raw) != info.compress_size:
            raise zipfile.BadZipFile("the member is cut short")
        if info.compress_type == zipfile.ZIP_STORED:
            data: bytes | bytearray = raw
        else:
            try:
                data = deflate.deflate_decompress(raw, info.file_size)
            except deflate.DeflateError as error:
                raise zipfile.BadZipFile(f"the deflate stream is damaged ({error})") from None
        # deflate_decompress stops short of a size that is too large, and fails on one too small.
        if len(data) != info.file_size:
            raise zipfile.BadZipFile(f"{len(data)} bytes where the directory declares {info.file_size}")
        if deflate.crc32(data) != info.CRC:
            raise zipfile.BadZipFile("Bad CRC-32")
        return data

    def _data_start(self, info: zipfile.ZipInfo) -> int:
        """Where the member's data starts, once its local header has been checked and its data found to
        end before the next member's header. Raises zipfile.BadZipFile."""
        header = os.pread(self._fd, _LOCAL_HEADER.size, info.header_offset)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
            raise zipfile.BadZipFile("bad magic number for file header")
        name_length, extra_length = (int(length) for length in _LOCAL_HEADER.unpack(header)[-2:])
        start = info.header_offset + _LOCAL_HEADER.size
        name = os.pread(self._fd, name_length, start)
        encoding = "utf-8" if info.flag_bits & _UTF8_NAME else "cp437"
        if name.decode(encoding, "replace") != info.orig_filename:
            raise zipfile.BadZipFile("the name in the local header differs from the directory's")
        start += name_length + extra_length
        if start + info.compress_size > self._ends[info.header_offset]:
            raise zipfile.BadZipFile("overlapped entries (possible zip bomb)")
        return start


def _pieces(planned: list[_Planned]) -> list[list[_Planned]]:
    pieces: list[list[_Planned]] = [[]]
    size = 0
    for item in planned:
        if size >= _PIECE_BYTES:
            pieces.append([])
            size = 0
        pieces[-1].append(item)
        size += item.info.file_size
    return [piece for piece in pieces if piece]


def _refuse_file_folder_clashes(plans: dict[Path, list[_Planned]]) -> None:
    """A path that one entry writes as a file and another needs as a folder (`pkg/x` and `pkg/x/y.py`),
    in one wheel or across two: refused before anything is written, naming both entries."""
    files: dict[str, tuple[Path, str]] = {}
    for wheel, planned in plans.items():
        for item in planned:
            files.setdefault(item.destination, (wheel, item.info.filename))
    # Folders found to be no file, with all their parents: each is looked up once, not once per entry
    # below it (pathlib did it per entry and level, 0.13 s for the sklearn stack's 5,865 entries).
    # Destinations are normalised (`_destination`), so the parent of a path is what its last "/" leaves.
    folders: set[str] = set()
    for wheel, planned in plans.items():
        for item in planned:
            parent = item.destination.rpartition("/")[0]
            while parent and parent not in folders:
                clash = files.get(parent)
                if clash is not None:
                    other_wheel, other_name = clash
                    raise UnsafeArchiveError(
                        f"{wheel.name}: entry {item.info.filename!r} needs {other_name!r} to be a folder, "
                        f"but {other_wheel.name} ships it as a file; refusing to unpack",
                        hint="the wheels are malformed or hostile, or two of them clash: do not use them",
                    )
                folders.add(parent)
                parent = parent.rpartition("/")[0]


def _extract(
    wheel: Path, archive: _SharedArchive, planned: list[_Planned], root: Path, record: dict[str, str]
) -> None:
    # A folder checked once stays inside: unpack writes no links, and nothing else writes in staging.
    checked: set[Path] = set()
    for item in planned:
        target = root / item.destination
        if target.parent not in checked:
            _ensure_inside(root, target, wheel.name, item.info.filename)
        try:
            if target.parent not in checked:
                target.parent.mkdir(parents=True, exist_ok=True)
                checked.add(target.parent)
            digest = _copy_member(archive, item.info, target, wheel.name)
        except OSError as error:
            reason = error.strerror or str(error)
            raise UnsafeArchiveError(
                f"{wheel.name}: entry {item.info.filename!r} cannot be written ({reason})",
                hint="the wheel holds a path this file system cannot take; do not use it",
            ) from None
        _check_record(wheel.name, item.info.filename, digest, record)
        executable = (item.info.external_attr >> 16) & 0o111
        target.chmod(0o755 if executable else 0o644)


def _ensure_inside(root: Path, target: Path, wheel: str, name: str) -> None:
    # Names were checked already; this also catches a directory on the way that is a link.
    try:
        target.parent.resolve().relative_to(root.resolve())
    except ValueError:
        raise UnsafeArchiveError(f"{wheel}: entry {name!r} would land outside the layer; refused") from None


def _copy_member(archive: _SharedArchive, info: zipfile.ZipInfo, target: Path, wheel: str) -> str:
    try:
        whole = archive.whole(info)
        if whole is not None:
            digest = hashlib.sha256(whole)
            with target.open("wb") as sink:
                sink.write(whole)
        else:
            digest = hashlib.sha256()
            written = 0
            with archive.member(info) as source, target.open("wb") as sink:
                while chunk := source.read(1024 * 1024):
                    written += len(chunk)
                    if written > info.file_size:
                        longer = f"{wheel}: entry {info.filename!r} is longer than it declares"
                        raise UnsafeArchiveError(longer)
                    digest.update(chunk)
                    sink.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        target.unlink(missing_ok=True)
        raise UnsafeArchiveError(f"{wheel}: entry {info.filename!r} is corrupt ({error})") from None
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def _read_record(archive: zipfile.ZipFile, wheel: str) -> dict[str, str]:
    """RECORD's sha256 per entry; a wheel without a RECORD is refused, since nothing can be checked."""
    names = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(names) != 1:
        raise UnsafeArchiveError(f"{wheel}: expected one .dist-info/RECORD, found {len(names)}")
    text = archive.read(names[0]).decode("utf-8", "replace")
    hashes: dict[str, str] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            hashes[row[0]] = row[1].removeprefix("sha256=")
    return hashes


def _check_record(wheel: str, name: str, digest: str, record: dict[str, str]) -> None:
    if name.endswith(".dist-info/RECORD"):
        return
    expected = record.get(name)
    if expected is None:
        raise UnsafeArchiveError(
            f"{wheel}: entry {name!r} is not listed in RECORD; the wheel is inconsistent"
        )
    if expected != digest:
        raise UnsafeArchiveError(
            f"{wheel}: entry {name!r} does not match its RECORD hash; the wheel was altered"
        )
