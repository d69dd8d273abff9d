"""Tiny layer and function zips for the size-report tests, with fake *.dist-info folders.

Big files are zeros written in chunks: 100 MB of zeros deflate to about 100 KB, so a test can cross
Lambda's 262,144,000-byte limit while staying small on disk and fast.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Zeros:
    """A file of this many zero bytes, streamed into the zip."""

    size: int


Content = bytes | Zeros


def dist(
    name: str,
    version: str,
    files: Mapping[str, Content],
    *,
    root: str = "python/",
    record: bool = True,
    top_level: Iterable[str] | None = None,
    extra: Mapping[str, Content] | None = None,
) -> dict[str, Content]:
    """A distribution as pip installs it under ROOT: its files and a dist-info with METADATA,
    RECORD (listing FILES, not EXTRA: EXTRA is what appears after install, such as .pyc) and
    optionally top_level.txt."""
    info = f"{name.replace('-', '_')}-{version}.dist-info/"
    entries: dict[str, Content] = {root + path: content for path, content in files.items()}
    entries[root + info + "METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    if top_level is not None:
        entries[root + info + "top_level.txt"] = "".join(f"{t}\n" for t in top_level).encode()
    if record:
        listed = [*files, info + "METADATA"] + ([info + "top_level.txt"] if top_level is not None else [])
        rows = [f"{path},sha256=fake,{_size(files.get(path, b''))}" for path in listed]
        entries[root + info + "RECORD"] = ("\n".join([*rows, f"{info}RECORD,,"]) + "\n").encode()
    for path, content in (extra or {}).items():
        entries[root + path] = content
    return entries


def write_zip(path: Path, entries: Mapping[str, Content], *, directories: bool = True) -> Path:
    """A deflated zip of ENTRIES, with directory entries as zip tools write them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if directories:
            parts = (name.split("/")[:-1] for name in entries)
            for folder in sorted({"/".join(p[: i + 1]) + "/" for p in parts for i in range(len(p))}):
                archive.writestr(folder, b"")
        for name in sorted(entries):
            _write_entry(archive, name, entries[name])
    return path


def _write_entry(archive: zipfile.ZipFile, name: str, content: Content) -> None:
    if isinstance(content, bytes):
        archive.writestr(name, content)
        return
    chunk = bytes(_CHUNK)
    # force_zip64 only when needed: above 2 GiB zipfile wants to know in advance.
    with archive.open(name, "w", force_zip64=content.size > (1 << 31)) as sink:
        left = content.size
        while left:
            piece = min(left, _CHUNK)
            sink.write(chunk[:piece])
            left -= piece


def _size(content: Content) -> int:
    return content.size if isinstance(content, Zeros) else len(content)


def entry_sizes(path: Path) -> tuple[int, int, int]:
    """Straight from zipfile: the sum of all entries' unzipped sizes, and the compressed sizes and
    number of the files (a directory entry holds no bytes, but its empty deflate stream takes 2)."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        files = [i for i in infos if not i.is_dir()]
        return sum(i.file_size for i in infos), sum(i.compress_size for i in files), len(files)
