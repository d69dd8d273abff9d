"""Resolution through the local index (resolve/local_index.py), against a real pip and a test index.

What it must show: pip's answers are the ones pip gives reading the index itself; a resolution reads
wheel metadata without downloading wheels (the index's PEP 658 files, else range requests, else a whole
download when the server ignores ranges); a build downloads every wheel once, for the resolution and the
build together; a wheel whose bytes do not match the page's hash is refused by name; and the local index
answers nobody who does not know its secret path.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from layerforge.cache import WheelCache
from layerforge.errors import HashMismatchError
from layerforge.resolve.download import fetch_all
from layerforge.resolve.local_index import LocalIndex as ResolutionIndex
from layerforge.resolve.lock import pip_command, resolve
from layerforge.target import Target
from tests.support.index import LocalIndex, offline_pip_env

TARGET = Target("python3.11", "x86_64")


def crowded_index(index: LocalIndex) -> None:
    """A project whose page lists what pip must weigh and refuse: other platforms, another Python, a
    glibc newer than the target's, a yanked release, a release that needs a newer Python."""
    for tag in (
        "cp311-cp311-win_amd64",
        "cp311-cp311-macosx_11_0_arm64",
        "cp312-cp312-manylinux_2_17_x86_64",
        "cp310-cp310-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux_2_17_aarch64",
        "cp311-cp311-musllinux_1_1_x86_64",
    ):
        index.add_wheel("crowd", "3.0", tag)
    index.add_wheel("crowd", "2.0", "cp311-cp311-manylinux_2_28_x86_64")  # glibc 2.28 > 2.26
    index.add_wheel("crowd", "1.5", "cp311-cp311-manylinux_2_17_x86_64", requires_python=">=3.12")
    index.add_wheel("crowd", "1.4", "cp311-cp311-manylinux_2_17_x86_64")
    index.yank("crowd-1.4-cp311-cp311-manylinux_2_17_x86_64.whl", "broken")
    index.add_wheel("crowd", "1.3", "cp311-cp311-manylinux_2_17_x86_64")
    index.add_wheel("crowd", "1.3", "cp311-abi3-manylinux_2_17_x86_64")
    index.add_wheel("crowd", "1.3", "py3-none-any")
    index.add_wheel("helper", "1.0", "py3-none-any")
    index.add_wheel("helper", "1.1", "cp39-abi3-manylinux2014_x86_64")
    index.add_wheel("app", "1.0", requires=["crowd", "helper"])


def pip_alone(index: LocalIndex, requirements: list[str], tmp_path: Path) -> dict[str, str]:
    """What pip takes reading the test index itself, with the same options as layerforge: name -> file."""
    report = tmp_path / "alone.json"
    command = pip_command(requirements, TARGET, report, tmp_path / "scratch")
    env = offline_pip_env()
    env["PIP_INDEX_URL"] = index.url
    subprocess.run(command, env=env, check=True, capture_output=True)
    taken = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["download_info"]["url"].rsplit("/", 1)[-1] for item in taken}


def test_pip_takes_the_same_wheels_through_the_local_index(local_index: LocalIndex, tmp_path: Path) -> None:
    crowded_index(local_index)
    alone = pip_alone(local_index, ["app"], tmp_path)
    lock = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=WheelCache(tmp_path / "cache"))
    assert {p.name: p.wheel for p in lock.packages} == alone
    # The choices themselves, so that a page cut too far cannot pass as "the same" by both being wrong.
    assert alone["crowd"] == "crowd-1.3-cp311-cp311-manylinux_2_17_x86_64.whl"
    assert alone["helper"] == "helper-1.1-cp39-abi3-manylinux2014_x86_64.whl"
    for package in lock.packages:
        assert package.url == local_index.file_url(package.wheel)
        assert package.sha256 == local_index.sha256(package.wheel)


def whole_downloads(index: LocalIndex) -> list[str]:
    """Wheels fetched whole: GETs of a file with no Range header."""
    return sorted(
        r.path.removeprefix("/files/")
        for r in index.requests
        if r.method == "GET" and r.path.startswith("/files/") and r.range is None and r.path.endswith(".whl")
    )


def test_a_lock_reads_wheel_metadata_through_ranges_and_downloads_no_wheel(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    crowded_index(local_index)
    lock = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=WheelCache(tmp_path / "cache"))
    assert whole_downloads(local_index) == []
    for package in lock.packages:
        path = urlsplit(local_index.file_url(package.wheel)).path
        ranges = [r for r in local_index.requests if r.path == path]
        assert ranges and all(r.range is not None for r in ranges), package.wheel
        size = (local_index.wheel_dir / package.wheel).stat().st_size
        assert sum(r.bytes_sent for r in ranges) <= size, package.wheel
    # The resolution never read a page twice, though pip and the explanations both wanted them.
    assert local_index.hits("/simple/crowd/") == 1


def test_the_index_s_own_metadata_files_are_read_where_it_serves_them(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    crowded_index(local_index)
    local_index.serve_metadata = True
    lock = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=WheelCache(tmp_path / "cache"))
    for package in lock.packages:
        assert local_index.hits(package.wheel + ".metadata") == 1
        assert local_index.hits(package.wheel) == 0


def test_a_server_that_ignores_ranges_gets_whole_downloads_the_build_keeps(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    crowded_index(local_index)
    local_index.serve_ranges = False
    cache = WheelCache(tmp_path / "cache")
    lock = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=cache)
    fetched = fetch_all(lock.packages, cache, index_url=local_index.url)
    assert all(f.from_cache for f in fetched)
    assert whole_downloads(local_index) == sorted(p.wheel for p in lock.packages)


def test_a_build_downloads_each_wheel_once_for_the_resolution_and_the_build(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    crowded_index(local_index)
    cache = WheelCache(tmp_path / "cache")
    lock = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=cache, prefetch=True)
    fetch_all(lock.packages, cache, index_url=local_index.url)
    assert whole_downloads(local_index) == sorted(p.wheel for p in lock.packages)


def test_a_build_of_many_requirements_resolves_with_every_prefetch_waiting_on_a_page(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    """Sixteen named requirements: more prefetches than the index has threads, each waiting on its page.
    Pages are read in a pool of their own, so the resolution finishes (it hung when they shared one)."""
    names = [f"dep{n}" for n in range(16)]
    for name in names:
        local_index.add_wheel(name, "1.0")
    local_index.latency(0.05)  # every page takes a while, so the prefetches pile up waiting
    result: list[object] = []
    cache = WheelCache(tmp_path / "cache")
    worker = threading.Thread(
        target=lambda: result.append(
            resolve("many", names, TARGET, index_url=local_index.url, cache=cache, prefetch=True)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the resolution hung"
    assert sorted(p.name for p in result[0].packages) == sorted(names)  # type: ignore[attr-defined]


def test_a_second_resolution_downloads_nothing(local_index: LocalIndex, tmp_path: Path) -> None:
    crowded_index(local_index)
    cache = WheelCache(tmp_path / "cache")
    first = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=cache, prefetch=True)
    local_index.reset_log()
    again = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=cache, prefetch=True)
    assert again.packages == first.packages
    assert local_index.downloads() == []


def test_a_wheel_whose_bytes_do_not_match_the_page_is_refused_by_name(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    local_index.add_wheel("app", "1.0")
    local_index.fake_hash("app-1.0-py3-none-any.whl", "0" * 64)
    local_index.serve_ranges = False  # the resolution must download it, and check it
    cache = WheelCache(tmp_path / "cache")
    with pytest.raises(HashMismatchError, match=re.escape("app-1.0-py3-none-any.whl")):
        resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=cache)
    assert not list((tmp_path / "cache" / "wheels").rglob("*.whl"))


def test_the_local_index_answers_only_under_its_secret_path(local_index: LocalIndex, tmp_path: Path) -> None:
    local_index.add_wheel("app", "1.0")
    with ResolutionIndex(local_index.url, WheelCache(tmp_path / "cache"), TARGET) as served:
        with urllib.request.urlopen(served.url + "app/") as response:
            assert json.load(response)["files"][0]["filename"] == "app-1.0-py3-none-any.whl"
        host = served.url.split("/", 3)[:3]
        for path in ("/simple/app/", "/x/simple/app/", "/" + "a" * 32 + "/simple/app/"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen("/".join(host) + path)
            assert refused.value.code == 404


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def test_a_build_reads_down_the_dependencies_of_its_guesses_before_pip_asks(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    """pip reads a dependency's page only after the metadata that names it: a build's guesses read the
    whole guessed tree at once, each page once, and a dependency cycle ends. No pip runs here: every
    request is the guesses'. A guess reads its wheel's metadata from its own download, which it waits for
    in a pool of its own (sharing the downloads' pool, guesses could fill it and wait forever)."""
    crowded_index(local_index)
    local_index.add_wheel("deep", "1.0", requires=["app", "ring-a"])
    local_index.add_wheel("ring-a", "1.0", requires=["ring-b"])
    local_index.add_wheel("ring-b", "1.0", requires=["ring-a>=1", "leaf; python_version < '3'"])
    local_index.add_wheel("leaf", "1.0")
    for n in range(8):
        local_index.add_wheel(f"dep{n}", "1.0")
    local_index.latency(0.05)  # so that the guesses pile up, each waiting on its page and its metadata
    with ResolutionIndex(local_index.url, WheelCache(tmp_path / "cache"), TARGET) as index:
        index.prefetch([f"dep{n}" for n in range(8)] + ["deep"])
        pages = ["deep", "app", "crowd", "helper", "ring-a", "ring-b"]
        wait_for(lambda: all(local_index.hits(f"/simple/{p}/") for p in pages), "the guessed tree's pages")
        wait_for(lambda: local_index.hits("ring_b-1.0-py3-none-any.whl") > 0, "ring-b's metadata")
    assert all(local_index.hits(f"/simple/{p}/") == 1 for p in pages)
    assert [r for r in local_index.requests if r.range is not None] == []  # no metadata read of its own
    assert local_index.hits("/simple/leaf/") == 0  # its marker does not hold on the target


def test_a_cached_wheels_metadata_is_read_once_for_the_guess_and_for_pip(
    local_index: LocalIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the wheels in the cache, a guess reads each one's METADATA to walk its dependencies and pip asks
    for the same file: the wheel's zip directory is read once, and pip is served the same bytes."""
    from layerforge.resolve import local_index as module

    crowded_index(local_index)
    cache = WheelCache(tmp_path / "cache")
    first = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=cache, prefetch=True)
    reads: list[str] = []
    real = module.wheel_metadata

    def counting(wheel: Path, project: str) -> bytes:
        reads.append(wheel.name)
        return real(wheel, project)

    monkeypatch.setattr(module, "wheel_metadata", counting)
    again = resolve("demo", ["app"], TARGET, index_url=local_index.url, cache=cache, prefetch=True)
    assert again.packages == first.packages
    assert sorted(reads) == sorted(set(reads)), reads
    assert set(reads) == {p.wheel for p in first.packages}
