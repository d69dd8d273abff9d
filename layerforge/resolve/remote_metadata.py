"""A wheel's METADATA from the index without the whole wheel, as pip and uv read it.

The index's own PEP 658 file where its page offers one (checked against the hash the page gives);
otherwise HTTP range requests: the end of the zip (its central directory), then the METADATA member, two
or three small requests where the whole wheel may be tens of megabytes. A server that ignores ranges
answers None, and the caller downloads the wheel (into the wheel cache, where the build wants it anyway).

What a range read returns cannot be checked against the wheel's sha256, which covers the whole file:
pip and uv take the same risk. The lock still pins the sha256 of the whole wheel, and the build checks
it when it downloads the wheel; a server that served one METADATA and another wheel is caught there
only if the two disagree in what they install.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import urllib.error
import urllib.parse
import zipfile
from typing import Any

from packaging.utils import canonicalize_name

from ..errors import LayerforgeError
from .index import IndexWheel, open_url, with_index_credentials

# A METADATA file is a few kilobytes; anything near this is not one.
MAX_METADATA_BYTES = 16 * 1024 * 1024
# What one wheel's range reads may fetch in all before a download is cheaper and simpler.
_MAX_RANGE_BYTES = 8 * 1024 * 1024
_TAIL_BYTES = 64 * 1024
_READ_AHEAD = 64 * 1024
_TIMEOUT_SECONDS = 30
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class WheelMetadataError(LayerforgeError):
    pass


def metadata_from_zip(archive: zipfile.ZipFile, wheel: str, project: str) -> bytes:
    """The METADATA of a wheel's one `.dist-info` folder, found as pip finds it."""
    folders = {name.split("/", 1)[0] for name in archive.namelist() if "/" in name}
    info = [f for f in folders if f.endswith(".dist-info")]
    if len(info) != 1:
        raise WheelMetadataError(
            f"{wheel} has {len(info)} .dist-info folders, not one: it is not a valid wheel"
        )
    if not canonicalize_name(info[0]).startswith(canonicalize_name(project)):
        raise WheelMetadataError(f"{wheel}: its {info[0]} names another project")
    member = archive.getinfo(f"{info[0]}/METADATA")
    if member.file_size > MAX_METADATA_BYTES:
        raise WheelMetadataError(f"{wheel}: its METADATA is {member.file_size:,} bytes")
    with archive.open(member) as stream:
        return stream.read(MAX_METADATA_BYTES + 1)[:MAX_METADATA_BYTES]


def remote_metadata(wheel: IndexWheel, project: str, index_url: str) -> bytes | None:
    """The wheel's METADATA read remotely, or None when only a download will do (no ranges, an error)."""
    if wheel.metadata is not None:
        offered = _pep658(wheel, index_url)
        if offered is not None:
            return offered
    try:
        remote = _RangeFile.open(with_index_credentials(wheel.url, index_url))
        if remote is None:
            return None
        with remote, zipfile.ZipFile(remote) as archive:
            return metadata_from_zip(archive, wheel.filename, project)
    except (_TooMuch, OSError, ValueError, KeyError, zipfile.BadZipFile, http.client.HTTPException):
        return None
    except WheelMetadataError:
        return None  # the download says what is wrong with the wheel, with its hash checked first


def _pep658(wheel: IndexWheel, index_url: str) -> bytes | None:
    try:
        url = with_index_credentials(urllib.parse.urldefrag(wheel.url).url + ".metadata", index_url)
        with open_url(url, timeout=_TIMEOUT_SECONDS) as response:
            body: bytes = response.read(MAX_METADATA_BYTES + 1)
    except (OSError, ValueError, http.client.HTTPException, urllib.error.URLError):
        return None
    if len(body) > MAX_METADATA_BYTES:
        return None
    if wheel.metadata and hashlib.sha256(body).hexdigest() != wheel.metadata:
        return None  # not what the page vouches for: the wheel itself is read instead
    return body


class _TooMuch(Exception):
    pass


class _RangeFile(io.RawIOBase):
    """A remote file read through range requests, read ahead in blocks, bounded in what it fetches."""

    def __init__(self, url: str, size: int, tail: bytes) -> None:
        super().__init__()
        self._url = url
        self._size = size
        self._spans: list[tuple[int, bytes]] = [(size - len(tail), tail)]
        self._fetched = len(tail)
        self._position = 0

    @classmethod
    def open(cls, url: str) -> _RangeFile | None:
        status, body, total = _get_range(url, f"bytes=-{_TAIL_BYTES}")
        if status == 206 and total is not None and body is not None:
            return cls(url, total, body)
        return None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        data = self._bytes(self._position, wanted)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _bytes(self, start: int, length: int) -> bytes:
        for span_start, span in self._spans:
            if span_start <= start and start + length <= span_start + len(span):
                return span[start - span_start : start - span_start + length]
        end = min(self._size, start + max(length, _READ_AHEAD)) - 1
        if self._fetched + (end - start + 1) > _MAX_RANGE_BYTES:
            raise _TooMuch
        status, body, _ = _get_range(self._url, f"bytes={start}-{end}")
        if status != 206 or body is None or len(body) != end - start + 1:
            raise OSError("the server answered a range request with something else")
        self._fetched += len(body)
        self._spans.append((start, body))
        return body[:length]


def _get_range(url: str, byte_range: str) -> tuple[int, bytes | None, int | None]:
    """(status, body, the file's total size from Content-Range); the body of a 206 only."""
    with open_url(url, timeout=_TIMEOUT_SECONDS, headers={"Range": byte_range}) as response:
        status = int(response.status or 0)
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            body = response.read(_MAX_RANGE_BYTES + 1)
            if match is None or len(body) > _MAX_RANGE_BYTES:
                return status, None, None
            return status, body, int(match.group(3))
        # Anything else (a 200 with the whole wheel): not read here; the caller downloads the wheel into
        # the cache, its hash checked.
        return status, None, None
