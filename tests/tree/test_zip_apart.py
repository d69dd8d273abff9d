"""The layer's zip written by a child process (tree/zip_apart.py): the same bytes as write_zip in this
process, the child's opens under the counted folders reported, a stop that leaves nothing behind, a
failure said as a BuildError, and a child that does not outlive a killed build."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from layerforge.cache import note_sha256, sha256_of
from layerforge.errors import BuildError
from layerforge.member_cache import MemberCache
from layerforge.tree._zip_child import prepared_name
from layerforge.tree.archive import CACHE_FLOOR, member_key, member_key_of, write_zip
from layerforge.tree.unpack import LayerFile, LayerTree
from layerforge.tree.zip_apart import ZipChild, large_members, write_zip_apart
from tests.tree.test_archive_cache import make_tree


def test_the_child_writes_the_bytes_write_zip_writes_here(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    files = make_tree(root)
    here = write_zip(root, tmp_path / "here.zip")
    advanced: list[int] = []
    for run in ("cold", "warm"):
        apart, opens = write_zip_apart(
            root,
            tmp_path / f"{run}.zip",
            jobs=2,
            cache_dir=tmp_path / "cache",
            progress=advanced.append,
            counted=[root],
        )
        assert apart.path.read_bytes() == here.path.read_bytes()
        assert (apart.sha256, apart.entries, apart.unzipped_bytes) == (
            here.sha256,
            len(files),
            here.unzipped_bytes,
        )
        # Every member went into the cache cold (the small ones in packs) and came out of it warm.
        assert apart.cached_members == (0 if run == "cold" else len(files))
        # One open per member and one listing per folder, as the watch of verify/opens.py counts them; a
        # small member, whose digest no checkout proved here, once more for its pack's key.
        folders = [folder for folder, _, _ in os.walk(root)]
        reads = {str(root / name): 1 if len(data) >= CACHE_FLOOR else 2 for name, data in files.items()}
        assert opens == Counter(reads | dict.fromkeys(folders, 1))
    assert sum(advanced) == 2 * here.unzipped_bytes
    assert list(MemberCache(tmp_path / "cache").root.rglob("*.part")) == []


def test_digests_proven_here_are_not_read_again_by_the_child(tmp_path: Path) -> None:
    """A digest noted for a file's identity keys its member in the child: a wrong one (planted here on
    purpose) makes the child look up another key, so a cold cache stays without the member's own key."""
    root = tmp_path / "layer"
    make_tree(root)
    big = root / "python/pkg/data.bin"
    note_sha256(big.stat(), "00" * 32)
    reference = write_zip(root, tmp_path / "reference.zip")
    apart, _ = write_zip_apart(root, tmp_path / "apart.zip", cache_dir=tmp_path / "cache")
    # The bytes never depend on the key: a stream is filed under the noted digest's key instead.
    assert apart.path.read_bytes() == reference.path.read_bytes()
    filed = {p.name for p in (tmp_path / "cache" / "members").rglob("*") if p.is_file()}
    assert member_key_of("00" * 32) in filed
    assert member_key(big.read_bytes()) not in filed


def test_a_stopped_zip_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    make_tree(root)
    (tmp_path / "out").mkdir()

    class Stop(Exception):
        pass

    def stop(_amount: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        write_zip_apart(root, tmp_path / "out" / "layer.zip", progress=stop)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failed_child_is_a_build_error_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="writing the zip failed: FileNotFoundError"):
        write_zip_apart(tmp_path / "no-such-layer", tmp_path / "layer.zip")
    assert not (tmp_path / "layer.zip").exists()


def child_pids(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in "ZX"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_child_ends_when_the_build_is_killed(tmp_path: Path) -> None:
    """SIGKILL to the build alone (the OOM killer picks one process): its zip child sees its input end
    and exits, and writes no zip."""
    root = tmp_path / "layer"
    root.mkdir()
    for i in range(12):  # incompressible: about a second of deflating, enough to be caught
        (root / f"blob{i}.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from layerforge.tree.zip_apart import large_members, write_zip_apart
        def slow(_amount):
            print("zipping", flush=True)
            time.sleep(3600)
        write_zip_apart(Path({str(root)!r}), Path({str(tmp_path / "out" / "layer.zip")!r}), progress=slow)
        """
    )
    build = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert build.stdout is not None and build.stderr is not None
        if build.stdout.readline().strip() != "zipping":
            pytest.fail(f"the build never zipped: {build.stderr.read()}")
        (child,) = child_pids(build.pid)
        assert not ended(child)
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not ended(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended(child), "the zip child outlived the build"
    finally:
        if build.poll() is None:
            build.kill()
    assert not (tmp_path / "out" / "layer.zip").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_child_stopped_and_continued_over_and_over_still_answers(tmp_path: Path) -> None:
    """Ctrl-Z and fg, or a profiler's interruptions: SIGSTOP and SIGCONT to the child, again and again,
    while it writes. Its answer (hundreds of kilobytes: an open count per file) once came as one line on
    its stdout, and under this it arrived torn in 4 of 5 runs; it is a file now."""
    root = tmp_path / "layer"
    for i in range(1500):
        path = root / "python" / f"package_{i % 30}" / f"module_with_a_long_name_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"x = {i}\n")
    done = threading.Event()

    def storm() -> None:
        while not done.is_set():
            for child in child_pids(os.getpid()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGSTOP)
                    time.sleep(0.0005)
                    os.kill(child, signal.SIGCONT)
            time.sleep(0.0005)

    stormer = threading.Thread(target=storm, daemon=True)
    stormer.start()
    try:
        for run in range(3):
            result, opens = write_zip_apart(root, tmp_path / f"{run}.zip", counted=[root])
            # Each file, and each folder: the layer, python/ and 30 packages.
            assert result.entries == 1500 and len(opens) == 1500 + 32
    finally:
        done.set()
        stormer.join()


def test_a_child_started_ahead_writes_the_same_bytes_and_one_never_used_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The build starts its zip child before the tree is made; it waits, then writes what a child started
    at the end would. A child the build had no zip for (it failed first) is killed, its folder gone."""
    root = tmp_path / "layer"
    files = make_tree(root)
    here = write_zip(root, tmp_path / "here.zip")
    with ZipChild(tmp_path) as ahead:
        time.sleep(0.5)  # ready and waiting, not yet told
        assert ahead.process.poll() is None
        apart, _ = write_zip_apart(root, tmp_path / "ahead.zip", child=ahead)
    assert apart.path.read_bytes() == here.path.read_bytes()
    assert not ahead.work.exists()
    # Told to prove the large members' cached streams first (as a build does once its pieces are in):
    # the same bytes, every member copied.
    cache = tmp_path / "cache"
    write_zip_apart(root, tmp_path / "cold.zip", cache_dir=cache)
    large = [[sha256_of(root / name), len(data)] for name, data in files.items() if len(data) >= CACHE_FLOOR]
    for name in files:
        note_sha256(os.stat(root / name), sha256_of(root / name))
    layer = {
        name: LayerFile(name, len(data), "pkg", "pkg-1.0-py3-none-any.whl") for name, data in files.items()
    }
    # Held back (not in the tree): nothing to prove.
    layer["python/pkg/held.bin"] = LayerFile("python/pkg/held.bin", 2 * CACHE_FLOOR, "pkg", "pkg.whl")
    with ZipChild(tmp_path) as ahead:
        ahead.prepare(cache, LayerTree(root, files=layer))
        asked = json.loads((ahead.work / prepared_name(1)).read_text(encoding="utf-8"))
        proved, _ = write_zip_apart(root, tmp_path / "proved.zip", cache_dir=cache, child=ahead)
    assert sorted(asked["members"]) == sorted(large) and asked["cache_dir"] == str(cache)
    assert proved.path.read_bytes() == here.path.read_bytes()
    assert proved.cached_members == len(files)
    # Asked piece by piece while pip resolves (the head start), then for the tree: each request in a file
    # of its own, none lost to the next; every member is copied.
    with ZipChild(tmp_path) as ahead:
        ahead.prove(cache, large[:1])
        ahead.prove(
            cache, large_members({name: [len(data), sha256_of(root / name)] for name, data in files.items()})
        )
        ahead.prepare(cache, LayerTree(root, files=layer))
        asks = [json.loads((ahead.work / prepared_name(n)).read_text(encoding="utf-8")) for n in (1, 2, 3)]
        again, _ = write_zip_apart(root, tmp_path / "again.zip", cache_dir=cache, child=ahead)
    assert asks[0]["members"] == large[:1]
    assert sorted(asks[1]["members"]) == sorted(asks[2]["members"]) == sorted(large)
    assert again.path.read_bytes() == here.path.read_bytes() and again.cached_members == len(files)
    unused = ZipChild(tmp_path)
    work = unused.work
    unused.close()
    assert unused.process.returncode == -signal.SIGKILL
    assert not work.exists()
    assert not (tmp_path / "unused.zip").exists()


_NOTED = 5_000


def test_the_memo_is_handed_over_whole_while_other_threads_note_digests(tmp_path: Path) -> None:
    """The zip takes the memo of proven digests while the audit and the verifier go on noting theirs (a
    cold build failed once on "dictionary changed size during iteration")."""
    from layerforge import cache

    found = os.stat(tmp_path)
    known = set(cache._HASHED)
    before = len(known)
    stop = threading.Event()

    def note_more() -> None:
        # A bounded number: each hand-over copies the whole memo, and a memo that grew without end while
        # they ran made this test take 5 minutes on a loaded machine.
        for inode in range(10**12, 10**12 + _NOTED):
            if stop.is_set():
                return
            cache.note_sha256(os.stat_result((0, inode, found.st_dev, 1, 0, 0, 7, 0, 0, 0)), "f" * 64)

    noting = threading.Thread(target=note_more)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    noting.start()
    handed_over = 0
    try:
        while noting.is_alive() or handed_over < 50:
            assert len(cache.proven_digests()) >= before
            handed_over += 1
    finally:
        stop.set()
        noting.join()
        sys.setswitchinterval(switch)
        # The memo is the process's: later builds of this worker hand it to their zip children.
        for identity in set(cache._HASHED) - known:
            del cache._HASHED[identity]
