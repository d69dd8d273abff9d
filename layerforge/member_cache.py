"""The compressed-member cache: a zip member's deflate stream, filed under what decides its bytes.

`<root>/members/<aa>/<key>`, where the key is the sha256 of the member's content hash and the deflate
settings (the writer composes it). The zip writer copies a cached stream instead of deflating again, so a
rebuild that changes one wheel deflates only that wheel's members, and the zip is byte for byte the one a
cold build writes.

An entry is trusted only whole: it starts with a magic line and the sha256 of its key and stream, and a
stream whose digest does not match (truncated, damaged, or moved under another key) is discarded and
compressed again, never copied into a zip. Entries are written to a temporary name in their own folder
and renamed into place, so a build killed mid-write leaves at most a `.part` file, which no lookup reads.
No fsync: a rename survives the process being killed, and what a power cut could tear the digest
catches.

Reading needs no lock: a prune that unlinks an entry while a build reads it leaves the build its open
file (POSIX), or a miss.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .cache import touch
from .staging import host_label

KIND = "members"
_MAGIC = b"LFDEFL1\n"
_DIGEST_BYTES = 32
# `.tmp-<host>-<pid>-<random>.part`: the owner is in the name, so a prune can tell a dead writer's file.
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"


class MemberCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / KIND
        self._temporary_prefix = f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-"

    def path_for(self, key: str) -> Path:
        return self.folder / key[:2] / key

    def get(self, key: str) -> bytes | None:
        """The stream stored under `key`, when the entry is whole; a damaged entry is removed."""
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        head = len(_MAGIC) + _DIGEST_BYTES
        stream = raw[head:]
        if raw[: len(_MAGIC)] != _MAGIC or raw[len(_MAGIC) : head] != _digest(key, stream):
            path.unlink(missing_ok=True)
            return None
        touch(path)
        return stream

    def put(self, key: str, stream: bytes) -> None:
        """File `stream` under `key`, atomically. A cache that cannot be written only costs speed."""
        path = self.path_for(key)
        try:
            handle, temporary = self._temporary(path.parent)
        except OSError:
            return
        try:
            with os.fdopen(handle, "wb") as sink:
                sink.write(_MAGIC)
                sink.write(_digest(key, stream))
                sink.write(stream)
            os.replace(temporary, path)
        except BaseException as error:
            Path(temporary).unlink(missing_ok=True)
            if not isinstance(error, OSError):
                raise

    def _temporary(self, folder: Path) -> tuple[int, str]:
        # The folder is there for all but the first entry of each of its 256 shards: try before mkdir.
        try:
            return tempfile.mkstemp(dir=folder, prefix=self._temporary_prefix, suffix=TEMP_SUFFIX)
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(dir=folder, prefix=self._temporary_prefix, suffix=TEMP_SUFFIX)


def _digest(key: str, stream: bytes) -> bytes:
    return hashlib.sha256(key.encode("ascii") + b"\0" + stream).digest()
