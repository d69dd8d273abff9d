"""Read a package index's project pages (PEP 691 JSON or PEP 503 HTML) to explain the resolver's choices.

The resolver (pip) picks the wheels; this module only lists what an index offers, so that layerforge can
say *why* a newer release was passed over, or which wheels exist when nothing fits.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
_MAX_PAGE_BYTES = 64 * 1024 * 1024
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class IndexWheel:
    filename: str
    version: Version
    tags: frozenset[Tag]
    yanked: bool
    requires_python: str | None = None


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, bool, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            values = dict(attrs)
            href = values.get("href")
            if href:
                self.links.append((href, "data-yanked" in values, values.get("data-requires-python")))


def project_url(index_url: str, name: str) -> str:
    return index_url.rstrip("/") + "/" + canonicalize_name(name) + "/"


def fetch_project_wheels(index_url: str, name: str) -> list[IndexWheel]:
    """Every wheel the index lists for a project. Errors come back as an empty list: this is advice only."""
    try:
        body, content_type = _fetch(project_url(index_url, name))
    except (OSError, ValueError):
        return []
    if "json" in content_type:
        try:
            files = [
                (f["filename"], bool(f.get("yanked")), f.get("requires-python"))
                for f in json.loads(body)["files"]
            ]
        except (ValueError, KeyError, TypeError):
            return []
    else:
        parser = _LinkParser()
        parser.feed(body.decode("utf-8", "replace"))
        files = [
            (urllib.parse.unquote(urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1]), yanked, requires)
            for href, yanked, requires in parser.links
        ]
    return _wheels(files)


def _wheels(files: list[tuple[str, bool, str | None]]) -> list[IndexWheel]:
    wheels = []
    for filename, yanked, requires_python in files:
        if not filename.endswith(".whl"):
            continue
        try:
            _, version, _, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        wheels.append(IndexWheel(filename, version, tags, yanked, requires_python))
    return wheels


def _fetch(url: str) -> tuple[bytes, str]:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported index scheme {scheme!r}")
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        with open(path.rstrip("/") + "/index.html", "rb") as handle:
            return handle.read(_MAX_PAGE_BYTES), "text/html"
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT, "User-Agent": "layerforge"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        return response.read(_MAX_PAGE_BYTES), response.headers.get("Content-Type", "")
