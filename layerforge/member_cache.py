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
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .cache import touch
from .staging import host_label

KIND = "members"
_MAGIC = b"LFDEFL1\n"
_DIGEST_BYTES = 32
# `.tmp-<host>-<pid>-<random>.part`: the owner is in the name, so a prune can tell a dead writer's file.
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"


class KeyedEntries:
    """Entries that are one file each, `<root>/<kind>/<aa>/<key>`: a magic line, the sha256 of the key and
    the body, then the body. The member cache's deflate streams, and the audit cache's readings as JSON."""

    def __init__(self, root: Path, kind: str, magic: bytes) -> None:
        self.root = root
        self.folder = root / kind
        self._magic = magic
        self._temporary_prefix = f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-"

    def path_for(self, key: str) -> Path:
        return self.folder / key[:2] / key

    def read(self, key: str) -> bytes | None:
        """The body stored under `key`, when the entry is whole; a damaged entry is removed."""
        path = self.path_for(key)
        body = read_entry(path, self._magic, lambda raw: keyed_digest(key, raw))
        if body is not None:
            touch(path)
        return body

    def write(self, key: str, body: bytes) -> None:
        """File `body` under `key`, atomically. A cache that cannot be written only costs speed."""
        write_entry(self.path_for(key), self._magic, keyed_digest(key, body), body, self._temporary_prefix)

    def read_json(self, key: str) -> dict[str, Any] | None:
        """The JSON object stored under `key`; an entry that is damaged, or holds none, is removed."""
        path = self.path_for(key)
        data = read_json_entry(path, self._magic, lambda raw: keyed_digest(key, raw))
        if data is not None:
            touch(path)
        return data

    def write_json(self, key: str, data: Mapping[str, Any]) -> None:
        self.write(key, json.dumps(data, sort_keys=True).encode())


class MemberCache(KeyedEntries):
    """`get(key)` and `put(key, stream)`: a deflate stream, or a pack of them (tree/member_packs.py)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, KIND, _MAGIC)

    get = KeyedEntries.read
    put = KeyedEntries.write


def write_entry(path: Path, magic: bytes, digest: bytes, body: bytes, temporary_prefix: str) -> None:
    """A cache entry that is one file: magic, digest and body, written to a temporary name in its folder
    (`temporary_prefix` names the owner, for `cache prune`) and renamed into place. A cache that cannot
    be written only costs speed, so an OSError is swallowed; the temporary never stays."""
    try:
        handle, temporary = _temporary(path.parent, temporary_prefix)
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(magic)
            sink.write(digest)
            sink.write(body)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise


def read_entry(path: Path, magic: bytes, digest_of: Callable[[bytes], bytes]) -> bytes | None:
    """The body of an entry `write_entry` wrote, when it is whole; one that is not (truncated, damaged,
    moved under another name) is removed."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head = len(magic) + _DIGEST_BYTES
    body = raw[head:]
    if raw[: len(magic)] != magic or raw[len(magic) : head] != digest_of(body):
        path.unlink(missing_ok=True)
        return None
    return body


def read_json_entry(path: Path, magic: bytes, digest_of: Callable[[bytes], bytes]) -> dict[str, Any] | None:
    """The JSON object of a whole entry; one that is damaged, or holds no JSON object, is removed."""
    body = read_entry(path, magic, digest_of)
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        path.unlink(missing_ok=True)
        return None
    return data


def _temporary(folder: Path, prefix: str) -> tuple[int, str]:
    # The folder is there for all but the first entry of each of its shards: try before mkdir.
    try:
        return tempfile.mkstemp(dir=folder, prefix=prefix, suffix=TEMP_SUFFIX)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=folder, prefix=prefix, suffix=TEMP_SUFFIX)


def keyed_digest(key: str, stream: bytes) -> bytes:
    """An entry's digest: of its key too, so that an entry moved under another key is refused."""
    digest = hashlib.sha256(key.encode("ascii") + b"\0")
    digest.update(stream)  # not `key + stream`: that copied every stream (60 MB a warm sklearn build) first
    return digest.digest()
