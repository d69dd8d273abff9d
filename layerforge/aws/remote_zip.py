"""Read a remote zip's central directory with HTTP range requests, never the whole zip.

GetLayerVersion gives a published layer's zip size and a presigned URL (valid for about ten minutes),
never its unzipped size. The unzipped sizes live in the central directory at the zip's tail, so:

1. one suffix range request (``Range: bytes=-N``) fetches the tail, which holds the End Of Central
   Directory record and, for ZIP64, the locator and ZIP64 record that sit right before it; its
   ``Content-Range`` also tells the zip's size, so no HEAD request (which a presigned GET URL refuses);
2. the standard library's ``zipfile`` parses all of it from a lazy file object (``RangeFile``) and
   asks for exactly the central directory range, one more request;
3. a few small members (``RECORD``, ``top_level.txt``) may then be read by their own ranges.

No zip parsing here: ``zipfile`` does it, this module only serves bytes and counts them.
"""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..errors import InputError, LayerforgeError
from .explain import error_code

# Enough for the EOCD record (22 bytes), a ZIP64 locator (20) and ZIP64 record (56) and, in the
# common case, a small central directory too. A zip comment longer than this costs one more request.
DEFAULT_TAIL_BYTES = 16 * 1024
# A local file header is 30 bytes plus the name and an extra field that may differ from the central
# directory's copy; this slack usually saves a second request per member.
_LOCAL_HEADER_SLACK = 30 + 512
# Members closer than this are fetched in one request: a few wasted bytes beat a round trip.
_COALESCE_GAP = 8 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_LAYER_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"layer:(?P<name>[A-Za-z0-9_-]+):(?P<version>\d+)$"
)


class RemoteZipError(LayerforgeError):
    """A published zip could not be read by ranges. Exit 1."""


@dataclass(frozen=True)
class LayerArn:
    """The parts of a layer version ARN."""

    arn: str
    region: str
    layer_arn: str
    name: str
    version: int

    @classmethod
    def parse(cls, arn: str) -> LayerArn:
        match = _LAYER_ARN.match(arn.strip())
        if not match:
            raise InputError(
                f"not a layer version ARN: {arn!r}",
                hint="expected arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION",
            )
        layer_arn = arn.strip().rsplit(":", 1)[0]
        return cls(arn.strip(), match["region"], layer_arn, match["name"], int(match["version"]))


@dataclass(frozen=True)
class PublishedLayer:
    """What GetLayerVersion tells about one layer version."""

    arn: str
    location: str


def locate_layer(arn: str, *, endpoint_url: str | None = None, client: Any = None) -> PublishedLayer:
    """Ask the Lambda API where a layer version's zip is.

    GetLayerVersion with the layer's ARN as LayerName is the same call, and the same IAM action
    (lambda:GetLayerVersion), as GetLayerVersionByArn; it is used because local Lambda emulators
    (moto) implement only this one.
    """
    parsed = LayerArn.parse(arn)
    if client is None:
        client = _lambda_client(parsed.region, endpoint_url)
    response = _get_layer_version(client, parsed)
    content = response.get("Content", {})
    location = str(content.get("Location", ""))
    if not location.startswith(("https://", "http://")):
        raise RemoteZipError(
            f"GetLayerVersion of {arn} gave Location {location!r}, not an HTTP URL",
            hint="AWS gives a presigned https URL; a local emulator may need a proxy that presigns one",
        )
    return PublishedLayer(arn=parsed.arn, location=location)


def _lambda_client(region: str, endpoint_url: str | None) -> Any:
    config = Config(retries={"total_max_attempts": 3, "mode": "standard"})
    return boto3.client("lambda", region_name=region, endpoint_url=endpoint_url, config=config)


def _get_layer_version(client: Any, parsed: LayerArn) -> dict[str, Any]:
    try:
        response: dict[str, Any] = client.get_layer_version(
            LayerName=parsed.layer_arn, VersionNumber=parsed.version
        )
    except NoCredentialsError as error:
        raise LayerforgeError(
            f"cannot read layer {parsed.arn}: no AWS credentials",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ) from error
    except ClientError as error:
        code = error_code(error)
        if code == "ResourceNotFoundException":
            raise InputError(
                f"layer version {parsed.arn} does not exist",
                hint="check the ARN's region, name and version (aws lambda list-layer-versions)",
            ) from error
        raise LayerforgeError(
            f"GetLayerVersion of {parsed.arn} failed: {code or error}",
            hint="the caller needs lambda:GetLayerVersion on the layer (or the layer a permission for it)",
        ) from error
    except BotoCoreError as error:
        raise LayerforgeError(f"GetLayerVersion of {parsed.arn} failed: {error}") from error
    return response


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over an HTTP URL that fetches only the ranges read from it.

    Fetched ranges are kept, so that zipfile's many small reads of the tail cost one request.
    ``bytes_fetched`` and ``requests`` say what it cost.
    """

    def __init__(self, url: str, *, tail_bytes: int = DEFAULT_TAIL_BYTES, timeout: float = 30.0) -> None:
        super().__init__()
        if not url.startswith(("https://", "http://")):
            raise RemoteZipError(f"cannot range-read {_redact(url)}: not an HTTP URL")
        self.url = url
        self.timeout = timeout
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
        for start, end in _coalesce(wanted, _COALESCE_GAP):
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
        # The scheme is checked in __init__: only http(s), never file: or others.
        request = urllib.request.Request(self.url, headers={"Range": byte_range})  # noqa: S310
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                start, total, length = _parse_range_response(response, byte_range, self.url)
                body = response.read(length)
        except urllib.error.HTTPError as error:
            raise _http_error(error, self.url) from error
        except (urllib.error.URLError, OSError) as error:
            raise RemoteZipError(f"cannot read {_redact(self.url)}: {error}") from error
        self.bytes_fetched += len(body)
        if len(body) != length or (expect is not None and length != expect):
            raise RemoteZipError(f"short read from {_redact(self.url)} for {byte_range}")
        return start, total, body


def _parse_range_response(response: Any, byte_range: str, url: str) -> tuple[int, int, int]:
    """Where a range response's body starts, the file's size, and the body's length."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match:
            raise RemoteZipError(f"{_redact(url)} answered a range request without a valid Content-Range")
        first, last, total = (int(group) for group in match.groups())
        return first, total, last - first + 1
    # A server that ignores Range sends the whole zip: read it only if it is as small as the tail.
    length = int(response.headers.get("Content-Length") or -1)
    wanted = int(byte_range.rsplit("-", 1)[1] or 0) if byte_range.startswith("bytes=-") else 0
    if response.status == 200 and 0 <= length <= wanted:
        return 0, length, length
    raise RemoteZipError(
        f"{_redact(url)} ignored the Range header (HTTP {response.status})",
        hint="reading only the central directory needs a server that honours range requests",
    )


def _http_error(error: urllib.error.HTTPError, url: str) -> RemoteZipError:
    if error.code == 403:
        return RemoteZipError(
            f"access denied reading {_redact(url)} (HTTP 403)",
            hint="GetLayerVersion's URL expires after about ten minutes: run the report again",
        )
    if error.code == 416:
        return RemoteZipError(f"{_redact(url)} is empty: not a zip")
    return RemoteZipError(f"reading {_redact(url)} failed: HTTP {error.code} {error.reason}")


def _redact(url: str) -> str:
    # A presigned URL's query string is a bearer credential: never print it.
    return url.split("?", 1)[0]


def _coalesce(ranges: Sequence[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def open_remote_zip(url: str, *, tail_bytes: int = DEFAULT_TAIL_BYTES) -> tuple[zipfile.ZipFile, RangeFile]:
    """The zip at URL, with only its tail and central directory fetched."""
    handle = RangeFile(url, tail_bytes=tail_bytes)
    try:
        return zipfile.ZipFile(handle), handle
    except zipfile.BadZipFile as error:
        raise RemoteZipError(f"{_redact(url)} is not a readable zip: {error}") from error


def read_members(archive: zipfile.ZipFile, handle: RangeFile, names: Sequence[str]) -> dict[str, bytes]:
    """Several small members, their ranges fetched up front so that each costs at most one request."""
    infos = [archive.getinfo(name) for name in names]
    handle.prefetch(
        (
            info.header_offset,
            info.header_offset + _LOCAL_HEADER_SLACK + len(info.filename) + info.compress_size,
        )
        for info in infos
    )
    return {info.filename: archive.read(info) for info in infos}
