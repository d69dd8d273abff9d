"""An offline PEP 503 simple index on 127.0.0.1, with fault switches (a pytest plugin).

Fixtures:

- ``local_index``: a started :class:`LocalIndex` over an empty folder, stopped at teardown.
- ``make_local_index``: a factory for more of them (a second host to redirect to, a mirror).

Routes: ``/simple/`` (projects), ``/simple/<normalized-name>/`` (links
``../../files/<file>#sha256=<hex>``, with ``data-requires-python`` from the wheel's METADATA),
``/files/<file>`` (GET and HEAD, single ``Range`` -> 206), and, if ``serve_metadata`` is set,
PEP 658/714 ``/files/<file>.metadata``. Every request is logged (:attr:`LocalIndex.requests`).

Fault switches take a URL path (``/simple/demo/``) or, for convenience, a bare file name that
means ``/files/<name>``: :meth:`LocalIndex.fail`, :meth:`LocalIndex.truncate`,
:meth:`LocalIndex.latency`, :meth:`LocalIndex.redirect`, :meth:`LocalIndex.fake_hash`.

Resolvers must not read the host's pip configuration: run them with :func:`offline_pip_env`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import pytest
from packaging.utils import canonicalize_name

from tests.support.wheelfactory import RawEntry, build_wheel

__all__ = [
    "LocalIndex",
    "RequestRecord",
    "local_index",
    "make_local_index",
    "offline_pip_env",
    "project_of",
]

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")
_T = TypeVar("_T")


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered."""

    method: str
    path: str  # URL path as requested (percent-encoded, no query)
    status: int
    bytes_sent: int  # body bytes written (0 for HEAD; 0 if the client hung up mid-response)
    range: str | None  # the Range header, if any
    user_agent: str | None


@dataclass
class _Faults:
    fail: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # status, times left
    truncate: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # n, times left
    latency: dict[str | None, float] = field(default_factory=dict)  # None: every path
    redirect: dict[str, tuple[str, int]] = field(default_factory=dict)  # location, status
    fake_hash: dict[str, str] = field(default_factory=dict)  # file name -> hex advertised
    yanked: dict[str, str] = field(default_factory=dict)  # file name -> the reason (PEP 592)


def project_of(filename: str) -> str:
    """The normalised project name of a distribution file name (``Foo_Bar-1.0-...`` -> foo-bar)."""
    return canonicalize_name(filename.split("-", 1)[0])


def offline_pip_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) without any ``PIP_*``, reading no pip config file.

    The machines set ``PIP_FIND_LINKS``, a mirror and a global pip.conf: none of it may leak
    into a resolution that means "this index". 127.0.0.1 bypasses any HTTP proxy.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.upper().startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in env.get(var, "").split(",") if h]
        env[var] = ",".join([*hosts, "127.0.0.1", "localhost"])
    return env


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    index: LocalIndex


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10  # drop idle keep-alive connections, so no thread outlives a test for long
    # Headers and body are two writes: with Nagle's algorithm the body would wait for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the index keeps its own log

    def do_GET(self) -> None:
        self.server.index._handle(self, head=False)

    def do_HEAD(self) -> None:
        self.server.index._handle(self, head=True)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class LocalIndex:
    """A PEP 503 simple index over the distribution files of ``wheel_dir``, on 127.0.0.1.

    The folder is read on every request: files added while the server runs are served.
    """

    def __init__(self, wheel_dir: Path) -> None:
        self.wheel_dir = wheel_dir
        self.wheel_dir.mkdir(parents=True, exist_ok=True)
        self.serve_metadata = False
        self.serve_ranges = True  # False: a Range header is ignored, the whole file sent (200)
        """Serve PEP 658 ``<file>.metadata`` and advertise it (``data-core-metadata``)."""
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._faults = _Faults()
        self._file_info: dict[tuple[str, int, int], tuple[str, bytes | None]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._authorization: str | None = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> LocalIndex:
        """Start serving on an ephemeral port of 127.0.0.1."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.index = self
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop the server and close its socket (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalIndex:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the index is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The index URL to give a resolver: ``http://127.0.0.1:PORT/simple/``."""
        return f"{self.base_url}/simple/"

    def project_url(self, name: str) -> str:
        """``.../simple/<normalized-name>/``."""
        return f"{self.url}{canonicalize_name(name)}/"

    def file_url(self, filename: str) -> str:
        """``.../files/<filename>``."""
        return f"{self.base_url}{self._path(filename)}"

    # -- content ----------------------------------------------------------------------------

    def add_wheel(
        self,
        name: str,
        version: str,
        tag: str = "py3-none-any",
        files: Mapping[str, bytes | str] | None = None,
        requires: Sequence[str] = (),
        extra_dist_info: Mapping[str, bytes | str] | None = None,
        *,
        requires_python: str | None = None,
        raw_entries: Sequence[RawEntry] = (),
        record: str | bytes | Callable[[str], str] | None = None,
    ) -> Path:
        """Build a wheel into :attr:`wheel_dir` (see ``wheelfactory.build_wheel``); its path."""
        return build_wheel(
            self.wheel_dir,
            name,
            version,
            tag,
            files,
            requires,
            extra_dist_info,
            requires_python=requires_python,
            raw_entries=raw_entries,
            record=record,
        )

    def add_file(self, src: Path, filename: str | None = None) -> Path:
        """Copy an existing distribution file into :attr:`wheel_dir`; its new path."""
        dest = self.wheel_dir / (filename or src.name)
        shutil.copyfile(src, dest)
        return dest

    def sha256(self, filename: str) -> str:
        """The true sha256 (hex) of a served file."""
        return self._info(self.wheel_dir / filename)[0]

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request answered so far, oldest first."""
        with self._lock:
            return list(self._log)

    def hits(self, path: str) -> int:
        """How many requests for ``path`` (a URL path, or a file name) were answered."""
        p = self._path(path)
        return sum(1 for r in self.requests if r.path == p)

    def bytes_served(self, path: str | None = None) -> int:
        """Body bytes sent for ``path`` (a URL path or a file name), or for all paths."""
        p = None if path is None else self._path(path)
        return sum(r.bytes_sent for r in self.requests if p is None or r.path == p)

    def downloads(self) -> list[str]:
        """File names fetched with GET under ``/files/`` (with repeats), in order."""
        return [
            unquote(r.path.removeprefix("/files/"))
            for r in self.requests
            if r.method == "GET" and r.path.startswith("/files/")
        ]

    def reset_log(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self._log.clear()

    # -- fault switches ---------------------------------------------------------------------

    def fail(self, path: str, status: int = 404, *, times: int | None = None) -> None:
        """Answer ``path`` with ``status`` (the first ``times`` requests, or always)."""
        with self._lock:
            self._faults.fail[self._path(path)] = (status, times)

    def truncate(self, path: str, nbytes: int, *, times: int | None = None) -> None:
        """Send only ``nbytes`` of the body of ``path``, then drop the connection.

        Headers still announce the full length, as a connection cut mid-download does.
        """
        with self._lock:
            self._faults.truncate[self._path(path)] = (nbytes, times)

    def latency(self, seconds: float, path: str | None = None) -> None:
        """Wait ``seconds`` before answering ``path`` (or every request if ``path`` is None)."""
        with self._lock:
            self._faults.latency[None if path is None else self._path(path)] = seconds

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer ``path`` with a redirect to ``location`` (a full URL, e.g. another host)."""
        with self._lock:
            self._faults.redirect[self._path(path)] = (location, status)

    def fake_hash(self, filename: str, sha256_hex: str) -> None:
        """Advertise ``sha256_hex`` for ``filename`` in project pages instead of its true hash."""
        with self._lock:
            self._faults.fake_hash[filename] = sha256_hex

    def yank(self, filename: str, reason: str = "") -> None:
        """Mark ``filename`` yanked in project pages (``data-yanked``), as PEP 592 does."""
        with self._lock:
            self._faults.yanked[filename] = reason

    def require_auth(self, user: str, password: str) -> None:
        """Answer 401 to every request without these Basic credentials, as a private index does."""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        with self._lock:
            self._authorization = f"Basic {token}"

    def clear_faults(self) -> None:
        """Remove every fault switch."""
        with self._lock:
            self._faults = _Faults()

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _path(path: str) -> str:
        if path.startswith(("http://", "https://")):
            return urlsplit(path).path
        if path.startswith("/"):
            return path
        return "/files/" + quote(path)

    def _dist_files(self) -> list[str]:
        return sorted(
            p.name for p in self.wheel_dir.iterdir() if p.is_file() and p.name.endswith(DIST_SUFFIXES)
        )

    def _info(self, path: Path) -> tuple[str, bytes | None]:
        """(sha256 hex, METADATA bytes of a wheel or None), cached by size and mtime."""
        st = path.stat()
        key = (path.name, st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._file_info.get(key)
        if cached is not None:
            return cached
        data = path.read_bytes()
        metadata: bytes | None = None
        if path.name.endswith(".whl"):
            try:
                with zipfile.ZipFile(path) as zf:
                    names = [
                        n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
                    ]
                    if names:
                        metadata = zf.read(names[0])
            except (zipfile.BadZipFile, OSError, KeyError):
                metadata = None  # a hostile or truncated wheel is still served, without metadata
        info = (hashlib.sha256(data).hexdigest(), metadata)
        with self._lock:
            self._file_info[key] = info
        return info

    def _take(self, table: dict[str, tuple[_T, int | None]], path: str) -> _T | None:
        """The fault value for ``path``, consuming one of its ``times`` (None if none)."""
        with self._lock:
            entry = table.get(path)
            if entry is None:
                return None
            value, times = entry
            if times is not None:
                if times <= 0:
                    return None
                table[path] = (value, times - 1)
            return value

    def _record(self, handler: _Handler, status: int, sent: int) -> RequestRecord:
        """Log a response *before* it is written, so that a client never sees an answer the log
        lacks yet (tests read the log as soon as their client returns)."""
        record = RequestRecord(
            method=handler.command,
            path=urlsplit(handler.path).path,
            status=status,
            bytes_sent=sent,
            range=handler.headers.get("Range"),
            user_agent=handler.headers.get("User-Agent"),
        )
        with self._lock:
            self._log.append(record)
        return record

    def _correct(self, record: RequestRecord, sent: int) -> None:
        """The client went away mid-response: log what was really sent (0, conservatively)."""
        with self._lock:
            for n in range(len(self._log) - 1, -1, -1):
                if self._log[n] is record:
                    self._log[n] = replace(record, bytes_sent=sent)
                    return

    def _handle(self, handler: _Handler, *, head: bool) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            delay = self._faults.latency.get(path, self._faults.latency.get(None, 0.0))
            authorization = self._authorization
        if delay:
            time.sleep(delay)
        if authorization is not None and handler.headers.get("Authorization") != authorization:
            challenge = {"WWW-Authenticate": 'Basic realm="index"'}
            self._send(handler, path, 401, b"credentials required\n", head=head, headers=challenge)
            return
        try:
            self._respond(handler, path, head=head)
        except Exception as error:  # a bug here must show as a 500 in the log, not a hung client
            self._send(handler, path, 500, f"index error: {error!r}\n".encode(), head=head)

    def _respond(self, h: _Handler, path: str, *, head: bool) -> tuple[int, int]:
        status = self._take(self._faults.fail, path)
        if status is not None:
            return self._send(h, path, status, f"fault: {status}\n".encode(), head=head)
        with self._lock:
            redirect = self._faults.redirect.get(path)
        if redirect is not None:
            location, code = redirect
            return self._send(h, path, code, b"", head=head, headers={"Location": location})

        if path == "/simple":
            return self._moved(h, path, "/simple/", head)
        if path == "/simple/":
            return self._send_html(h, path, self._root_page(), head)
        if path.startswith("/simple/"):
            rest = unquote(path.removeprefix("/simple/"))
            name = rest.removesuffix("/")
            if not name or "/" in name:
                return self._not_found(h, path, head)
            canonical = canonicalize_name(name)
            if name != canonical or not rest.endswith("/"):
                return self._moved(h, path, f"/simple/{canonical}/", head)
            page = self._project_page(canonical)
            if page is None:
                return self._not_found(h, path, head)
            return self._send_html(h, path, page, head)
        if path.startswith("/files/"):
            return self._serve_file(h, path, unquote(path.removeprefix("/files/")), head)
        return self._not_found(h, path, head)

    def _root_page(self) -> str:
        projects = sorted({project_of(f) for f in self._dist_files()})
        links = "".join(f'    <a href="{quote(p)}/">{html.escape(p)}</a><br/>\n' for p in projects)
        return f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"

    def _project_page(self, project: str) -> str | None:
        files = [f for f in self._dist_files() if project_of(f) == project]
        if not files:
            return None
        with self._lock:
            fake = dict(self._faults.fake_hash)
            yanked = dict(self._faults.yanked)
        links = []
        for filename in files:
            digest, metadata = self._info(self.wheel_dir / filename)
            attrs = f'href="../../files/{quote(filename)}#sha256={fake.get(filename, digest)}"'
            if filename in yanked:
                attrs += f' data-yanked="{html.escape(yanked[filename])}"'
            if metadata is not None:
                requires_python = (
                    HeaderParser().parsestr(metadata.decode("utf-8", "replace")).get("Requires-Python")
                )
                if requires_python:
                    attrs += f' data-requires-python="{html.escape(requires_python)}"'
                if self.serve_metadata:
                    meta = f"sha256={hashlib.sha256(metadata).hexdigest()}"
                    attrs += f' data-dist-info-metadata="{meta}" data-core-metadata="{meta}"'
            links.append(f"    <a {attrs}>{html.escape(filename)}</a><br/>\n")
        return (
            f"<!DOCTYPE html>\n<html><head><title>Links for {html.escape(project)}</title></head>"
            f"<body>\n<h1>Links for {html.escape(project)}</h1>\n{''.join(links)}</body></html>\n"
        )

    def _serve_file(self, h: _Handler, path: str, filename: str, head: bool) -> tuple[int, int]:
        metadata_wanted = False
        if filename.endswith(".metadata") and self.serve_metadata:
            filename, metadata_wanted = filename.removesuffix(".metadata"), True
        # Only plain files directly in the folder: no traversal out of it through the server.
        if not filename or filename in (".", "..") or "/" in filename or "\\" in filename or "\0" in filename:
            return self._not_found(h, path, head)
        file = self.wheel_dir / filename
        if not file.is_file():
            return self._not_found(h, path, head)
        if metadata_wanted:
            metadata = self._info(file)[1]
            if metadata is None:
                return self._not_found(h, path, head)
            return self._send(h, path, 200, metadata, head=head, content_type="text/plain")

        data = file.read_bytes()
        size = len(data)
        headers = {"Accept-Ranges": "bytes"}
        content_type = "application/octet-stream"
        match = _RANGE.match(h.headers.get("Range", "").strip()) if self.serve_ranges else None
        if match is None:
            return self._send(h, path, 200, data, head=head, headers=headers, content_type=content_type)
        first, last = match.groups()
        if first == "" and last == "":
            return self._send(h, path, 200, data, head=head, headers=headers, content_type=content_type)
        if first == "":  # suffix range: the last N bytes
            start, end = max(size - int(last), 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        if start >= size or end < start or size == 0:
            headers["Content-Range"] = f"bytes */{size}"
            return self._send(h, path, 416, b"", head=head, headers=headers)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return self._send(
            h, path, 206, data[start : end + 1], head=head, headers=headers, content_type=content_type
        )

    def _moved(self, h: _Handler, path: str, location: str, head: bool) -> tuple[int, int]:
        return self._send(h, path, 301, b"", head=head, headers={"Location": location})

    def _not_found(self, h: _Handler, path: str, head: bool) -> tuple[int, int]:
        return self._send(h, path, 404, b"not found\n", head=head)

    def _send_html(self, h: _Handler, path: str, page: str, head: bool) -> tuple[int, int]:
        return self._send(h, path, 200, page.encode(), head=head, content_type="text/html")

    def _send(
        self,
        h: _Handler,
        path: str,
        status: int,
        body: bytes,
        *,
        head: bool,
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/plain",
    ) -> tuple[int, int]:
        """Write a response; returns (status, body bytes written). Applies truncation."""
        limit = None if head or not body else self._take(self._faults.truncate, path)
        chunk = b"" if head else body if limit is None else body[: max(limit, 0)]
        record = self._record(h, status, len(chunk))
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            if limit is not None:
                h.send_header("Connection", "close")
            h.end_headers()
            if chunk:
                h.wfile.write(chunk)
                h.wfile.flush()
        except (ConnectionError, TimeoutError):
            h.close_connection = True
            self._correct(record, 0)
            return status, 0
        if limit is not None:
            h.close_connection = True
        return status, len(chunk)


@pytest.fixture()
def local_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    """A started, empty :class:`LocalIndex`; ``.url`` is its ``/simple/`` URL. Stopped after."""
    with LocalIndex(tmp_path_factory.mktemp("index")) as index:
        yield index


@pytest.fixture()
def make_local_index(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], LocalIndex]]:
    """A factory of more started indexes (each on its own port), all stopped after the test."""
    started: list[LocalIndex] = []

    def make() -> LocalIndex:
        index = LocalIndex(tmp_path_factory.mktemp("index")).start()
        started.append(index)
        return index

    yield make
    for index in started:
        index.stop()
