"""Builds that share one wheel cache at the same time, and a build killed outright in the middle.

Real processes (`python -m layerforge build`) against the local index: the per-entry file locks must
serialise two processes that want the same wheel, a SIGKILL must leave no corrupt cache entry and no
partial zip, and the next build must clean up what the killed one could not (its staging folder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerforge.cache import sha256_of
from layerforge.resolve.lock import resolve
from layerforge.staging import STAGING_MARK, host_label, make_staging_dir, sweep_stale
from layerforge.target import Target
from tests.layers import publish_demo_stack
from tests.support.index import LocalIndex

STEM = "demo-python3.11-x86_64"


@dataclass(frozen=True)
class Setup:
    index: LocalIndex
    recipe: Path
    lock: Path
    wheels: tuple[str, ...]
    cache: Path


@pytest.fixture()
def setup(local_index: LocalIndex, tmp_path: Path) -> Setup:
    publish_demo_stack(local_index, tmp_path)
    lock = resolve("demo", ["demo"], Target("python3.11", "x86_64"), index_url=local_index.url)
    lock_path = tmp_path / "demo.lock.json"
    lock.write(lock_path)
    recipe = tmp_path / "demo.toml"
    recipe.write_text('name = "demo"\nrequirements = ["demo"]\n', encoding="utf-8")
    local_index.reset_log()
    return Setup(local_index, recipe, lock_path, tuple(p.wheel for p in lock.packages), tmp_path / "cache")


@pytest.fixture()
def processes() -> Iterator[Callable[[Setup, Path], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(setup: Setup, out: Path) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            "-m",
            "layerforge",
            "build",
            str(setup.recipe),
            "--lock",
            str(setup.lock),
            "--index-url",
            setup.index.url,
            "--cache-dir",
            str(setup.cache),
            "--out",
            str(out),
            "--no-verify",
            "--quiet",
            "--json",
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def finish(process: subprocess.Popen[str]) -> dict[str, object]:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    payload: dict[str, object] = json.loads(stdout)
    return payload


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def partial_downloads(cache: Path) -> list[Path]:
    return list((cache / "wheels").rglob("*.part"))


def assert_cache_sound(cache: Path, wheels: tuple[str, ...]) -> None:
    """Every file in the cache has the sha256 of its entry folder; nothing partial; every wheel there."""
    assert partial_downloads(cache) == []
    stored = [p for p in (cache / "wheels").rglob("*") if p.is_file() and p.name != ".lock"]
    for path in stored:
        assert sha256_of(path) == path.parent.name, f"corrupt cache entry {path}"
    assert sorted(p.name for p in stored) == sorted(wheels)


def staging_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if STAGING_MARK in p.name) if out.exists() else []


def test_two_builds_sharing_a_cache_fetch_each_wheel_once_and_agree(
    setup: Setup, processes: Callable[[Setup, Path], subprocess.Popen[str]], tmp_path: Path
) -> None:
    for wheel in setup.wheels:
        setup.index.latency(0.5, wheel)  # long enough for both processes to want each wheel at once
    first, second = processes(setup, tmp_path / "one"), processes(setup, tmp_path / "two")
    one, two = finish(first), finish(second)
    assert one["sha256"] == two["sha256"]
    assert sorted(setup.index.downloads()) == sorted(setup.wheels)  # the file locks let one fetch each
    assert_cache_sound(setup.cache, setup.wheels)


def test_a_build_killed_mid_download_leaves_nothing_corrupt_and_the_other_succeeds(
    setup: Setup, processes: Callable[[Setup, Path], subprocess.Popen[str]], tmp_path: Path
) -> None:
    killed_out, other_out = tmp_path / "killed", tmp_path / "other"
    # Long enough that the victim is still downloading when it is killed on a loaded machine (3 s was not
    # always); the kill comes as soon as both builds are where the test wants them, so it costs no time.
    for wheel in setup.wheels:
        setup.index.latency(15.0, wheel)
    victim = processes(setup, killed_out)
    # The victim holds every wheel's entry lock, each with a download in progress.
    wait_until(lambda: len(partial_downloads(setup.cache)) == len(setup.wheels), "the victim is downloading")
    other = processes(setup, other_out)
    wait_until(lambda: bool(staging_dirs(other_out)), "the other build reached its download stage")
    time.sleep(0.3)  # now waiting on the victim's locks
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    setup.index.clear_faults()

    survivor = finish(other)

    assert_cache_sound(setup.cache, setup.wheels)  # the victim's partial downloads are gone too
    leftovers = sorted(p.name for p in killed_out.iterdir())
    assert not [n for n in leftovers if n.endswith(".zip") or ".zip." in n or n.endswith(".manifest.json")]
    assert f"{STEM}.lock.json" in leftovers  # written before any download, atomically
    assert len(staging_dirs(killed_out)) == 1  # no `finally` runs after SIGKILL
    assert staging_dirs(other_out) == []

    # The killed build, run again, succeeds with the same layer from the cache alone: the index now
    # refuses every wheel, so a single download would fail it.
    for wheel in setup.wheels:
        setup.index.fail(wheel, 404)
    rerun = finish(processes(setup, killed_out))
    assert rerun["sha256"] == survivor["sha256"]
    assert_cache_sound(setup.cache, setup.wheels)
    # The rerun swept the staging folder the victim could not remove (layerforge.staging).
    assert staging_dirs(killed_out) == []


def test_a_build_killed_while_pip_resolves_leaves_its_scratch_in_staging_alone(
    setup: Setup, tmp_path: Path
) -> None:
    """What the resolution writes (pip's report, pip's own temporary files) goes in the build's staging
    folder, in the output folder: a build killed outright leaves nothing in the system's temporary
    folder, and the next build there sweeps what it left."""
    out, system_tmp = tmp_path / "out", tmp_path / "system-tmp"
    system_tmp.mkdir()
    setup.index.latency(3.0, "/simple/fastlib/")  # pip waits on the dependency's page
    command = [
        sys.executable, "-m", "layerforge", "build", str(setup.recipe), "--index-url", setup.index.url,
        "--cache-dir", str(setup.cache), "--out", str(out), "--no-verify", "--quiet", "--json",
    ]  # fmt: skip
    victim = subprocess.Popen(
        command,
        env={**os.environ, "TMPDIR": str(system_tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its pip, orphaned by the kill, is waited for by process group
    )
    try:

        def resolving() -> list[Path]:
            return [*system_tmp.glob("*resolve-*"), *out.glob(f"*{STAGING_MARK}*/resolve-*")]

        wait_until(lambda: bool(resolving()), "the build is resolving")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        wait_until(lambda: not process_group_alive(victim.pid), "pip, orphaned, has ended")
    finally:
        if process_group_alive(victim.pid):
            os.killpg(victim.pid, signal.SIGKILL)
    assert list(system_tmp.iterdir()) == []
    (left,) = staging_dirs(out)
    assert [p.name.startswith("resolve-") for p in (out / left).iterdir()] == [True]
    setup.index.clear_faults()

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert staging_dirs(out) == []


def process_group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


# ---- layerforge.staging ---------------------------------------------------------------------------------


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def fake_staging(out: Path, stem: str, owner: str) -> Path:
    folder = out / f".{stem}{STAGING_MARK}{owner}-abcd_123"
    (folder / "layer" / "python" / "pkg").mkdir(parents=True)
    (folder / "layer" / "python" / "pkg" / "big.bin").write_bytes(b"\0" * 1000)
    return folder


def test_a_dead_build_s_staging_folder_and_partial_zip_are_swept(tmp_path: Path) -> None:
    dead = fake_staging(tmp_path, STEM, f"{host_label()}-{dead_pid()}")
    partial_zip = tmp_path / f".{STEM}.zip.k2j4h5g6.part"
    partial_manifest = tmp_path / f".{STEM}.manifest.json.q1w2e3r4.part"
    partial_lock = tmp_path / f".{STEM}.lock.json.z9x8c7v6.part"  # written before staging: never swept
    for partial in (partial_zip, partial_manifest, partial_lock):
        partial.write_bytes(b"PK")
    finished = tmp_path / f"{STEM}.zip"
    finished.write_bytes(b"PK finished")

    fresh = make_staging_dir(tmp_path, STEM)

    assert not dead.exists() and not partial_zip.exists() and not partial_manifest.exists()
    assert partial_lock.exists() and finished.exists()
    assert fresh.is_dir() and not any(fresh.iterdir())
    assert fresh.name.startswith(f".{STEM}{STAGING_MARK}{host_label()}-{os.getpid()}-")


def test_live_foreign_and_unattributable_staging_folders_are_left_alone(tmp_path: Path) -> None:
    mine = fake_staging(tmp_path, STEM, f"{host_label()}-{os.getpid()}")
    other_host = fake_staging(tmp_path, "other-python3.12-arm64", f"build-host-7-{dead_pid()}")
    old_style = tmp_path / f".legacy-python3.11-x86_64{STAGING_MARK}x1y2z3w4"  # tempfile.mkdtemp's name
    old_style.mkdir()
    # Partial zips of stems that still have a live or unattributable staging folder may be in use.
    in_use = [
        tmp_path / f".{STEM}.zip.aaaa1111.part",
        tmp_path / ".legacy-python3.11-x86_64.zip.bbbb2222.part",
        tmp_path / ".other-python3.12-arm64.zip.cccc3333.part",
    ]
    for partial in in_use:
        partial.write_bytes(b"PK")

    assert sweep_stale(tmp_path) == []
    assert mine.exists() and other_host.exists() and old_style.exists()
    assert all(p.exists() for p in in_use)


def test_a_sweep_of_a_missing_folder_does_nothing(tmp_path: Path) -> None:
    assert sweep_stale(tmp_path / "absent") == []
