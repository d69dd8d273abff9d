"""A PEP 691 index on 127.0.0.1 that stands between pip's resolution and the real index.

pip resolves by reading each candidate's metadata, and an index without PEP 658 metadata files (PyPI's
mirrors, most private indexes) makes it download every candidate wheel whole, one after another, into a
scratch folder that is thrown away; the build then downloads the same wheels again. This index answers
pip with the real index's pages, cut to the files that can fit the target, and serves each wheel's
METADATA from layerforge's wheel cache, filling the cache first when the wheel is not there. So:

- a wheel is downloaded once, hash-checked, and kept for the build (and the next resolution);
- the wheels the recipe names are fetched side by side while pip starts, not one by one as it asks;
- pip weighs tens of files per project instead of thousands (numpy's page lists about 1,900).

pip still makes every decision. What is cut from a page is only what pip itself would refuse for the
target: a wheel none of whose tags has this machine's Linux platform (or `any`) and a Python the target
can run, and source distributions (pip runs with --only-binary). Hashes, Requires-Python and yanked
marks pass through unchanged, and the lock records the real index's URLs, never this one's.

The server listens on 127.0.0.1 only, under a random path: another user of the machine cannot guess
where it is, so cannot read a private index through it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import (
    canonicalize_name,
)
from packaging.version import Version

from ..cache import WheelCache
from ..errors import LayerforgeError
from ..target import Target
from .download import fetch_one
from .index import IndexWheel, Listing, read_listing, redact_url, supports_python
from .locked import LockedPackage
from .remote_metadata import WheelMetadataError, metadata_from_zip, remote_metadata

# A METADATA file is a few kilobytes; anything near this is not one.
_MAX_METADATA_BYTES = 16 * 1024 * 1024
_PREFETCH_JOBS = 4


@dataclass(frozen=True)
class _File:
    project: str
    wheel: IndexWheel


class SharedListings:
    """Project pages read once for resolutions that run together (a project's cells, in one process):
    python3.11 and python3.12 of one recipe read the same pages. Close it when they are done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pages: dict[tuple[str, str], Future[Listing]] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="layerforge-pages")

    def future(self, upstream: str, name: str) -> Future[Listing]:
        with self._lock:
            found = self._pages.get((upstream, name))
            if found is None:
                found = self._pool.submit(read_listing, upstream, name)
                self._pages[(upstream, name)] = found
            return found

    def close(self) -> None:
        # A page still being read (a dependency's, read ahead) is left to finish on its own.
        self._pool.shutdown(wait=False, cancel_futures=True)


class LocalIndex:
    """Use as a context manager; `url` is the index pip is given, `listing` the pages it was served."""

    def __init__(
        self,
        upstream: str,
        cache: WheelCache,
        target: Target,
        *,
        linux_platform: bool = False,
        shared: SharedListings | None = None,
    ):
        self.upstream = upstream
        # Pages are read in a pool of their own: a prefetch waits on a page, so pages and prefetches in
        # one pool could fill it with waiters and never read the page they wait for.
        self._own_pages = shared is None
        self._pages = shared if shared is not None else SharedListings()
        self.cache = cache
        self.target = target
        # pip accepts `linux_<arch>` when wheels built here are offered; the page keeps such wheels so
        # that pip sees what it would have seen, and the lock refuses one from an index as before.
        self._linux_platform = linux_platform
        self._token = secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}  # id in the local URL -> the real file
        self._fetches: dict[str, Future[Path]] = {}  # sha256 -> the wheel in the cache
        # sha256 -> the METADATA of that wheel in the cache: a guess reads it to walk the dependencies, and
        # pip asks for it soon after; reading a wheel's zip directory again cost pip 70 to 80 ms a wheel
        # (scikit-learn's, pandas') on its sequential path, beside the build's other threads.
        self._metadata: dict[str, Future[bytes]] = {}
        self._guessed: set[tuple[str, str]] = set()  # (project, specifier) guessed already
        self.failures: list[LayerforgeError] = []  # what went wrong serving pip, to explain its failure
        self._pool = ThreadPoolExecutor(max_workers=_PREFETCH_JOBS + 4, thread_name_prefix="layerforge-index")
        # A guess waits for its wheel's download, in `_pool`: guesses in that pool could fill it with
        # waiters and never run the download they wait for.
        self._guesses = ThreadPoolExecutor(max_workers=_PREFETCH_JOBS, thread_name_prefix="layerforge-guess")
        self._server: ThreadingHTTPServer | None = None
        self._prefetching = False  # a build fetches the wheels it will need; a lock alone does not

    # ---- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> LocalIndex:
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for the loop to notice, and the resolution waits for shutdown().
        serve = partial(self._server.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, name="layerforge-index", daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        # A guess still downloading finishes into the cache on its own: the resolution does not wait.
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._guesses.shutdown(wait=False, cancel_futures=True)
        if self._own_pages:
            self._pages.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self._token}/simple/"

    @property
    def base(self) -> str:
        return self.url[: -len("simple/")]

    # ---- what the resolution reads back ---------------------------------------------------------------

    def listing(self, name: str) -> Listing:
        return self.listing_future(name).result()

    def listing_future(self, name: str) -> Future[Listing]:
        return self._pages.future(self.upstream, name)

    def original_url(self, url: str) -> str:
        """The real index's URL of a file pip took through this one; other URLs (find-links) unchanged."""
        prefix = self.base + "files/"
        if not url.startswith(prefix):
            return url
        file_id = url[len(prefix) :].split("/", 1)[0]
        found = self._files.get(file_id)
        return _without_login(found.wheel.url) if found is not None else url

    def shown(self, text: str) -> str:
        """pip's output with this index's address (and its secret path) replaced by the real index's."""
        return text.replace(self.url, redact_url(self.upstream).rstrip("/") + "/").replace(
            self.base, "<local index>/"
        )

    def prefetch(self, requirements: Sequence[str]) -> None:
        """For a build, which needs the wheels: start fetching the one pip will most likely take for each
        named requirement (the newest release the specifier allows, in its best-fitting wheel), and its
        dependencies' in turn, from that wheel's metadata and, as pip reads each wheel's metadata, from
        pip's choices. A wrong guess costs a download, and a page read that pip did not need."""
        self._prefetching = True
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is not None or requirement.url:
                continue
            name = canonicalize_name(requirement.name)
            self._guesses.submit(self._prefetch_one, name, requirement)

    def _prefetch_one(self, name: str, requirement: Requirement) -> None:
        guess = (name, str(requirement.specifier))
        with self._lock:
            if guess in self._guessed:  # asked for twice alike (a dependency cycle ends here)
                return
            self._guessed.add(guess)
        listing = self.listing(name)
        best = _best_wheel(listing.wheels, requirement, self.target)
        if best is None or best.sha256 is None:
            return
        download = self._fetch(self._register(name, best))
        # pip reads the dependencies' pages one after another, each after the metadata that names them:
        # read down the guessed tree now, from each guess's own download (no request of its own), so that
        # they are here when it asks.
        with contextlib.suppress(LayerforgeError):
            self._prefetch_dependencies(self._cached_metadata(best.sha256, download.result(), name))

    def _prefetch_dependencies(self, metadata: bytes) -> None:
        environment = self.target.marker_environment()
        for requirement in _dependencies(metadata):
            try:
                if requirement.marker is not None and not requirement.marker.evaluate(environment):
                    continue
            except ValueError:  # a marker that names an extra, or one packaging cannot evaluate
                continue
            name = canonicalize_name(requirement.name)
            self.listing_future(name)
            if self._prefetching and not requirement.url:
                self._guesses.submit(self._prefetch_one, name, requirement)

    # ---- serving ---------------------------------------------------------------------------------------

    def _register(self, project: str, wheel: IndexWheel) -> str:
        # Keyed by the hash where there is one: the same bytes are one file whatever page lists them.
        file_id = wheel.sha256 or f"u{abs(hash(wheel.url)):x}"
        with self._lock:
            self._files.setdefault(file_id, _File(project, wheel))
        return file_id

    def page(self, name: str) -> tuple[int, bytes]:
        listing = self.listing(name)
        if listing.failure is not None:
            status = 404 if listing.failure.startswith("HTTP 404") else 502
            return status, listing.failure.encode()
        files: list[dict[str, Any]] = []
        accepts = _fitting(self.target, linux_platform=self._linux_platform)
        for wheel in listing.wheels:
            if not any(accepts(tag) for tag in wheel.tags):
                continue
            file_id = self._register(name, wheel)
            entry: dict[str, Any] = {
                "filename": wheel.filename,
                "url": f"{self.base}files/{file_id}/{urllib.parse.quote(wheel.filename)}",
                "hashes": {"sha256": wheel.sha256} if wheel.sha256 else {},
                "yanked": wheel.yanked,
            }
            if wheel.requires_python is not None:
                entry["requires-python"] = wheel.requires_python
            if wheel.sha256 is not None:
                # Served by `metadata` below: from the wheel cache, the index's PEP 658 file or ranges.
                entry["core-metadata"] = True
            files.append(entry)
        body = {"meta": {"api-version": "1.1"}, "name": name, "files": files}
        return 200, json.dumps(body).encode()

    def _fetch(self, file_id: str) -> Future[Path]:
        found = self._files[file_id]
        sha256 = found.wheel.sha256
        assert sha256 is not None
        with self._lock:
            future = self._fetches.get(sha256)
            if future is None:
                future = self._pool.submit(self._download, found)
                self._fetches[sha256] = future
            return future

    def _download(self, found: _File) -> Path:
        wheel = found.wheel
        assert wheel.sha256 is not None
        package = LockedPackage(found.project, str(wheel.version), wheel.filename, wheel.url, wheel.sha256)
        return fetch_one(package, self.cache, index_url=self.upstream).path

    def metadata(self, file_id: str) -> tuple[int, bytes]:
        found = self._files.get(file_id)
        if found is None or found.wheel.sha256 is None:
            return 404, b"no such file"
        try:
            metadata = self._metadata_of(file_id, found)
            # pip reads these projects' pages next, one after another: read them all now.
            self._pool.submit(self._prefetch_dependencies, metadata)
            return 200, metadata
        except LayerforgeError as error:
            self.failures.append(error)
            return 502, error.message.encode()

    def _metadata_of(self, file_id: str, found: _File) -> bytes:
        """From the wheel cache; else read remotely (PEP 658, range requests), which does not wait for a
        download of the whole wheel; else from the whole wheel, downloaded into the cache."""
        wheel = found.wheel
        assert wheel.sha256 is not None
        cached = self.cache.lookup(wheel.sha256, wheel.filename)
        if cached is not None:
            return self._cached_metadata(wheel.sha256, cached, found.project)
        remote = remote_metadata(wheel, found.project, self.upstream)
        if remote is not None:
            return remote
        return self._cached_metadata(wheel.sha256, self._fetch(file_id).result(), found.project)

    def _cached_metadata(self, sha256: str, wheel: Path, project: str) -> bytes:
        """wheel_metadata of a wheel in the cache (its bytes checked against `sha256`), read once: a second
        asker waits for the first. A read that failed is not kept."""
        with self._lock:
            future = self._metadata.get(sha256)
            mine = future is None
            if future is None:
                future = self._metadata[sha256] = Future()
        if not mine:
            return future.result()
        try:
            metadata = wheel_metadata(wheel, project)
        except BaseException as error:
            with self._lock:
                del self._metadata[sha256]
            future.set_exception(error)
            raise
        future.set_result(metadata)
        return metadata

    def wheel(self, file_id: str) -> tuple[int, Path | str | None]:
        """The file itself: from the cache when hashed, else the real index's URL to relay."""
        found = self._files.get(file_id)
        if found is None:
            return 404, None
        if found.wheel.sha256 is None:
            return 200, found.wheel.url
        try:
            return 200, self._fetch(file_id).result()
        except LayerforgeError as error:
            self.failures.append(error)
            return 502, None

    def route(self, path: str) -> tuple[str, str] | None:
        """("page", project) or ("metadata"|"wheel", file id) for a request path under the secret one."""
        prefix = f"/{self._token}/"
        if not secrets.compare_digest(path[: len(prefix)].encode(), prefix.encode()):
            return None
        rest = urllib.parse.unquote(path[len(prefix) :].split("?", 1)[0])
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "simple" and parts[2] == "" and parts[1]:
            return "page", canonicalize_name(parts[1])
        if len(parts) == 3 and parts[0] == "files":
            kind = "metadata" if parts[2].endswith(".metadata") else "wheel"
            return kind, parts[1]
        return None


def wheel_metadata(wheel: Path, project: str) -> bytes:
    """The METADATA of a wheel in the cache, found as pip finds it."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            return metadata_from_zip(archive, wheel.name, project)
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as error:
        raise WheelMetadataError(f"{wheel.name}: its METADATA could not be read ({error})") from error


def _without_login(url: str) -> str:
    """A file's URL as a lock records it: without the index's login (lent again at download) or fragment."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], fragment=""))


def _dependencies(metadata: bytes) -> list[Requirement]:
    found = []
    for line in metadata.decode("utf-8", "replace").splitlines():
        if not line.strip():
            break  # the headers end where the description begins
        if line.lower().startswith("requires-dist:"):
            try:
                found.append(Requirement(line.split(":", 1)[1].strip()))
            except ValueError:  # pip will say what is wrong with it
                continue
    return found


def _fitting(target: Target, *, linux_platform: bool) -> Callable[[Tag], bool]:
    """A test that is true of every tag pip could accept for the target (and of a few it would not): the
    page keeps a wheel if any of its tags passes, so pip decides among everything it could take."""
    machine = target.machine
    major, minor = target.python_version

    def accepts(tag: Tag) -> bool:
        platform = tag.platform
        if platform != "any":
            if not platform.endswith("_" + machine):
                return False
            if not (platform.startswith("manylinux") or (linux_platform and platform.startswith("linux_"))):
                return False
        interpreter = tag.interpreter
        if interpreter.startswith("py"):
            return True
        if interpreter == f"cp{major}{minor}":
            return True
        if interpreter.startswith(f"cp{major}") and interpreter[2:].isdigit():
            # An older CPython's wheel fits only through the stable ABI, or with none at all.
            return int(interpreter[3:] or 0) < minor and tag.abi in ("abi3", "none")
        return False

    return accepts


def _best_wheel(wheels: Sequence[IndexWheel], requirement: Requirement, target: Target) -> IndexWheel | None:
    """The newest release the specifier allows (finals only, as pip) and its most specific fitting wheel."""
    python = Version(target.python_dotted + ".0")
    rank = {tag: index for index, tag in enumerate(target.tags)}
    best: tuple[Version, int] | None = None
    chosen = None
    for wheel in wheels:
        # The tags first: most of a page's wheels are for other Pythons and platforms, and asking a
        # specifier about a version costs twenty times a look-up.
        ranks = [rank[tag] for tag in wheel.tags if tag in rank]
        if not ranks or wheel.yanked or not requirement.specifier.contains(wheel.version):
            continue
        if not supports_python(wheel.requires_python, python):
            continue
        key = (wheel.version, -min(ranks))
        if best is None or key > best:
            best, chosen = key, wheel
    return chosen


def _handler_for(index: LocalIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # A response goes out in two writes, headers then body. With Nagle's algorithm the body waits for
        # the ACK of the headers, which pip's side delays by up to 40 ms: pip asks one page or METADATA
        # at a time, so every request paid it (a sklearn resolution: 3.0 s with it, 2.0 s without).
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            route = index.route(self.path)
            if route is None:
                self._send(404, b"not found", "text/plain")
                return
            kind, what = route
            if kind == "page":
                status, body = index.page(what)
                self._send(status, body, "application/vnd.pypi.simple.v1+json")
            elif kind == "metadata":
                status, body = index.metadata(what)
                self._send(status, body, "text/plain")
            else:
                self._send_wheel(*index.wheel(what))

        def _send_wheel(self, status: int, source: Path | str | None) -> None:
            if isinstance(source, Path):
                with _opened(source) as (size, stream):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    while chunk := stream.read(1024 * 1024):
                        self.wfile.write(chunk)
                return
            if isinstance(source, str):
                # A file the page gave no hash for: pip takes it, and the lock refuses it for that.
                self.send_response(307)
                self.send_header("Location", redact_url(source))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(status, b"not available", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def _opened(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as stream:
        yield path.stat().st_size, stream
