"""Deterministic layer zips: the same tree gives the same bytes, on any machine, any day.

Entries are sorted, timestamps fixed at 1980-01-01 (the zip epoch), modes normalised to 0644 / 0755,
no directory entries, no extra fields. The zip is written to a temporary name and renamed into place,
so a failed or interrupted build never leaves a zip behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .cache import sha256_of

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL = 6
# Already-compressed members gain nothing from deflate and cost time: store them.
_STORED_SUFFIXES = (".zip", ".gz", ".bz2", ".xz", ".whl", ".jpg", ".jpeg", ".png", ".npz")


@dataclass(frozen=True)
class ZipResult:
    path: Path
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    entries: int


def layer_entries(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under root as (arcname, path), sorted by arcname; links are never followed."""
    entries: list[tuple[str, Path]] = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            path = Path(directory) / filename
            if path.is_symlink() or not path.is_file():
                continue
            entries.append((path.relative_to(root).as_posix(), path))
    entries.sort(key=lambda item: item[0])
    return entries


def _zip_info(arcname: str, path: Path) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
    executable = path.stat().st_mode & 0o111
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    info.create_system = 3  # unix, so the modes above are honoured on extraction
    stored = arcname.lower().endswith(_STORED_SUFFIXES)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    return info


def write_zip(
    root: Path,
    destination: Path,
    *,
    entries: Iterable[tuple[str, Path]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ZipResult:
    """Zip `root`'s files (or the given entries) into `destination`, atomically."""
    items = sorted(entries, key=lambda item: item[0]) if entries is not None else layer_entries(root)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    os.close(handle)
    unzipped = 0
    try:
        with zipfile.ZipFile(temporary, "w", compresslevel=COMPRESS_LEVEL) as archive:
            for arcname, path in items:
                data = path.read_bytes()
                archive.writestr(_zip_info(arcname, path), data, compresslevel=COMPRESS_LEVEL)
                unzipped += len(data)
                if progress:
                    progress(len(data))
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return ZipResult(destination, sha256_of(destination), destination.stat().st_size, unzipped, len(items))


def zip_unzipped_bytes(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())
