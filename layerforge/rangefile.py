"""A remote file read through HTTP range requests: a seekable file object that `zipfile` can open, so
that only the bytes a reader asks for (a zip's tail, its central directory, a member) are fetched.

Used to read a published layer's central directory (`aws/remote_zip.py`) and a wheel's METADATA during
resolution (`resolve/remote_metadata.py`). Fetched ranges are kept, so zipfile's many small reads of one
region cost one request; ranges close together are fetched as one.
"""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .errors import LayerforgeError

# Enough for the EOCD record (22 bytes), a ZIP64 locator (20) and ZIP64 record (56) and, in the
# common case, a small central directory too. A zip comment longer than this costs one more request.
DEFAULT_TAIL_BYTES = 16 * 1024
# A local file header is 30 bytes plus the name and an extra field that may differ from the central
# directory's copy; this slack usually saves a second request per member.
LOCAL_HEADER_SLACK = 30 + 512
# Members closer than this are fetched in one request: a few wasted bytes beat a round trip.
COALESCE_GAP = 8 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")

# GET with these headers: a context manager giving a response with .status, .headers and .read(n).
Opener = Callable[[str, Mapping[str, str], float], AbstractContextManager[Any]]


class RangeReadError(LayerforgeError):
    """A remote file could not be read by ranges. Exit 1."""


def _urlopen(url: str, headers: Mapping[str, str], timeout: float) -> AbstractContextManager[Any]:
    # The scheme is checked by RangeFile: only http(s), never file: or others.
    request = urllib.request.Request(url, headers=dict(headers))  # noqa: S310
    response: AbstractContextManager[Any] = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    return response


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over an HTTP URL that fetches only the ranges read from it.

    Fetched ranges are kept, so that zipfile's many small reads of the tail cost one request.
    ``bytes_fetched`` and ``requests`` say what it cost.
    """

    def __init__(
        self,
        url: str,
        *,
        tail_bytes: int = DEFAULT_TAIL_BYTES,
        timeout: float = 30.0,
        opener: Opener = _urlopen,
        max_bytes: int | None = None,
        whole_if_small: bool = True,
    ) -> None:
        """`opener` sends each request (an index's login, say); `max_bytes` bounds what may be fetched in
        all; `whole_if_small` takes a server's 200 with the whole file when it is no bigger than the tail
        asked for (a server that ignores Range, on a small file), else that is an error."""
        super().__init__()
        if not url.startswith(("https://", "http://")):
            raise RangeReadError(f"cannot range-read {shown_url(url)}: not an HTTP URL")
        self.url = url
        self.timeout = timeout
        self._opener = opener
        self._max_bytes = max_bytes
        self._whole_if_small = whole_if_small
        self.bytes_fetched = 0
        self.requests = 0
        self._segments: list[tuple[int, bytes]] = []
        self._pos = 0
        self.size = self._fetch_tail(tail_bytes)

    # -- the file protocol zipfile uses -------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"seek before the start of {self.url}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if end <= self._pos:
            return b""
        data = self._cached(self._pos, end)
        if data is None:
            self.prefetch([(self._pos, end)])
            data = self._cached(self._pos, end)
            assert data is not None  # prefetch stored exactly this range
        self._pos = end
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    # -- fetching ------------------------------------------------------------------------------

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Fetch the half-open byte ranges not already held, merging those close together."""
        clamped = ((max(0, start), min(self.size, end)) for start, end in ranges)
        wanted = sorted(span for span in clamped if self._cached(*span) is None)
        for start, end in coalesce(wanted, COALESCE_GAP):
            if end > start:
                got_start, _, body = self._get(f"bytes={start}-{end - 1}", expect=end - start)
                self._segments.append((got_start, body))

    def _fetch_tail(self, tail_bytes: int) -> int:
        start, total, body = self._get(f"bytes=-{tail_bytes}", expect=None)
        self._segments.append((start, body))
        return total

    def _cached(self, start: int, end: int) -> bytes | None:
        for seg_start, body in self._segments:
            if seg_start <= start and end <= seg_start + len(body):
                return body[start - seg_start : end - seg_start]
        return None

    def _get(self, byte_range: str, *, expect: int | None) -> tuple[int, int, bytes]:
        """One range request: (first byte's offset, the whole file's size, the body)."""
        self.requests += 1
        try:
            with self._opener(self.url, {"Range": byte_range}, self.timeout) as response:
                start, total, length = _parse_range_response(
                    response, byte_range, self.url, whole_if_small=self._whole_if_small
                )
                if self._max_bytes is not None and self.bytes_fetched + length > self._max_bytes:
                    raise RangeReadError(
                        f"reading {shown_url(self.url)} would fetch over {self._max_bytes:,} bytes"
                    )
                body = response.read(length)
        except urllib.error.HTTPError as error:
            raise _http_error(error, self.url) from error
        except (urllib.error.URLError, OSError) as error:
            raise RangeReadError(f"cannot read {shown_url(self.url)}: {error}") from error
        self.bytes_fetched += len(body)
        if len(body) != length or (expect is not None and length != expect):
            raise RangeReadError(f"short read from {shown_url(self.url)} for {byte_range}")
        return start, total, body


def _parse_range_response(
    response: Any, byte_range: str, url: str, *, whole_if_small: bool
) -> tuple[int, int, int]:
    """Where a range response's body starts, the file's size, and the body's length."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match:
            raise RangeReadError(f"{shown_url(url)} answered a range request without a valid Content-Range")
        first, last, total = (int(group) for group in match.groups())
        return first, total, last - first + 1
    # A server that ignores Range sends the whole zip: read it only if it is as small as the tail.
    length = int(response.headers.get("Content-Length") or -1)
    wanted = int(byte_range.rsplit("-", 1)[1] or 0) if byte_range.startswith("bytes=-") else 0
    if whole_if_small and response.status == 200 and 0 <= length <= wanted:
        return 0, length, length
    raise RangeReadError(
        f"{shown_url(url)} ignored the Range header (HTTP {response.status})",
        hint="reading only the central directory needs a server that honours range requests",
    )


def _http_error(error: urllib.error.HTTPError, url: str) -> RangeReadError:
    if error.code == 403:
        return RangeReadError(
            f"access denied reading {shown_url(url)} (HTTP 403)",
            hint="GetLayerVersion's URL expires after about ten minutes: run the report again",
        )
    if error.code == 416:
        return RangeReadError(f"{shown_url(url)} is empty: not a zip")
    return RangeReadError(f"reading {shown_url(url)} failed: HTTP {error.code} {error.reason}")


def shown_url(url: str) -> str:
    """A URL fit for a message: no query, login or fragment."""
    # A presigned URL's query string is a bearer credential, and an index URL may carry a login: never
    # print either.
    parts = urllib.parse.urlsplit(url.split("?", 1)[0])
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], fragment=""))


def coalesce(ranges: Sequence[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def read_members(archive: zipfile.ZipFile, handle: RangeFile, names: Sequence[str]) -> dict[str, bytes]:
    """Several small members, their ranges fetched up front so that each costs at most one request."""
    infos = [archive.getinfo(name) for name in names]
    handle.prefetch(
        (
            info.header_offset,
            info.header_offset + LOCAL_HEADER_SLACK + len(info.filename) + info.compress_size,
        )
        for info in infos
    )
    return {info.filename: archive.read(info) for info in infos}
