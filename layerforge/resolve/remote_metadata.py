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
import urllib.error
import urllib.parse
import zipfile
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from packaging.utils import canonicalize_name

from ..errors import LayerforgeError
from ..rangefile import RangeFile, RangeReadError, read_members
from .index import IndexWheel, open_url, with_index_credentials

# A METADATA file is a few kilobytes; anything near this is not one.
MAX_METADATA_BYTES = 16 * 1024 * 1024
# What one wheel's range reads may fetch in all before a download is cheaper and simpler.
_MAX_RANGE_BYTES = 8 * 1024 * 1024
_TAIL_BYTES = 64 * 1024
_TIMEOUT_SECONDS = 30


class WheelMetadataError(LayerforgeError):
    pass


def metadata_member(archive: zipfile.ZipFile, wheel: str, project: str) -> zipfile.ZipInfo:
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
    return member


def metadata_from_zip(archive: zipfile.ZipFile, wheel: str, project: str) -> bytes:
    return archive.read(metadata_member(archive, wheel, project))


def remote_metadata(wheel: IndexWheel, project: str, index_url: str) -> bytes | None:
    """The wheel's METADATA read remotely, or None when only a download will do (no ranges, an error)."""
    if wheel.metadata is not None:
        offered = _pep658(wheel, index_url)
        if offered is not None:
            return offered
    try:
        remote = RangeFile(
            with_index_credentials(urllib.parse.urldefrag(wheel.url).url, index_url),
            tail_bytes=_TAIL_BYTES,
            timeout=_TIMEOUT_SECONDS,
            opener=_index_opener,
            max_bytes=_MAX_RANGE_BYTES,
            # A server that ignores ranges gets a download, hash-checked, rather than trusted bytes.
            whole_if_small=False,
        )
        with remote, zipfile.ZipFile(remote) as archive:
            member = metadata_member(archive, wheel.filename, project)
            return read_members(archive, remote, [member.filename])[member.filename]
    except (RangeReadError, OSError, ValueError, KeyError, zipfile.BadZipFile, http.client.HTTPException):
        return None
    except WheelMetadataError:
        return None  # the download says what is wrong with the wheel, with its hash checked first


def _index_opener(url: str, headers: Mapping[str, str], timeout: float) -> AbstractContextManager[Any]:
    """A request as the index expects it: its login as a Basic header for its host only, one TLS context."""
    return open_url(url, timeout=timeout, headers=headers)


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
