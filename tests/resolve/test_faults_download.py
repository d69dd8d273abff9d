"""Index and network faults at download time: each is retried or reported, and the cache never keeps
a partial or unverified file.

Faults come from the local index's switches (404s, 5xx, truncated bodies, latency, redirects to a
second local host); every test then walks the cache on disk. Downloads are tested at the
`download.fetch_one`/`fetch_all` layer and through `build()` from a lock, so that the real resolver
(pip, which fetches files too) runs before any fault is switched on.

Redirects to another host are followed: the lock's sha256, not the host, is what is trusted. PyPI
serves files from another host than its index, and private indexes (Artifactory, CodeArtifact, a
mirror) redirect to CDNs or presigned S3 URLs, so refusing would break real indexes; the hash check
refuses any bytes that differ. Credentials in a URL are sent to that URL's host only.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from layerforge.build import BuildOptions, build
from layerforge.cache import WheelCache, sha256_of
from layerforge.errors import DownloadError, HashMismatchError
from layerforge.recipe import recipe_from_mapping
from layerforge.resolve import download
from layerforge.resolve.download import FetchedWheel, fetch_all, fetch_one
from layerforge.resolve.lock import Lock, resolve
from layerforge.resolve.locked import LockedPackage
from layerforge.target import Target
from tests.layers import publish_demo_stack
from tests.support.index import LocalIndex, project_of

TARGET = Target("python3.11", "x86_64")
PURE = "purelib-1.0-py3-none-any.whl"


# ---- helpers -------------------------------------------------------------------------------------------


def pin(index: LocalIndex, filename: str, url: str | None = None) -> LockedPackage:
    """A lock entry for a file the index serves, pinned to its true sha256."""
    return LockedPackage(
        project_of(filename),
        filename.split("-")[1],
        filename,
        url or index.file_url(filename),
        index.sha256(filename),
    )


def cache_problems(root: Path) -> list[str]:
    """Everything in a wheel cache that should not be there: partial files, and files whose content
    is not the sha256 their entry folder is named after. Empty for a sound cache. Only the wheel kind:
    a build also files zip members and processed wheels beside it, each checked by its own tests."""
    wheels = root / "wheels"
    problems = [f"partial file {p}" for p in wheels.rglob("*.part")]
    for path in wheels.rglob("*"):
        if not path.is_file() or path.name == ".lock" or path.name.endswith(".part"):
            continue
        if path.parent.parent.parent.name != "wheels" or sha256_of(path) != path.parent.name:
            problems.append(f"unverified file {path}")
    return problems


def cached_wheels(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*.whl"))


def wait_for_hits(index: LocalIndex, path: str, count: int, timeout: float = 5.0) -> int:
    """The server logs a slow answer only once it is written: wait for stragglers before counting."""
    deadline = time.monotonic() + timeout
    while index.hits(path) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return index.hits(path)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same retry policy, with backoff in milliseconds so that the suite stays fast."""
    monkeypatch.setattr(download, "BACKOFF_SECONDS", 0.01)
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 5.0)


@pytest.fixture()
def pure(local_index: LocalIndex) -> LockedPackage:
    local_index.add_wheel("purelib", "1.0", files={"purelib/__init__.py": "x = 1\n" * 4000})
    return pin(local_index, PURE)


@pytest.fixture()
def cache(tmp_path: Path) -> WheelCache:
    return WheelCache(tmp_path / "cache")


# ---- fetch_one / fetch_all -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410, 403])
def test_a_missing_wheel_fails_at_once_naming_the_wheel_and_the_url(
    status: int, local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    local_index.fail(PURE, status)
    with pytest.raises(DownloadError) as raised:
        fetch_one(pure, cache)
    message = str(raised.value)
    assert PURE in message and local_index.file_url(PURE) in message
    assert f"HTTP {status}" in message and "(1 attempt)" in message
    assert raised.value.exit_code == 1
    assert local_index.hits(PURE) == 1  # an answer that will not change is not asked again
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []


def test_a_server_error_is_retried_and_then_succeeds(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    local_index.fail(PURE, 503, times=1)
    fetched = fetch_one(pure, cache)
    assert not fetched.from_cache and sha256_of(fetched.path) == pure.sha256
    assert local_index.hits(PURE) == 2
    assert cache_problems(cache.root) == []


def test_a_server_error_that_persists_is_reported_after_a_bounded_number_of_attempts(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    local_index.fail(PURE, 500)
    with pytest.raises(DownloadError, match=rf"HTTP 500 .*\({download.ATTEMPTS} attempts\)"):
        fetch_one(pure, cache)
    assert local_index.hits(PURE) == download.ATTEMPTS
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []


def test_a_download_truncated_once_is_retried_and_verified(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    local_index.truncate(PURE, 100, times=1)
    fetched = fetch_one(pure, cache)
    assert sha256_of(fetched.path) == pure.sha256 and fetched.bytes_downloaded == fetched.path.stat().st_size
    assert local_index.hits(PURE) == 2
    assert cache_problems(cache.root) == []


def test_a_download_truncated_every_time_is_reported_and_leaves_no_partial_file(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    size = (local_index.wheel_dir / PURE).stat().st_size
    local_index.truncate(PURE, 100)
    with pytest.raises(DownloadError) as raised:
        fetch_one(pure, cache)
    assert PURE in str(raised.value) and f"got 100 of {size} bytes" in str(raised.value)
    assert local_index.hits(PURE) == download.ATTEMPTS
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []
    # Once the index is healthy again, the same cache fetches it cleanly.
    local_index.clear_faults()
    assert sha256_of(fetch_one(pure, cache).path) == pure.sha256


def test_a_slow_index_beyond_the_timeout_is_reported(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 0.3)
    local_index.latency(1.0, PURE)
    started = time.monotonic()
    with pytest.raises(DownloadError) as raised:
        fetch_one(pure, cache)
    elapsed = time.monotonic() - started
    assert PURE in str(raised.value) and "no answer within 0.3 s (timed out)" in str(raised.value)
    assert elapsed < download.ATTEMPTS * 1.0  # each attempt gave up at the timeout, not at the answer
    assert wait_for_hits(local_index, PURE, download.ATTEMPTS) == download.ATTEMPTS
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []


def test_a_slow_index_within_the_timeout_is_waited_for(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 2.0)
    local_index.latency(0.3, PURE)
    assert sha256_of(fetch_one(pure, cache).path) == pure.sha256
    assert local_index.hits(PURE) == 1


def test_an_index_that_is_down_is_reported(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    local_index.stop()
    with pytest.raises(DownloadError, match=rf"Connection refused \({download.ATTEMPTS} attempts\)"):
        fetch_one(pure, cache)
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []


def test_a_redirect_to_another_host_is_followed_and_verified(
    local_index: LocalIndex,
    make_local_index: Callable[[], LocalIndex],
    pure: LockedPackage,
    cache: WheelCache,
) -> None:
    mirror = make_local_index()
    mirror.add_file(local_index.wheel_dir / PURE)
    local_index.redirect(PURE, mirror.file_url(PURE))
    fetched = fetch_one(pure, cache)
    assert sha256_of(fetched.path) == pure.sha256
    assert (local_index.hits(PURE), mirror.hits(PURE)) == (1, 1)
    assert cache_problems(cache.root) == []


def test_a_redirect_to_another_host_with_other_bytes_is_refused_and_nothing_is_kept(
    local_index: LocalIndex,
    make_local_index: Callable[[], LocalIndex],
    pure: LockedPackage,
    cache: WheelCache,
) -> None:
    mirror = make_local_index()
    mirror.add_wheel("purelib", "1.0", files={"purelib/__init__.py": "import os; os.system('evil')\n"})
    assert mirror.sha256(PURE) != pure.sha256
    local_index.redirect(PURE, mirror.file_url(PURE))
    with pytest.raises(HashMismatchError) as raised:
        fetch_one(pure, cache)
    message = str(raised.value)
    assert PURE in message and pure.sha256 in message and mirror.sha256(PURE) in message
    assert mirror.hits(PURE) == 1  # a mismatch is not retried: the bytes are wrong, not missing
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []


def test_a_redirect_to_a_local_file_is_refused(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.whl"
    secret.write_bytes(b"not for the index to read")
    local_index.redirect(PURE, secret.as_uri())
    with pytest.raises(DownloadError) as raised:
        fetch_one(pure, cache)
    assert PURE in str(raised.value) and "redirect that is not followed" in str(raised.value)
    assert str(secret) not in str(raised.value)
    assert local_index.hits(PURE) == 1
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []


def test_the_index_serving_other_bytes_than_the_lock_pins_is_refused_and_nothing_is_kept(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    # The same file name, rebuilt with other content after the lock was written.
    local_index.add_wheel("purelib", "1.0", files={"purelib/__init__.py": "x = 2\n"})
    served = local_index.sha256(PURE)
    assert served != pure.sha256
    with pytest.raises(HashMismatchError) as raised:
        fetch_one(pure, cache)
    message = str(raised.value)
    assert PURE in message and pure.sha256 in message and served in message
    assert "does not match the lock" in message and local_index.file_url(PURE) in message
    assert raised.value.exit_code == 1
    assert local_index.hits(PURE) == 1
    assert cached_wheels(cache.root) == [] and cache_problems(cache.root) == []
    assert not list(cache.entry_dir(served).parent.glob(f"{served}*"))  # not stored under its own hash either


def test_fetch_all_keeps_the_verified_wheels_when_one_fails(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    other = local_index.add_wheel("otherlib", "2.0", files={"otherlib/__init__.py": "y = 1\n"}).name
    packages = [pure, pin(local_index, other)]
    local_index.fail(other, 404)
    with pytest.raises(DownloadError, match=other):
        fetch_all(packages, cache, jobs=2)
    assert cached_wheels(cache.root) == [PURE] and cache_problems(cache.root) == []
    local_index.clear_faults()
    local_index.reset_log()
    fetched = fetch_all(packages, cache, jobs=2)
    assert [f.from_cache for f in fetched] == [True, False]
    assert local_index.downloads() == [other]
    assert cache_problems(cache.root) == []


def test_a_damaged_cache_entry_is_never_used(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    first = fetch_one(pure, cache)
    first.path.write_bytes(first.path.read_bytes()[:-10] + b"0123456789")  # bit rot, or a hand edit
    second = fetch_one(pure, cache)
    assert not second.from_cache and sha256_of(second.path) == pure.sha256
    assert local_index.hits(PURE) == 2
    assert cache_problems(cache.root) == []


def test_a_partial_file_left_by_a_killed_download_is_removed_by_the_next_fetch(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    entry = cache.entry_dir(pure.sha256)
    entry.mkdir(parents=True)
    (entry / ".download-dead1234.part").write_bytes(b"PK\x03\x04 half a wheel")
    fetched = fetch_one(pure, cache)
    assert sha256_of(fetched.path) == pure.sha256
    assert cache_problems(cache.root) == []


# ---- credentials in URLs -------------------------------------------------------------------------------


@dataclass
class _Seen:
    authorization: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


class _AuthHost(ThreadingHTTPServer):
    """A host that records each request's Authorization header; serves `data`, or redirects to `location`."""

    daemon_threads = True

    def __init__(self, data: bytes = b"", location: str | None = None, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _AuthHandler)
        self.data, self.location, self.status = data, location, status
        self.seen = _Seen()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _AuthHandler(BaseHTTPRequestHandler):
    server: _AuthHost
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.authorization.append(self.headers.get("Authorization"))
        self.server.seen.paths.append(self.path)
        if self.server.location:
            self.send_response(302)
            self.send_header("Location", self.server.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.data if self.server.status == 200 else b"no\n"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def auth_hosts() -> Iterator[Callable[..., _AuthHost]]:
    started: list[_AuthHost] = []

    def start(**kwargs: object) -> _AuthHost:
        host = _AuthHost(**kwargs)  # type: ignore[arg-type]
        threading.Thread(target=host.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(host)
        return host

    yield start
    for host in started:
        host.shutdown()
        host.server_close()


TOKEN = "tok3n-Sup3r-S3cret"


def test_credentials_in_a_url_go_to_its_host_only_never_across_a_redirect(
    auth_hosts: Callable[..., _AuthHost], local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    data = (local_index.wheel_dir / PURE).read_bytes()
    cdn = auth_hosts(data=data)
    index = auth_hosts(location=f"{cdn.url}/files/{PURE}")
    url = index.url.replace("http://", f"http://deploy:{TOKEN}@") + f"/files/{PURE}"
    fetched = fetch_one(LockedPackage(pure.name, pure.version, PURE, url, pure.sha256), cache)
    assert sha256_of(fetched.path) == pure.sha256
    expected = "Basic " + base64.b64encode(f"deploy:{TOKEN}".encode()).decode()
    assert index.seen.authorization == [expected]
    assert cdn.seen.authorization == [None]  # the redirect's other host never sees the credentials


@pytest.mark.parametrize("netloc", [f"deploy:{TOKEN}@", f"{TOKEN}@", f"deploy%40corp:{TOKEN}@"])
def test_credentials_in_a_failing_url_never_appear_in_the_error(
    netloc: str, auth_hosts: Callable[..., _AuthHost], pure: LockedPackage, cache: WheelCache
) -> None:
    host = auth_hosts(status=404)
    url = host.url.replace("http://", f"http://{netloc}") + f"/files/{PURE}?X-Amz-Signature=SIGNATURE123"
    with pytest.raises(DownloadError) as raised:
        fetch_one(LockedPackage(pure.name, pure.version, PURE, url, pure.sha256), cache)
    message = str(raised.value)
    assert f"{host.url}/files/{PURE}" in message and "HTTP 404" in message
    assert TOKEN not in message and "deploy" not in message and "SIGNATURE123" not in message


def test_credentials_without_a_port_are_not_taken_for_one(pure: LockedPackage, cache: WheelCache) -> None:
    # urllib alone reads `user:tok@host` as host `user` and port `tok@host`, and quotes it in its error.
    url = f"http://deploy:{TOKEN}@layerforge-test.invalid/files/{PURE}"
    with pytest.raises(DownloadError) as raised:
        fetch_one(LockedPackage(pure.name, pure.version, PURE, url, pure.sha256), cache)
    assert TOKEN not in str(raised.value) and "http://layerforge-test.invalid/files/" in str(raised.value)


# ---- through build() -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoStack:
    index: LocalIndex
    lock_path: Path
    lock: Lock


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """The demo stack on its own index, resolved once by the real pip into a lock."""
    root = tmp_path_factory.mktemp("demo-stack")
    with LocalIndex(root / "index") as index:
        publish_demo_stack(index, root)
        lock = resolve("demo", ["demo"], TARGET, index_url=index.url)
        lock_path = root / "demo.lock.json"
        lock.write(lock_path)
        yield DemoStack(index, lock_path, lock)


@pytest.fixture()
def stack(demo_stack: DemoStack) -> Iterator[DemoStack]:
    demo_stack.index.clear_faults()
    demo_stack.index.reset_log()
    yield demo_stack
    demo_stack.index.clear_faults()


def build_from_lock(stack: DemoStack, tmp_path: Path, out: str, cache: str = "cache") -> Path:
    options = BuildOptions(
        recipe=recipe_from_mapping({"name": "demo", "requirements": ["demo"]}, "demo.toml", "demo"),
        target=TARGET,
        out_dir=tmp_path / out,
        cache_dir=tmp_path / cache,
        index_url=stack.index.url,
        lock_path=stack.lock_path,
        verify=False,
    )
    return build(options).zip_path


def out_leftovers(out: Path) -> list[str]:
    """What a failed build left in its output folder beyond the lock it wrote first."""
    return sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock.json"))


def native_wheel(stack: DemoStack) -> str:
    return next(p.wheel for p in stack.lock.packages if p.name == "fastlib")


@pytest.fixture(scope="module")
def clean_sha256(demo_stack: DemoStack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The layer's sha256 from a build with no fault at all."""
    tmp = tmp_path_factory.mktemp("clean-build")
    return hashlib.sha256(build_from_lock(demo_stack, tmp, "out").read_bytes()).hexdigest()


def test_build_survives_a_truncated_download_and_a_server_error(
    stack: DemoStack, clean_sha256: str, tmp_path: Path
) -> None:
    wheel = native_wheel(stack)
    stack.index.truncate(wheel, 512, times=1)
    stack.index.fail(next(p.wheel for p in stack.lock.packages if p.name == "demo"), 502, times=1)
    zip_path = build_from_lock(stack, tmp_path, "out")
    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() == clean_sha256
    assert sorted(stack.index.downloads()) == sorted([p.wheel for p in stack.lock.packages] * 2)
    assert cache_problems(tmp_path / "cache") == []


def test_build_follows_a_redirect_to_another_host_to_the_same_layer(
    stack: DemoStack, clean_sha256: str, tmp_path: Path, make_local_index: Callable[[], LocalIndex]
) -> None:
    mirror = make_local_index()
    for package in stack.lock.packages:
        mirror.add_file(stack.index.wheel_dir / package.wheel)
        stack.index.redirect(package.wheel, mirror.file_url(package.wheel))
    zip_path = build_from_lock(stack, tmp_path, "out")
    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() == clean_sha256
    assert sorted(mirror.downloads()) == sorted(p.wheel for p in stack.lock.packages)
    assert cache_problems(tmp_path / "cache") == []


FAULTS: dict[str, tuple[Callable[[LocalIndex, str], None], str]] = {
    "404": (lambda index, wheel: index.fail(wheel, 404), "HTTP 404"),
    "truncated-always": (lambda index, wheel: index.truncate(wheel, 512), "got 512 of"),
    "slow": (lambda index, wheel: index.latency(1.0, wheel), "timed out"),
    "other-bytes": (
        lambda index, wheel: index.redirect(wheel, index.file_url(_decoy(index))),
        "does not match",
    ),
}


def _decoy(index: LocalIndex) -> str:
    return index.add_wheel("decoy", "1.0", "cp311-cp311-manylinux2014_x86_64").name


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_build_reports_a_download_fault_and_leaves_nothing_behind(
    fault: str, stack: DemoStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 0.3)
    wheel = native_wheel(stack)
    switch, expected = FAULTS[fault]
    switch(stack.index, wheel)
    with pytest.raises(DownloadError) as raised:
        build_from_lock(stack, tmp_path, "out")
    assert raised.value.exit_code == 1
    assert wheel in str(raised.value) and expected in str(raised.value)
    assert out_leftovers(tmp_path / "out") == []  # no zip, no manifest, no staging folder, no .part
    assert wheel not in cached_wheels(tmp_path / "cache")
    assert cache_problems(tmp_path / "cache") == []


def test_a_download_fault_through_the_cli_exits_1_with_the_wheel_and_url(
    stack: DemoStack, tmp_path: Path
) -> None:
    import subprocess
    import sys

    wheel = native_wheel(stack)
    stack.index.fail(wheel, 404)
    recipe = tmp_path / "demo.toml"
    recipe.write_text('name = "demo"\nrequirements = ["demo"]\n')
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "layerforge",
            "build",
            str(recipe),
            "--lock",
            str(stack.lock_path),
            "--index-url",
            stack.index.url,
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
            "--no-verify",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    assert wheel in completed.stderr and stack.index.file_url(wheel) in completed.stderr
    assert "Traceback" not in completed.stderr and completed.stdout == ""
    assert out_leftovers(tmp_path / "out") == []


def test_fetched_wheel_reports_what_crossed_the_wire(
    local_index: LocalIndex, pure: LockedPackage, cache: WheelCache
) -> None:
    first: FetchedWheel = fetch_one(pure, cache)
    again = fetch_one(pure, cache)
    assert (first.from_cache, first.bytes_downloaded) == (False, first.path.stat().st_size)
    assert (again.from_cache, again.bytes_downloaded, again.path) == (True, 0, first.path)
