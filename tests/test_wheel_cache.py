"""The wheel cache's lookup: a hash check per wheel and process, however many threads ask at once."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from layerforge import cache as cache_module
from layerforge.cache import WheelCache


def _cached(cache: WheelCache, name: str, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    path = cache.path_for(sha256, name)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return sha256


def test_threads_that_look_up_one_wheel_at_once_hash_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolution's guesses, the index serving pip and the head start ask for the same wheels together.
    Each used to hash it again: the touch of one moved the mtime the others had read."""
    cache = WheelCache(tmp_path)
    sha256 = _cached(cache, "demo-1.0-py3-none-any.whl", b"wheel bytes" * 10_000)
    hashed: list[Path] = []
    real = cache_module.sha256_of

    def slow_hash(path: str | Path) -> str:
        hashed.append(Path(path))
        time.sleep(0.05)  # long enough for every other thread to arrive meanwhile
        return real(path)

    monkeypatch.setattr(cache_module, "sha256_of", slow_hash)
    start = threading.Barrier(8)
    found: list[Path | None] = []

    def look() -> None:
        start.wait()
        found.append(cache.lookup(sha256, "demo-1.0-py3-none-any.whl"))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [cache.path_for(sha256, "demo-1.0-py3-none-any.whl")] * 8
    assert len(hashed) == 1, hashed


def test_a_damaged_wheel_is_removed_and_every_asker_is_told(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path)
    sha256 = _cached(cache, "demo-1.0-py3-none-any.whl", b"wheel bytes")
    path = cache.path_for(sha256, "demo-1.0-py3-none-any.whl")
    path.write_bytes(b"other bytes")
    results: list[Path | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.lookup(sha256, path.name))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [None] * 4
    assert not path.exists()
