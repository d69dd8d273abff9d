"""Upkeep of the cache root: what each kind holds (`cache info`), and pruning by age and by size budget.

One folder per kind under the root: `wheels/` (layerforge.cache), `members/` (layerforge.member_cache),
`pieces/` (layerforge.piece_cache), `proofs/` (layerforge.proof_cache) and `audits/`
(layerforge.audit_cache).
Every use of an entry touches its mtime, so the least recently used go first.

A prune may run while builds run:
- a member entry is a single file that a build reads whole: unlinking it leaves the reader its open file,
  or a miss that deflates again;
- a wheel is removed only under its entry's file lock, taken without waiting, so never while a build
  downloads it (the entry is skipped and counted as busy); a build that already fetched it reads its own
  hard link or copy (build.py checks wheels out of the cache into its staging folder), which an unlink of
  the cache's name leaves alone. The entry's `.lock` file stays: removing a lock file another process
  waits on would let two processes hold "the" lock at once.
- a piece (a processed wheel) is renamed away whole, then removed: a build that already checked it out
  holds its own hard links (or copies), which the removal leaves alone; one that looks it up after finds
  nothing and processes the wheel again;
- a proof (a passing check's record) and an audit reading (what the audit read of one shared object) are
  single files that a build reads whole, like a member entry;
- a temporary file is removed only when the process named in it is dead (this host) or it is a day old.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from .audit_cache import KIND as AUDITS
from .cache import PARTIAL_PREFIX, PARTIAL_SUFFIX
from .errors import InputError
from .member_cache import KIND as MEMBERS
from .member_cache import TEMP_PREFIX, TEMP_SUFFIX
from .piece_cache import KIND as PIECES
from .piece_cache import MANIFEST as PIECE_MANIFEST
from .piece_cache import TEMP_SUFFIX as PIECE_TEMP_SUFFIX
from .piece_cache import entry_bytes, remove_tree
from .proof_cache import KIND as PROOFS
from .staging import host_label, process_alive

WHEELS = "wheels"
KINDS = (WHEELS, MEMBERS, PIECES, PROOFS, AUDITS)
# A temporary file of another host cannot be checked for a live owner: after a day, none is writing it.
STALE_TEMPORARY_SECONDS = 24 * 3600
_OWNED_TEMPORARY = re.compile(rf"^{re.escape(TEMP_PREFIX)}(?P<host>[A-Za-z0-9.-]+)-(?P<pid>\d+)-")


@dataclass(frozen=True)
class CacheEntry:
    kind: str
    path: Path  # a wheel entry's folder, or a member entry's file
    size: int
    last_used: float  # mtime: touched at every use


@dataclass(frozen=True)
class KindInfo:
    entries: int
    bytes: int


@dataclass(frozen=True)
class CacheInfo:
    location: Path
    kinds: dict[str, KindInfo]
    temporary_bytes: int  # unfinished writes: live builds', or dead ones' that a prune sweeps

    @property
    def total_bytes(self) -> int:
        return sum(k.bytes for k in self.kinds.values()) + self.temporary_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "location": str(self.location),
            "total_bytes": self.total_bytes,
            "temporary_bytes": self.temporary_bytes,
            "kinds": {name: {"entries": k.entries, "bytes": k.bytes} for name, k in self.kinds.items()},
        }


@dataclass(frozen=True)
class PruneResult:
    removed: list[CacheEntry] = field(default_factory=list)
    busy: list[CacheEntry] = field(default_factory=list)  # in use by a build: left alone
    temporaries: list[Path] = field(default_factory=list)
    kept_bytes: int = 0
    dry_run: bool = False

    @property
    def removed_bytes(self) -> int:
        return sum(e.size for e in self.removed)

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "removed": [{"kind": e.kind, "path": str(e.path), "bytes": e.size} for e in self.removed],
            "removed_bytes": self.removed_bytes,
            "busy": [str(e.path) for e in self.busy],
            "temporaries_removed": [str(p) for p in self.temporaries],
            "kept_bytes": self.kept_bytes,
        }


def entries(root: Path) -> list[CacheEntry]:
    """Every entry of every kind, in no particular order."""
    return [
        *_wheel_entries(root),
        *_file_entries(root, MEMBERS),
        *_piece_entries(root),
        *_file_entries(root, PROOFS),
        *_file_entries(root, AUDITS),
    ]


def cache_info(root: Path) -> CacheInfo:
    found = entries(root)
    kinds = {
        kind: KindInfo(sum(1 for e in found if e.kind == kind), sum(e.size for e in found if e.kind == kind))
        for kind in KINDS
    }
    temporary = sum(_size(p) for p in _temporaries(root))
    return CacheInfo(root, kinds, temporary)


def prune(
    root: Path,
    *,
    older_than: float | None = None,
    max_bytes: int | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneResult:
    """Remove entries unused for `older_than` seconds, then the least recently used until the rest fit
    in `max_bytes`. Entries a build holds are skipped, whatever their age."""
    now = time.time() if now is None else now
    found = sorted(entries(root), key=lambda e: (e.last_used, str(e.path)))
    total = sum(e.size for e in found)
    removed: list[CacheEntry] = []
    busy: list[CacheEntry] = []
    for entry in found:
        too_old = older_than is not None and entry.last_used < now - older_than
        over_budget = max_bytes is not None and total > max_bytes
        if not (too_old or over_budget):
            continue
        if dry_run or _remove(entry):
            removed.append(entry)
            total -= entry.size
        else:
            busy.append(entry)
    temporaries = [p for p in _temporaries(root) if _abandoned(p, now)]
    if not dry_run:
        for path in temporaries:
            if path.is_dir() and not path.is_symlink():
                remove_tree(path)
            else:
                path.unlink(missing_ok=True)
    return PruneResult(removed, busy, temporaries, total, dry_run)


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if match is None:
        raise InputError(f"not an age: {text!r}", hint="write a number and a unit: 45s, 90m, 12h, 30d or 2w")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]
    return float(match.group(1)) * unit


def _wheel_entries(root: Path) -> Iterator[CacheEntry]:
    for folder in _two_levels(root / WHEELS):
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if not files:
            continue  # a lock file alone: emptied by an earlier prune, or a download that failed
        stats = [p.stat() for p in files]
        yield CacheEntry(WHEELS, folder, sum(s.st_size for s in stats), max(s.st_mtime for s in stats))


def _file_entries(root: Path, kind: str) -> Iterator[CacheEntry]:
    """Entries that are one file each, one folder down (a shard, or a check's context)."""
    for shard in _children(root / kind):
        if shard.name.startswith("."):
            continue
        for path in _children(shard):
            if path.name.startswith("."):
                continue
            try:
                status = path.stat()
            except OSError:
                continue
            yield CacheEntry(kind, path, status.st_size, status.st_mtime)


def _piece_entries(root: Path) -> Iterator[CacheEntry]:
    # Temporary folders sit beside the shards, and are no entries.
    shards = [s for s in _children(root / PIECES) if not s.name.startswith(".")]
    for folder in (p for shard in shards for p in _children(shard) if p.is_dir() and not p.is_symlink()):
        # Used when its manifest was last read; an entry without one is counted, and pruned, all the same.
        used = _mtime(folder / PIECE_MANIFEST)
        yield CacheEntry(
            PIECES, folder, entry_bytes(folder), _mtime(folder) if used == float("inf") else used
        )


def _two_levels(folder: Path) -> Iterator[Path]:
    for shard in _children(folder):
        yield from (p for p in _children(shard) if p.is_dir() and not p.is_symlink())


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (NotADirectoryError, FileNotFoundError):
        return []


def _remove(entry: CacheEntry) -> bool:
    """Remove one entry; False when a build holds it."""
    if entry.kind in (MEMBERS, PROOFS, AUDITS):
        entry.path.unlink(missing_ok=True)
        return True
    if entry.kind == PIECES:
        # Renamed away first, under the owner pattern of a temporary: a prune killed mid-removal leaves a
        # folder the next prune sweeps, never a half-removed entry under its key.
        aside = (
            entry.path.parent.parent
            / f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-prune-{entry.path.name[:16]}{PIECE_TEMP_SUFFIX}"
        )
        try:
            os.rename(entry.path, aside)
        except OSError:
            return not entry.path.exists()
        remove_tree(aside)
        return True
    lock = FileLock(str(entry.path / ".lock"), timeout=0)
    try:
        with lock:
            for path in entry.path.iterdir():
                if path.is_file() and path.name != ".lock":
                    path.unlink(missing_ok=True)
    except Timeout:
        return False
    return True


def _temporaries(root: Path) -> Iterator[Path]:
    for shard in [*_children(root / MEMBERS), *_children(root / PROOFS), *_children(root / AUDITS)]:
        yield from (
            p for p in _children(shard) if p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX)
        )
    yield from (
        p
        for p in _children(root / PIECES)
        if p.name.startswith(TEMP_PREFIX) and p.name.endswith(PIECE_TEMP_SUFFIX)
    )
    # Unfinished downloads: a prune never touches them outside their entry's lock (WheelCache does).
    for folder in _two_levels(root / WHEELS):
        yield from folder.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}")


def _abandoned(path: Path, now: float) -> bool:
    if path.name.startswith(PARTIAL_PREFIX):
        return False
    owner = _OWNED_TEMPORARY.match(path.name)
    if owner is not None and owner["host"] == host_label():
        return not process_alive(int(owner["pid"]))
    return _mtime(path) < now - STALE_TEMPORARY_SECONDS


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return entry_bytes(path)
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")
