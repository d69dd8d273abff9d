"""Deterministic layer zips: the same tree gives the same bytes, on any machine, any day.

Entries are sorted, timestamps fixed at 1980-01-01 (the zip epoch), modes normalised to 0644 / 0755,
no directory entries, no extra fields. The zip is written to a temporary name and renamed into place,
so a failed or interrupted build never leaves a zip behind.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import deflate

from ..binaries.binfmt import iter_files
from ..cache import known_sha256, sha256_of
from ..member_cache import MemberCache
from .member_packs import SmallPacks

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# libdeflate's level 6: on the sklearn layer 2.5 times faster than zlib's level 6 (what shutil.make_archive
# uses) and 1.6% smaller. libdeflate ships inside the `deflate` wheel, so its output does not depend on
# the zlib of the host: the same tree gives the same zip on every machine with the same layerforge.
COMPRESS_LEVEL = 6
# Read-ahead: enough to keep every thread busy past a large member (OpenBLAS is 25 MB), and no more,
# since it is most of the build's peak memory.
_IN_FLIGHT_BYTES = 48 * 1024 * 1024
_IN_FLIGHT_MEMBERS = 4096
_DEDUPE_FLOOR = 1024 * 1024
# Smaller members are filed a folder at a time (member_packs.py), not one entry each: on the sklearn layer
# they are 2,175 of its 2,520 members, and each entry costs a file (creating one takes 0.35 ms here). With
# a 16 KiB floor and no packs, a cold build spent twice the CPU on writing the cache for 7% less
# deflating when warm.
CACHE_FLOOR = 64 * 1024
# What decides a member's deflate stream besides its content: the library (its version pins the bundled
# libdeflate) and the level. A cached stream made under other settings is never looked up.
DEFLATE_SETTINGS = f"libdeflate (deflate {deflate.__version__}) level {COMPRESS_LEVEL}"


@dataclass(frozen=True)
class ZipResult:
    path: Path
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    entries: int
    cached_members: int = 0  # members whose deflate stream came from the member cache


def layer_entries(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under root as (arcname, path), sorted by arcname; links are never followed."""
    # iter_files sorts each folder's names; the zip wants whole paths sorted ("a.b" before "a/").
    return sorted(iter_files(root), key=lambda item: item[0])


def _zip_info(arcname: str, found: os.stat_result) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
    executable = found.st_mode & 0o111
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    info.create_system = 3  # unix, so the modes above are honoured on extraction
    # Every member is deflated: storing already-compressed data saves little time and costs bytes.
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_zip(
    root: Path,
    destination: Path,
    *,
    entries: Iterable[tuple[str, Path]] | None = None,
    progress: Callable[[int], None] | None = None,
    jobs: int | None = None,
    cache: MemberCache | None = None,
    prepared: Mapping[str, Future[Proved | None]] | None = None,
) -> ZipResult:
    """Zip `root`'s files (or the given entries) into `destination`, atomically.

    Members are deflated in `jobs` threads (libdeflate releases the GIL), each whole, so the bytes do not
    depend on `jobs`. With a `cache`, a member whose stream is there is copied, not deflated again, and
    every stream deflated is filed there for the next build: the bytes do not depend on the cache either.
    A member whose sha256 this process has proved (a piece's checkout, cache.py) is keyed by that digest,
    not hashed again; `prepared` maps such digests to streams `prepare_member` is proving meanwhile. A
    member whose stream was proved so is not read at all: its size and CRC-32 came with the proof.
    """
    items = sorted(entries, key=lambda item: item[0]) if entries is not None else layer_entries(root)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    os.close(handle)
    unzipped = 0
    cached = 0
    workers = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    try:
        with (
            zipfile.ZipFile(temporary, "w") as archive,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            for info, data, (stream, from_cache) in _compressed_in_order(items, pool, cache, prepared or {}):
                _write_member(archive, info, data, stream)
                size = data.size if isinstance(data, _Known) else len(data)
                unzipped += size
                cached += from_cache
                if progress:
                    progress(size)
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return ZipResult(
        destination, sha256_of(destination), destination.stat().st_size, unzipped, len(items), cached
    )


def deflate_member(data: bytes, level: int = COMPRESS_LEVEL) -> bytes:
    """The raw deflate stream of one member, as `write_zip` stores it."""
    return bytes(deflate.deflate_compress(data, level))


def _deflate_cached(data: bytes, cache: MemberCache | None, sha256: str | None = None) -> tuple[bytes, bool]:
    """The member's deflate stream, and whether it came from the cache (run in the pool: hashlib and
    libdeflate release the GIL). `sha256`: the member's, when it is known. Small members have their
    packs (member_packs.py)."""
    if cache is None or len(data) < CACHE_FLOOR:
        return deflate_member(data), False
    key = member_key(data) if sha256 is None else member_key_of(sha256)
    stream = cache.get(key)
    if stream is not None and _inflates_to(stream, data):
        return stream, True
    stream = deflate_member(data)
    cache.put(key, stream)
    return stream, False


@dataclass(frozen=True)
class Proved:
    """A member's cached stream, proved to inflate to the content of a digest, and that content's CRC-32."""

    stream: bytes
    crc: int


def prepare_member(cache: MemberCache, sha256: str, size: int) -> Proved | None:
    """The cached stream of a member known only by its sha256 and size, when it inflates to exactly that
    content; None otherwise. What the zip child does while the build still works on the tree: the member
    is not read, so its stream is proved against the digest a checkout proved for it, not its bytes."""
    stream = cache.get(member_key_of(sha256))
    if stream is None:
        return None
    try:
        inflated = deflate.deflate_decompress(stream, size)
    except deflate.DeflateError:
        return None
    if len(inflated) != size or hashlib.sha256(inflated).hexdigest() != sha256:
        return None
    return Proved(stream, deflate.crc32(inflated))  # libdeflate's: 3 times zlib's speed here


@dataclass(frozen=True)
class _Known:
    """A member not read: a stream proved ahead stands for content of this size and CRC-32, the content
    the file's digest names (proved by a checkout, for this very inode, size and mtime)."""

    path: Path
    size: int
    crc: int


def _copied_or_deflated(stream: bytes | None, data: bytes) -> tuple[bytes, bool]:
    """A small member's stream from its pack when it inflates to the member, else deflated here."""
    if stream is not None and _inflates_to(stream, data):
        return stream, True
    return deflate_member(data), False


def _inflates_to(stream: bytes, data: bytes) -> bool:
    """Whether a cached stream gives back exactly the member. The entry's digest catches damage; this
    catches a stream someone filed with a valid digest (a cache restored from elsewhere is input too), so
    no cache can put other bytes in a layer. Inflating costs a sixth of deflating."""
    try:
        return bytes(deflate.deflate_decompress(stream, len(data))) == data
    except deflate.DeflateError:
        return False


def member_key(data: bytes) -> str:
    """The member cache's key: the content's hash and the deflate settings, nothing else."""
    return member_key_of(hashlib.sha256(data).hexdigest())


def member_key_of(sha256: str) -> str:
    material = bytes.fromhex(sha256) + DEFLATE_SETTINGS.encode()
    return hashlib.sha256(material).hexdigest()


_Stream = tuple[bytes, bool]
_Pending = tuple[zipfile.ZipInfo, "bytes | _Known", "Future[_Stream]"]


def _compressed_in_order(
    items: list[tuple[str, Path]],
    pool: ThreadPoolExecutor,
    cache: MemberCache | None,
    prepared: Mapping[str, Future[Proved | None]],
) -> Iterator[tuple[zipfile.ZipInfo, bytes | _Known, _Stream]]:
    """Members in order with their deflate streams, reading ahead while at most _IN_FLIGHT_BYTES wait."""
    pending: deque[_Pending] = deque()
    waiting = 0
    # Wheels often bundle the same library twice (libgfortran in numpy.libs and scipy.libs): deflate once.
    # Only a large member whose size another one shares can be such a copy; for those alone a digest and
    # the deflate stream are kept, not the bytes of every large member.
    found_of = {path: path.stat() for _, path in items}
    sizes = Counter(found.st_size for found in found_of.values())
    small = (
        SmallPacks(
            cache,
            DEFLATE_SETTINGS,
            [
                (arcname, path, known_sha256(found_of[path]))
                for arcname, path in items
                if found_of[path].st_size < CACHE_FLOOR
            ],
        )
        if cache is not None
        else None
    )
    seen: dict[tuple[int, bytes], Future[_Stream]] = {}
    for arcname, path in items:
        found = found_of[path]
        info = _zip_info(arcname, found)
        proved = _proved(prepared, found)
        if proved is not None:
            done: Future[_Stream] = Future()
            done.set_result((proved.stream, True))
            pending.append((info, _Known(path, found.st_size, proved.crc), done))
            continue
        data = path.read_bytes()
        key = None
        future = None
        if len(data) >= _DEDUPE_FLOOR and sizes[len(data)] > 1:
            key = (len(data), hashlib.sha256(data).digest())
            future = seen.get(key)
        if future is None and small is not None and found.st_size < CACHE_FLOOR:
            stream = small.stream_for(arcname)
            # A cached stream is proved here, where the member was read: inflating a few kilobytes costs
            # less than handing it to the pool and back (2,300 members in the sklearn layer).
            if stream is None:
                future = pool.submit(_copied_or_deflated, stream, data)
            else:
                future = Future()
                future.set_result(_copied_or_deflated(stream, data))
            small.note(arcname, future)
        if future is None:
            future = pool.submit(_deflate_cached, data, cache, known_sha256(found))
            if key is not None:
                seen[key] = future
        pending.append((info, data, future))
        waiting += len(data)
        while pending and (waiting > _IN_FLIGHT_BYTES or len(pending) > _IN_FLIGHT_MEMBERS):
            waiting -= _held(pending[0][1])
            yield _finish(pending.popleft())
    while pending:
        yield _finish(pending.popleft())
    if small is not None:
        small.file()


def _proved(prepared: Mapping[str, Future[Proved | None]], found: os.stat_result) -> Proved | None:
    """The stream proved ahead for this member's digest, if one was asked for and proved."""
    if not prepared or found.st_size < CACHE_FLOOR:
        return None
    sha256 = known_sha256(found)
    waiting = prepared.get(sha256) if sha256 is not None else None
    return waiting.result() if waiting is not None else None


def _held(data: bytes | _Known) -> int:
    """What a pending member holds in memory besides its stream."""
    return 0 if isinstance(data, _Known) else len(data)


def _finish(item: _Pending) -> tuple[zipfile.ZipInfo, bytes | _Known, _Stream]:
    info, data, future = item
    return info, data, future.result()


def _write_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, data: bytes | _Known, stream: bytes
) -> None:
    """Let zipfile write the headers, CRC and sizes; hand it the deflate stream computed in the pool.

    zipfile has no public way to accept precompressed data. Its writer calls `_compressor.compress()`
    and `.flush()`: swapping that object in is the smallest hook, and without it (another Python) the
    member is compressed by zipfile itself, serially. A member not read (`_Known`) also has the size and
    CRC-32 it would count set where its writer counts them; without those (another Python) it is read.
    """
    with archive.open(info, "w") as writer:
        if not hasattr(writer, "_compressor"):
            writer.write(data.path.read_bytes() if isinstance(data, _Known) else data)
            return
        writer._compressor = _Precompressed(stream)
        if not (hasattr(writer, "_crc") and hasattr(writer, "_file_size")):
            writer.write(data.path.read_bytes() if isinstance(data, _Known) else data)
        elif isinstance(data, _Known):
            # What write() would have counted; close() then flushes the whole stream.
            writer._file_size, writer._crc = data.size, data.crc
        else:  # the same, with libdeflate's CRC-32 (write() takes zlib's, a third of its speed)
            writer._file_size, writer._crc = len(data), deflate.crc32(data)


class _Precompressed:
    def __init__(self, stream: bytes) -> None:
        self._stream: bytes | None = stream

    def compress(self, _data: bytes) -> bytes:
        stream, self._stream = self._stream or b"", b""
        return stream

    def flush(self) -> bytes:
        stream, self._stream = self._stream or b"", b""
        return stream
