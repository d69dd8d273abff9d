"""Fetch locked wheels concurrently into the cache, verifying every byte against the lock's sha256.

A download goes to a temporary name in the cache entry's folder, is hashed as it streams, and is renamed
into place only when its hash matches: the cache never holds a partial or unverified file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..cache import PARTIAL_PREFIX, PARTIAL_SUFFIX, WheelCache
from ..errors import DownloadError, HashMismatchError
from .index import describe_network_error, open_url, redact_url, with_index_credentials
from .locked import LockedPackage

TIMEOUT_SECONDS: float = 60  # per socket operation: connecting, or waiting for the next bytes
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5  # before the 2nd attempt; doubled before each later one
MAX_WHEEL_BYTES = 2 * 1024**3
_CHUNK = 1024 * 1024

# (package name, bytes just received, total bytes or None)
ProgressCallback = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class FetchedWheel:
    package: LockedPackage
    path: Path
    from_cache: bool
    bytes_downloaded: int


def fetch_all(
    packages: Sequence[LockedPackage],
    cache: WheelCache,
    *,
    jobs: int = 8,
    progress: ProgressCallback | None = None,
    index_url: str | None = None,
) -> list[FetchedWheel]:
    """Every locked wheel, from the cache or the index; in the lock's order. `index_url` lends its
    credentials to files on its own host (a lock never holds them)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda p: fetch_one(p, cache, progress=progress, index_url=index_url), packages))


def fetch_one(
    package: LockedPackage,
    cache: WheelCache,
    *,
    progress: ProgressCallback | None = None,
    index_url: str | None = None,
) -> FetchedWheel:
    cached = cache.lookup(package.sha256, package.wheel)
    if cached:
        return FetchedWheel(package, cached, True, 0)
    with cache.lock_for(package.sha256):
        return _fetch_locked(package, cache, progress, index_url)


def fetch_into(
    package: LockedPackage, cache: WheelCache, folder: Path, *, index_url: str | None = None
) -> Path:
    """The wheel linked (or copied) into `folder`, fetched first if the cache lacks it, all under its entry's
    lock: `cache prune` removes a wheel only under that lock, so it cannot take it between the fetch and
    the link, however often it runs."""
    with cache.lock_for(package.sha256):
        linked = cache.checkout(_fetch_locked(package, cache, None, index_url).path, folder)
    if linked is None:
        raise DownloadError(
            f"{package.wheel} left the wheel cache while its entry was locked",
            hint="something other than layerforge removes files from the cache folder; give the build its "
            "own --cache-dir",
        )
    return linked


def _fetch_locked(
    package: LockedPackage, cache: WheelCache, progress: ProgressCallback | None, index_url: str | None
) -> FetchedWheel:
    """The wheel from the cache or the index; the caller holds its entry's lock."""
    # Another process may have fetched it while this one waited for the lock.
    cached = cache.lookup(package.sha256, package.wheel)
    if cached:
        return FetchedWheel(package, cached, True, 0)
    # Holding the entry's lock, no one else is writing here: a `.part` left now is a dead process's.
    cache.discard_partials(package.sha256)
    destination = cache.path_for(package.sha256, package.wheel)
    received = _download_with_retries(package, destination, progress, index_url)
    cache.note_hashed(destination, package.sha256)
    return FetchedWheel(package, destination, False, received)


def _download_with_retries(
    package: LockedPackage, destination: Path, progress: ProgressCallback | None, index_url: str | None
) -> int:
    last_error: Exception | None = None
    attempts = 0
    for attempt in range(ATTEMPTS):
        attempts += 1
        try:
            return _download(package, destination, progress, index_url)
        except HashMismatchError:
            raise
        except (OSError, ValueError, http.client.HTTPException, _Truncated) as error:
            last_error = error
            if not _worth_retrying(error) or attempt == ATTEMPTS - 1:
                break
            time.sleep(BACKOFF_SECONDS * 2**attempt)
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    raise DownloadError(
        f"could not download {package.wheel} from {redact_url(package.url)}: "
        f"{_describe(last_error)} ({tries})",
        hint="check the network and the index; rerun to retry (finished wheels stay in the cache)",
    )


def _worth_retrying(error: Exception) -> bool:
    """Timeouts, dropped connections, truncated bodies and 5xx/408/429 may pass; other answers will not."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code in (408, 429)
    return not isinstance(error, http.client.InvalidURL | ValueError)


class _Truncated(Exception):
    pass


def _download(
    package: LockedPackage, destination: Path, progress: ProgressCallback | None, index_url: str | None
) -> int:
    scheme = urllib.parse.urlsplit(package.url).scheme
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"{package.wheel}: refusing URL scheme {scheme!r}", hint="use an http(s) index")
    digest = hashlib.sha256()
    received = 0
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX)
    try:
        with (
            os.fdopen(handle, "wb") as sink,
            open_url(with_index_credentials(package.url, index_url), timeout=TIMEOUT_SECONDS) as response,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if received > MAX_WHEEL_BYTES:
                    raise DownloadError(f"{package.wheel} is larger than {MAX_WHEEL_BYTES} bytes; refused")
                digest.update(chunk)
                sink.write(chunk)
                if progress:
                    progress(package.name, len(chunk), total)
            if total is not None and received != total:
                raise _Truncated(f"got {received} of {total} bytes")
        if digest.hexdigest() != package.sha256:
            raise HashMismatchError(
                f"{package.wheel}: sha256 {digest.hexdigest()} does not match the lock's {package.sha256} "
                f"(downloaded from {redact_url(package.url)}; nothing was kept)",
                hint="the index served different bytes than were locked: investigate before trusting it, "
                "or re-lock with `layerforge lock` if the change is expected",
            )
        os.replace(temporary, destination)
        return received
    finally:
        Path(temporary).unlink(missing_ok=True)


def _describe(error: Exception | None) -> str:
    if isinstance(error, urllib.error.HTTPError):
        if 300 <= error.code < 400:  # urllib's own text quotes the target URL, which may be presigned
            return f"HTTP {error.code}: a redirect that is not followed (not to http or https, or a loop)"
        return f"HTTP {error.code} {error.reason}"
    reason: object = error.reason if isinstance(error, urllib.error.URLError) else error
    return describe_network_error(reason, TIMEOUT_SECONDS)
