"""The small members' deflate streams, filed a folder at a time in the member cache.

A member under the cache floor (archive.CACHE_FLOOR) is not worth an entry of its own: creating a file
costs more than deflating it. But the sklearn stack has 2,175 of them, and deflating them all again took
0.57 CPU-seconds of every warm build. So the small members of one folder group (`python/numpy/_core`:
the first three parts of the path) share one entry, a pack, whose key is the deflate settings and the
sha256 of every member of the group, in order: a group with one member added, removed or changed has
another key and is deflated again, and the other groups are copied.

A pack is input like any entry: its shape is checked (the count and lengths add up), and each stream is
copied only if it inflates to exactly its member (archive._inflates_to), so no pack can put other bytes
in a zip.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from ..cache import sha256_of
from ..member_cache import MemberCache

_COUNT = struct.Struct("<I")


def group_of(arcname: str) -> str:
    """The pack a small member belongs to: its folder, cut to the first three parts of the path."""
    parts = arcname.split("/")[:-1]
    return "/".join(parts[:3])


def pack_key(settings: str, digests: Sequence[str]) -> str:
    """The entry's key: the deflate settings and the members' sha256s, in the zip's order."""
    material = hashlib.sha256(b"small members\0" + settings.encode() + b"\0")
    material.update(_COUNT.pack(len(digests)))
    for digest in digests:
        material.update(bytes.fromhex(digest))
    return material.hexdigest()


def pack(streams: Sequence[bytes]) -> bytes:
    """The entry's body: the count, each stream's length, then the streams."""
    header = _COUNT.pack(len(streams)) + b"".join(_COUNT.pack(len(stream)) for stream in streams)
    return header + b"".join(streams)


def unpack(body: bytes, expected: int) -> list[bytes] | None:
    """The streams of a pack of `expected` members; None when the body has not that shape."""
    size = _COUNT.size
    if len(body) < size or _COUNT.unpack_from(body)[0] != expected:
        return None
    start = size * (1 + expected)
    if len(body) < start:
        return None
    lengths = [_COUNT.unpack_from(body, size * (1 + i))[0] for i in range(expected)]
    if start + sum(lengths) != len(body):
        return None
    streams = []
    for length in lengths:
        streams.append(body[start : start + length])
        start += length
    return streams


class SmallPacks:
    """One zip's small members, by group: the streams their packs hold, and the packs to file after.

    `members` are the zip's small members in order, as (arcname, path, sha256 when proven). Planned
    before the first member is read: each group's key needs every member's digest, and its pack is read
    once. A group is filed again when any of its members was deflated (no pack, or a stream that did not
    inflate to its member)."""

    def __init__(
        self, cache: MemberCache, settings: str, members: Sequence[tuple[str, Path, str | None]]
    ) -> None:
        self._cache = cache
        groups: dict[str, list[tuple[str, str]]] = {}
        for arcname, path, sha256 in members:
            groups.setdefault(group_of(arcname), []).append((arcname, sha256 or sha256_of(path)))
        self._keys: dict[str, str] = {}
        self._streams: dict[str, bytes | None] = {}
        self._order: dict[str, list[str]] = {}
        for group, listed in groups.items():
            key = pack_key(settings, [digest for _, digest in listed])
            body = cache.get(key)
            streams = unpack(body, len(listed)) if body is not None else None
            self._keys[group] = key
            self._order[group] = [arcname for arcname, _ in listed]
            for index, (arcname, _) in enumerate(listed):
                self._streams[arcname] = streams[index] if streams is not None else None
        self._made: dict[str, Future[tuple[bytes, bool]]] = {}

    def stream_for(self, arcname: str) -> bytes | None:
        """The stream the member's pack holds for it, unchecked; None without one."""
        return self._streams.get(arcname)

    def note(self, arcname: str, made: Future[tuple[bytes, bool]]) -> None:
        """The member's stream, as the zip's pool gives it (the stream, and whether it was copied)."""
        self._made[arcname] = made

    def file(self) -> None:
        """File a pack for each group that had a member deflated: a cache that cannot be written only
        costs speed."""
        for group, arcnames in self._order.items():
            made = [self._made[arcname].result() for arcname in arcnames]
            if not all(copied for _, copied in made):
                self._cache.put(self._keys[group], pack([stream for stream, _ in made]))
