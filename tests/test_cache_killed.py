"""A build killed with SIGKILL in the middle of writing a verification proof or an audit reading (issue
17's must-show for every cache kind: pieces and members are in tests/test_piece_cache.py and
tests/test_cache_builds.py).

Such an entry is a few kilobytes, written in microseconds: no poll from outside catches it mid-write.
So the build runs under a wrapper that lets the real writer (member_cache.write_entry, which the
member, proof and audit caches use) start its temporary file, lets half of the entry reach it, and
then sends the process SIGKILL from inside. Everything else is an ordinary `python -m layerforge build`
with its verification on, against the local index.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from layerforge.audit_cache import KIND as AUDITS
from layerforge.audit_cache import AuditCache
from layerforge.proof_cache import KIND as PROOFS
from layerforge.resolve.lock import resolve
from layerforge.runners.interpreters import find_interpreter
from layerforge.target import Target
from tests.layers import publish_demo_stack
from tests.support.cli_build import build_command
from tests.support.index import LocalIndex

TARGET = Target("python3.11", "x86_64")

# Runs `layerforge build ARGS` with one cache kind's file writes cut short: the first write of an entry
# under the folder KILL_IN names (`/proofs/`, `/audits/`) puts half its bytes into the temporary file,
# then the process kills itself.
KILL_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import layerforge.member_cache as member_cache

    real_fdopen = os.fdopen

    class HalfThenKilled:
        def __init__(self, sink):
            self.sink = sink
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.sink.close()
        def write(self, data):
            self.sink.write(data[: max(1, len(data) // 2)])
            self.sink.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)
        def fdopen(self, fd, *args, **kwargs):
            sink = real_fdopen(fd, *args, **kwargs)
            if os.environ["KILL_IN"] in os.readlink(f"/proc/self/fd/{fd}"):
                return HalfThenKilled(sink)
            return sink

    member_cache.os = Os()
    from layerforge.cli import main
    sys.argv = ["layerforge", *sys.argv[1:]]
    main()
    """
)


def verified_build(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    manifest: dict[str, Any] = json.loads(done.stdout)
    assert manifest["verified"] is True
    return manifest


def demo_builds(local_index: LocalIndex, tmp_path: Path) -> tuple[Path, Callable[[str], list[str]]]:
    """The cache folder, and the verified build command of the demo stack into a named output folder."""
    if find_interpreter(TARGET) is None:
        pytest.skip("no python3.11 here to verify with")
    publish_demo_stack(local_index, tmp_path)
    recipe = tmp_path / "demo.toml"
    recipe.write_text('name = "demo"\nrequirements = ["demo"]\n', encoding="utf-8")
    lock = tmp_path / "demo.lock.json"
    resolve("demo", ["demo"], TARGET, index_url=local_index.url).write(lock)
    cache = tmp_path / "cache"

    def command(out: str) -> list[str]:
        arguments = build_command(recipe, lock, local_index, cache, tmp_path / out)
        return [a for a in arguments if a != "--no-verify"]

    return cache, command


def killed_mid_write(kind: str, cache: Path, command: list[str]) -> Path:
    """Run the build until its first write under `kind` is half done; the temporary file it leaves.
    Nothing is left in the system's temporary folder: what the build had in hand stays in its staging
    folder, in the output folder, for the next build there to sweep."""
    system_tmp = cache.parent / f"tmp-{kind}"
    system_tmp.mkdir()
    victim = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, *command[3:]],
        env={**os.environ, "KILL_IN": f"/{kind}/", "TMPDIR": str(system_tmp)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    left = [p for p in (cache / kind).rglob("*") if p.is_file()]
    assert len(left) == 1 and left[0].name.endswith(".part"), left  # half an entry, under a temporary name
    assert left[0].stat().st_size > 0
    assert list(system_tmp.iterdir()) == []
    return left[0]


@dataclass(frozen=True)
class Killed:
    cache: Path
    command: Callable[[str], list[str]]
    reference: dict[str, Any]  # the manifest of a whole build
    filed: list[Path]  # the entries of the kind that the reference filed, removed before the kill
    half: Path  # what the killed build left of its first entry of the kind


def killed_after_a_reference(kind: str, local_index: LocalIndex, tmp_path: Path) -> Killed:
    """A whole reference build; then, from a cache without its entries of `kind`, a build killed halfway
    through writing the first of them."""
    cache, command = demo_builds(local_index, tmp_path)
    reference = verified_build(command("reference"))
    filed = sorted(p for p in (cache / kind).rglob("*") if p.is_file())
    for entry in filed:
        entry.unlink()
    half = killed_mid_write(kind, cache, command("killed"))
    return Killed(cache, command, reference, filed, half)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd; the watch needs inotify")
def test_a_build_killed_mid_proof_write_leaves_nothing_a_later_build_reuses(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    killed = killed_after_a_reference(PROOFS, local_index, tmp_path)
    command, reference = killed.command, killed.reference

    # The next build runs the check again: nothing half written is taken for a proof.
    rerun = verified_build(command("rerun"))
    assert rerun["verification"]["reused"] == []
    assert rerun["sha256"] == reference["sha256"]
    # And files whole proofs, which the build after it takes.
    again = verified_build(command("again"))
    assert again["verification"]["reused"] == ["imports of demo, fastlib"]  # the recipe has no smoke code
    assert again["sha256"] == reference["sha256"]
    assert os.path.exists(again["zip"])


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")
def test_a_build_killed_mid_audit_reading_write_leaves_nothing_a_later_build_reuses(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    killed = killed_after_a_reference(AUDITS, local_index, tmp_path)
    cache, command, reference = killed.cache, killed.command, killed.reference
    (whole_before,) = killed.filed  # fastlib's extension module

    # The next build reads the object again (a miss: the half entry is under no key) and files it whole.
    rerun = verified_build(command("rerun"))
    assert rerun["audit"] == reference["audit"]
    assert rerun["sha256"] == reference["sha256"]
    whole = sorted(p for p in (cache / AUDITS).rglob("*") if p.is_file())
    assert whole == sorted([whole_before, killed.half])
    assert AuditCache(cache).get(whole_before.name) is not None
