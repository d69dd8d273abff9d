"""The content-addressed wheel cache: a file is stored under its sha256 and only after it was verified."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from filelock import FileLock

_CHUNK = 1024 * 1024
# A download in progress: `<entry>/.download-XXXX.part`, renamed to the wheel's name once verified.
PARTIAL_PREFIX = ".download-"
PARTIAL_SUFFIX = ".part"


def default_cache_dir() -> Path:
    """LAYERFORGE_CACHE_DIR, else the user cache folder (XDG on Linux, Library/Caches on macOS)."""
    explicit = os.environ.get("LAYERFORGE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if os.name == "nt":
        return (
            Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "layerforge" / "Cache"
        )
    if Path.home().joinpath("Library", "Caches").is_dir():
        return Path.home() / "Library" / "Caches" / "layerforge"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "layerforge"


_HEX_DIGITS = frozenset("0123456789abcdef")


def is_sha256(text: str) -> bool:
    """64 lowercase hex digits, nothing else (not even the newline `$` in a regex lets through)."""
    return len(text) == 64 and set(text) <= _HEX_DIGITS


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    # Unbuffered: no buffer object per file, and one read for a small one (a cached piece holds thousands).
    with open(path, "rb", buffering=0) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def touch(path: Path) -> None:
    """Record a use: `cache prune` removes the least recently used first, by mtime (atime is often off)."""
    with contextlib.suppress(OSError):
        os.utime(path)


# (device, inode, size, mtime in ns) -> the sha256 this process found for a file of that identity. While a
# file keeps its inode, size and mtime its bytes are the same: a rewrite by rename gets another inode, one
# in place another mtime. A hard link shares the identity of what it links to, so a piece's file checked
# out into a build's tree is known by the digest its checkout proved (the verification cache and the
# zip's member keys read it, instead of hashing the tree again).
_HASHED: dict[tuple[int, int, int, int], str] = {}


_LOOKUPS_LOCK = threading.Lock()
_LOOKUPS: dict[str, threading.Lock] = {}


def _one_lookup_of(sha256: str) -> threading.Lock:
    """The lock that one process's lookups of a wheel take in turn (one per wheel: a lookup of another
    wheel does not wait)."""
    with _LOOKUPS_LOCK:
        return _LOOKUPS.setdefault(sha256, threading.Lock())


def file_identity(found: os.stat_result) -> tuple[int, int, int, int]:
    """What stands for a file's bytes while it keeps them: device, inode, size and mtime (see _HASHED)."""
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def _regular(path: str | Path) -> os.stat_result:
    found = os.stat(path)
    if not stat.S_ISREG(found.st_mode):
        raise FileNotFoundError(path)
    return found


def note_sha256(found: os.stat_result, sha256: str) -> None:
    """A file of this identity (`found`, taken before its bytes were read) has this sha256."""
    _HASHED[file_identity(found)] = sha256


def known_sha256(found: os.stat_result) -> str | None:
    """The sha256 this process proved for a file of `found`'s identity, if it did."""
    return _HASHED.get(file_identity(found))


def proven_digests() -> list[list[int | str]]:
    """The memo, for a child process: [[device, inode, size, mtime_ns, sha256], ...]."""
    # A copy first: other threads note digests meanwhile (the audit, the verifier's hashing), and a dict
    # that grows under an iteration raises. dict.copy() runs in C, under the GIL, in one go.
    return [[*identity, digest] for identity, digest in _HASHED.copy().items()]


def note_proven(entries: list[list[int | str]]) -> None:
    """Take a parent's memo (`proven_digests`). A file it names keeps its digest here only while its
    identity is the same: the identity is what every lookup checks."""
    for device, inode, size, mtime_ns, digest in entries:
        _HASHED[(int(device), int(inode), int(size), int(mtime_ns))] = str(digest)


def sha256_known_or_read(path: str | Path) -> str:
    """`path`'s sha256: the one this process proved for the file as it is, else read (and noted)."""
    found = _regular(path)
    known = known_sha256(found)
    if known is not None:
        return known
    digest = sha256_of(path)
    note_sha256(found, digest)
    return digest


class WheelCache:
    """`<root>/wheels/<aa>/<sha256>/<file name>`; the name is kept because pip and humans read it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry_dir(self, sha256: str) -> Path:
        return self.root / "wheels" / sha256[:2] / sha256

    def path_for(self, sha256: str, filename: str) -> Path:
        return self.entry_dir(sha256) / filename

    def lock_for(self, sha256: str) -> FileLock:
        """Serialises two processes that fetch the same wheel; others run in parallel."""
        directory = self.entry_dir(sha256)
        directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(directory / ".lock"), timeout=600)

    def discard_partials(self, sha256: str) -> int:
        """Remove unfinished downloads left in an entry by a process that died (SIGKILL, power loss).

        Call only while holding `lock_for(sha256)`: every download into an entry happens under its lock,
        so any partial file seen then belongs to no live process. Returns how many were removed.
        """
        removed = 0
        for partial in self.entry_dir(sha256).glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            partial.unlink(missing_ok=True)
            removed += 1
        return removed

    def lookup(self, sha256: str, filename: str) -> Path | None:
        """A cached wheel whose content still has the hash it is stored under; a damaged one is removed.

        A file this process has hashed already, unchanged since (same inode, size and mtime), is not
        hashed again: the resolution and the download stage both look up every wheel. Lookups of one wheel
        take turns: the guesses of a resolution, the index serving pip and the head start ask for the same
        wheels at once, and each hashed it again (the touch of one moved the mtime another had read).
        """
        path = self.path_for(sha256, filename)
        with _one_lookup_of(sha256):
            try:
                found = _regular(path)
            except OSError:
                return None
            if known_sha256(found) != sha256 and sha256_of(path) != sha256:
                path.unlink(missing_ok=True)
                return None
            touch(path)
            with contextlib.suppress(OSError):
                note_sha256(_regular(path), sha256)  # the touch moved its mtime
        return path

    def note_hashed(self, path: Path, sha256: str) -> None:
        """`path` was written from bytes whose hash was checked as they came: no need to read it again."""
        with contextlib.suppress(OSError):  # a prune may have taken it already
            note_sha256(_regular(path), sha256)

    def checkout(self, path: Path, folder: Path) -> Path | None:
        """The build's own name for a cached wheel in `folder`: a hard link, else a copy. A prune that
        removes the cache's name then leaves the build its file. None when the wheel is already gone."""
        folder.mkdir(parents=True, exist_ok=True)
        destination = folder / path.name
        try:
            os.link(path, destination)
        except FileNotFoundError:
            return None
        except OSError:  # another file system, or one without hard links
            try:
                shutil.copyfile(path, destination)
            except FileNotFoundError:
                return None
        return destination

    def store(self, source: Path) -> tuple[str, Path]:
        """Copy a wheel made on this machine (built from source) into the cache; its sha256 and new path.

        The hash is taken of the bytes as they are copied, so what is filed under it is what was hashed.
        """
        staging = self.root / "wheels"
        staging.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        handle, temporary = tempfile.mkstemp(dir=staging, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX)
        try:
            with os.fdopen(handle, "wb") as sink, source.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
            sha256 = digest.hexdigest()
            with self.lock_for(sha256):
                destination = self.path_for(sha256, source.name)
                if self.lookup(sha256, source.name) is None:
                    os.replace(temporary, destination)
            return sha256, destination
        finally:
            Path(temporary).unlink(missing_ok=True)
