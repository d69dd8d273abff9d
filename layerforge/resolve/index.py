"""Read a package index's project pages (PEP 691 JSON or PEP 503 HTML) to explain the resolver's choices.

The resolver (pip) picks the wheels; this module only lists what an index offers, so that layerforge can
say *why* a newer release was passed over, or which wheels exist when nothing fits, and which source
distribution to build in the Lambda build image when no wheel fits. A page is hostile input: entries of
the wrong type, file names of another project and URLs of other schemes are dropped, never trusted.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from html.parser import HTMLParser

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..cache import is_sha256

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
    url: str = ""  # absolute; may carry the index's credentials
    sha256: str | None = None
    metadata: str | None = None  # PEP 658: None, not offered; "", offered without a hash; else its sha256


@dataclass(frozen=True)
class IndexSdist:
    """A source distribution the index lists: where it is and the sha256 the index vouches for."""

    filename: str
    url: str  # absolute; may carry the index's credentials, so never shown or written as is
    version: Version
    sha256: str | None
    yanked: bool
    requires_python: str | None = None


@dataclass(frozen=True)
class IndexLink:
    filename: str
    href: str  # absolute once read_listing has it; as the page gives it before
    yanked: bool
    requires_python: str | None
    sha256: str | None
    metadata: str | None = None  # as IndexWheel.metadata


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, bool, str | None, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            values = dict(attrs)
            href = values.get("href")
            if href:
                metadata = values.get("data-core-metadata", values.get("data-dist-info-metadata"))
                self.links.append(
                    (href, "data-yanked" in values, values.get("data-requires-python"), metadata)
                )


def project_url(index_url: str, name: str) -> str:
    return index_url.rstrip("/") + "/" + canonicalize_name(name) + "/"


# Every wheel and sdist of a project's page, and why the page could not be read (None if it was).
ProjectFiles = tuple[list[IndexWheel], list[IndexSdist], str | None]


@dataclass(frozen=True)
class Listing:
    """One reading of a project's page: its links with absolute URLs, or why it could not be read."""

    page: str  # the page's URL; may carry the index's credentials
    links: tuple[IndexLink, ...]
    failure: str | None  # None when the page was read; "HTTP 404 ..." when the index has no such project

    @cached_property
    def wheels(self) -> list[IndexWheel]:
        """The wheels, each file name parsed once (numpy's page lists about 11,000)."""
        return _wheels(list(self.links))

    def project_files(self, name: str) -> ProjectFiles:
        return list(self.wheels), _sdists(list(self.links), name, self.page), self.failure


def read_listing(index_url: str, name: str) -> Listing:
    """Every file link of a project's page, made absolute; links of other schemes than the page's family
    are dropped, as a hostile page may list anything."""
    page = project_url(index_url, name)
    try:
        body, content_type = _fetch(page)
    except urllib.error.HTTPError as error:
        return Listing(page, (), f"HTTP {error.code} {error.reason}")
    except urllib.error.URLError as error:
        return Listing(page, (), describe_network_error(error.reason))
    except (OSError, ValueError, http.client.HTTPException) as error:
        return Listing(page, (), describe_network_error(error))
    if "json" in content_type:
        try:
            links = _json_links(body)
        except (ValueError, KeyError, TypeError, AttributeError):
            return Listing(page, (), "the project page is not valid PEP 691 JSON")
    else:
        parser = _LinkParser()
        parser.feed(body.decode("utf-8", "replace"))
        found = (_html_link(*link) for link in parser.links)
        links = [link for link in found if link is not None]
    return Listing(page, tuple(_absolute(links, page)), None)


def fetch_project_files(index_url: str, name: str) -> ProjectFiles:
    """Every wheel and source distribution the index lists for a project, and why the page could not be
    read (None if it was): "HTTP 404" means the index has no such project; anything else means the index
    failed to answer."""
    return read_listing(index_url, name).project_files(name)


def _absolute(links: list[IndexLink], page: str) -> list[IndexLink]:
    allowed = ("file",) if urllib.parse.urlsplit(page).scheme == "file" else ("http", "https")
    absolute = []
    for link in links:
        if link.href.startswith(("https://", "http://")) and "http" in allowed:
            absolute.append(link)  # PyPI's JSON gives every URL whole: nothing to join
            continue
        try:
            url = urllib.parse.urljoin(page, link.href)
            scheme = urllib.parse.urlsplit(url).scheme
        except ValueError:
            continue
        if scheme in allowed:
            absolute.append(dataclasses.replace(link, href=url))
    return absolute


def _json_links(body: bytes) -> list[IndexLink]:
    links = []
    for entry in json.loads(body)["files"]:
        filename, url = entry["filename"], entry.get("url", "")
        requires = entry.get("requires-python")
        hashes = entry.get("hashes") or {}
        if not isinstance(filename, str) or not isinstance(url, str) or not isinstance(hashes, dict):
            continue
        if not _splits(url):  # a malformed URL (an unclosed IPv6 bracket) names no file: skipped
            continue
        links.append(
            IndexLink(
                filename,
                url,
                bool(entry.get("yanked")),
                requires if isinstance(requires, str) else None,
                _sha256(hashes.get("sha256")),
                _json_metadata(entry.get("core-metadata", entry.get("dist-info-metadata"))),
            )
        )
    return links


def _json_metadata(value: object) -> str | None:
    """PEP 691/714: `true`, or a dict of hashes; a hash that is not sha256 is an offer without a hash."""
    if value is True:
        return ""
    if isinstance(value, dict):
        return _sha256(value.get("sha256")) or ""
    return None


def _html_metadata(value: str | None) -> str | None:
    """PEP 658: `true`, or `<algorithm>=<hex>`."""
    if value is None:
        return None
    algorithm, _, digest = value.partition("=")
    return (_sha256(digest) or "") if algorithm == "sha256" else ("" if value == "true" else None)


def _html_link(href: str, yanked: bool, requires: str | None, metadata: str | None) -> IndexLink | None:
    try:
        parts = urllib.parse.urlsplit(href)
    except ValueError:
        return None
    algorithm, _, digest = parts.fragment.partition("=")
    return IndexLink(
        urllib.parse.unquote(parts.path.rsplit("/", 1)[-1]),
        href,
        yanked,
        requires,
        _sha256(digest) if algorithm == "sha256" else None,
        _html_metadata(metadata),
    )


def _sha256(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    digest = value.lower()
    return digest if is_sha256(digest) else None


def describe_network_error(error: object, timeout: float | None = None) -> str:
    """Why a request failed, in words that never quote the URL (it may hold credentials)."""
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout or TIMEOUT_SECONDS:g} s (timed out)"
    if isinstance(error, http.client.InvalidURL | ValueError):
        return "the URL is not valid"
    return str(error) if error else "unknown error"


def redact_url(url: str) -> str:
    """A URL fit for messages, logs and files: no user, password or token, no query (presigned URLs carry
    their signature there) and no fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<a malformed URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def with_index_credentials(url: str, index_url: str | None) -> str:
    """`url` with the index's credentials when it is on the index's own host and carries none, as pip
    does: a private index serves its files behind the same login as its pages. Never to another host."""
    if not index_url:
        return url
    index = urllib.parse.urlsplit(index_url)
    parts = urllib.parse.urlsplit(url)
    if index.username is None or parts.username is not None:
        return url
    if (parts.scheme, parts.hostname, parts.port) != (index.scheme, index.hostname, index.port):
        return url
    login = index.netloc.rpartition("@")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{login}@{parts.netloc}"))


def open_url(
    url: str, *, timeout: float, headers: Mapping[str, str] | None = None
) -> http.client.HTTPResponse | urllib.response.addinfourl:
    """GET a URL. Credentials in it (`https://user:token@host/...`) become a Basic Authorization header
    for that host only: never sent on a redirect to another host, never part of an error's text."""
    parts = urllib.parse.urlsplit(url)
    # One TLS context for the process: loading the system's certificates costs 0.1 s each time.
    tls = urllib.request.HTTPSHandler(context=_tls_context())
    if parts.username is None and parts.password is None:
        opener = urllib.request.build_opener(tls)
    else:
        netloc = parts.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        passwords = urllib.request.HTTPPasswordMgrWithPriorAuth()
        passwords.add_password(
            None,
            f"{parts.scheme}://{netloc}/",
            urllib.parse.unquote(parts.username or ""),
            urllib.parse.unquote(parts.password or ""),
            is_authenticated=True,
        )
        opener = urllib.request.build_opener(tls, urllib.request.HTTPBasicAuthHandler(passwords))
    request = urllib.request.Request(url, headers={"User-Agent": "layerforge", **(headers or {})})  # noqa: S310
    response: http.client.HTTPResponse | urllib.response.addinfourl = opener.open(request, timeout=timeout)
    return response


def _tls_context() -> ssl.SSLContext:
    # Under a lock: the page readers start together, and functools.cache alone let each of them load the
    # system's certificates (0.5 s of CPU in a sklearn resolution, beside pip's start-up).
    with _TLS_LOCK:
        return _one_tls_context()


_TLS_LOCK = threading.Lock()


@cache
def _one_tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _splits(url: str) -> bool:
    """Whether urlsplit takes the URL. It refuses only brackets it cannot pair or read as a host, and a
    non-ASCII host that normalises to a delimiter: a URL with neither is not asked (numpy's page has 4,400
    URLs, and asking was a quarter of reading it)."""
    if url.isascii() and "[" not in url and "]" not in url:
        return True
    try:
        urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return True


def _wheels(links: list[IndexLink]) -> list[IndexWheel]:
    wheels = []
    for link in links:
        if not link.filename.endswith(".whl"):
            continue
        try:
            version, tags = _version_and_tags(link.filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        wheels.append(
            IndexWheel(
                link.filename,
                version,
                tags,
                link.yanked,
                link.requires_python,
                link.href,
                link.sha256,
                link.metadata,
            )
        )
    return wheels


# A page names thousands of wheels with a few hundred versions and tag sets between them (numpy's: 4,200
# wheels, 100 distinct tag sets), and parsing the tags was two thirds of parsing a name. Each part is
# parsed once, by packaging itself, in a name whose other parts are trivially valid: the parts of a wheel
# name are checked each on its own, so the answer (or the refusal) is the one the whole name gets.
def _version_and_tags(filename: str) -> tuple[Version, frozenset[Tag]]:
    if not filename.endswith(".whl"):
        raise InvalidWheelFilename(filename)
    stem = filename[:-4]
    dashes = stem.count("-")
    if dashes not in (4, 5):
        raise InvalidWheelFilename(filename)
    parts = stem.split("-", dashes - 2)
    _checked_name(parts[0])
    if dashes == 5:
        _checked_build(parts[2])
    return _parsed_version(parts[1]), _parsed_tags(parts[-1])


@lru_cache(maxsize=1024)
def _checked_name(name: str) -> None:
    parse_wheel_filename(f"{name}-0-py3-none-any.whl")


@lru_cache(maxsize=1024)
def _checked_build(build: str) -> None:
    parse_wheel_filename(f"x-0-{build}-py3-none-any.whl")


@lru_cache(maxsize=8192)
def _parsed_version(text: str) -> Version:
    try:
        return parse_wheel_filename(f"x-{text}-py3-none-any.whl")[1]
    except InvalidWheelFilename as error:
        raise InvalidVersion(text) from error


@lru_cache(maxsize=8192)
def _parsed_tags(text: str) -> frozenset[Tag]:
    return parse_wheel_filename(f"x-0-{text}.whl")[3]


def _sdists(links: list[IndexLink], name: str, page: str) -> list[IndexSdist]:
    """The project's own sdists (the links are absolute and of the page's scheme family already)."""
    project = canonicalize_name(name)
    sdists = []
    for link in links:
        # A wheel is never an sdist: numpy's page lists 4,000 of them, each a raised error to parse.
        if link.filename.endswith(".whl"):
            continue
        try:
            sdist_name, version = parse_sdist_filename(link.filename)
        except (InvalidSdistFilename, InvalidVersion):
            continue
        if sdist_name != project:
            continue
        sdists.append(
            IndexSdist(link.filename, link.href, version, link.sha256, link.yanked, link.requires_python)
        )
    return sdists


def _fetch(url: str) -> tuple[bytes, str]:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported index scheme {scheme!r}")
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        with open(path.rstrip("/") + "/index.html", "rb") as handle:
            return handle.read(_MAX_PAGE_BYTES), "text/html"
    with open_url(url, timeout=TIMEOUT_SECONDS, headers={"Accept": _ACCEPT}) as response:
        return response.read(_MAX_PAGE_BYTES), response.headers.get("Content-Type", "")


# A page repeats the same few Requires-Python strings over thousands of files (numpy's lists about 1,900),
# and parsing a specifier is most of the cost of asking.
@lru_cache(maxsize=4096)
def supports_python(requires_python: str | None, python: Version) -> bool:
    """Whether a release's Requires-Python admits `python`; one pip cannot read admits nothing, as in pip."""
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(python, prereleases=True)
    except InvalidSpecifier:
        return False
