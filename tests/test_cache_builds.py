"""Builds and the cache: a build killed with SIGKILL while it writes the compressed-member cache, and
`cache prune` running over and over while a build runs. Either way, the next build's zip, or the build's
own, is byte for byte the one a build with an empty cache writes.

Real processes (`python -m layerforge build`) against the local index. The layer carries a few large
incompressible files, so that writing one cache entry takes long enough to be caught: the test freezes
the build (SIGSTOP) the moment it sees a temporary entry file, checks the file is still there (the
process is stopped mid-write), and kills it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import deflate
import pytest

from layerforge.cache_admin import prune
from layerforge.member_cache import KIND, TEMP_PREFIX, TEMP_SUFFIX, MemberCache
from layerforge.proof_cache import KIND as PROOFS
from layerforge.resolve.lock import resolve
from layerforge.runners.interpreters import find_interpreter
from layerforge.target import Target
from layerforge.tree.archive import CACHE_FLOOR, DEFLATE_SETTINGS, member_key
from layerforge.tree.member_packs import group_of, pack_key, unpack
from layerforge.verify.proofs import ProofStore
from tests.layers import publish_demo_stack
from tests.support.cli_build import build_command, run_build, stop_group
from tests.support.index import LocalIndex

BLOBS = 6
BLOB_BYTES = 6 * 1024 * 1024


def temporaries(cache: Path) -> list[Path]:
    return list((cache / KIND).glob(f"*/{TEMP_PREFIX}*{TEMP_SUFFIX}"))


def kill_while_writing_the_cache(process: subprocess.Popen[str], cache: Path) -> Path:
    """Stop the process while a temporary cache entry exists, then SIGKILL it; the file it left."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the build ended before it was caught writing the cache")
        seen = temporaries(cache)
        if seen:
            # The whole group: the zip, and so its cache entries, are written by a child of the build.
            stop_group(process.pid)
            still = [p for p in seen if p.exists()]
            if still:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return still[0]
            os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.0005)
    pytest.fail("timed out waiting for the build to write the cache")


@dataclass(frozen=True)
class Bulk:
    index: LocalIndex
    recipe: Path
    lock: Path
    tmp: Path

    def command(self, cache: Path, out: Path) -> list[str]:
        return build_command(self.recipe, self.lock, self.index, cache, out)

    def reference(self) -> dict[str, object]:
        """A build with an empty cache of its own."""
        return run_build(self.command(self.tmp / "fresh-cache", self.tmp / "reference"))


@pytest.fixture()
def bulk(local_index: LocalIndex, tmp_path: Path) -> Bulk:
    publish_demo_stack(local_index, tmp_path)
    local_index.add_wheel(
        "bulk",
        "1.0",
        files={
            "bulk/__init__.py": "",
            **{f"bulk/data/blob{i}.bin": os.urandom(BLOB_BYTES) for i in range(BLOBS)},
        },
    )
    lock = resolve("bulk", ["demo", "bulk"], Target("python3.11", "x86_64"), index_url=local_index.url)
    lock_path = tmp_path / "bulk.lock.json"
    lock.write(lock_path)
    recipe = tmp_path / "bulk.toml"
    recipe.write_text('name = "bulk"\nrequirements = ["demo", "bulk"]\n', encoding="utf-8")
    return Bulk(local_index, recipe, lock_path, tmp_path)


def test_a_build_killed_mid_cache_write_is_followed_by_a_correct_build(bulk: Bulk, tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    victim = subprocess.Popen(
        bulk.command(cache, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        partial = kill_while_writing_the_cache(victim, cache)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert partial.exists()  # nothing ran after SIGKILL: the half-written file is left as it was

    rerun = run_build(bulk.command(cache, out))
    reference = bulk.reference()
    assert rerun["sha256"] == reference["sha256"]
    assert Path(str(rerun["zip"])).read_bytes() == Path(str(reference["zip"])).read_bytes()

    # Every entry the cache holds now is whole, and is the deflate stream of the member it is filed for,
    # or the pack of the small members of one folder group, each stream inflating to its member.
    with zipfile.ZipFile(str(rerun["zip"])) as archive:
        contents = {name: archive.read(name) for name in sorted(archive.namelist())}
    members = {member_key(data): [data] for data in contents.values() if len(data) >= CACHE_FLOOR}
    small: dict[str, list[bytes]] = {}
    for name, data in contents.items():
        if len(data) < CACHE_FLOOR:
            small.setdefault(group_of(name), []).append(data)
    for group in small.values():
        members[pack_key(DEFLATE_SETTINGS, [hashlib.sha256(data).hexdigest() for data in group])] = group
    store = MemberCache(cache)
    filed = [p for p in (cache / KIND).glob("*/*") if not p.name.startswith(".")]
    assert {p.name for p in filed} == set(members)
    for path in filed:
        body = store.get(path.name)
        assert body is not None, f"damaged entry {path}"
        expected = members[path.name]
        streams = (
            [body] if len(expected) == 1 and len(expected[0]) >= CACHE_FLOOR else unpack(body, len(expected))
        )
        assert streams is not None, f"a pack of another shape: {path}"
        for stream, data in zip(streams, expected, strict=True):
            assert bytes(deflate.deflate_decompress(stream, len(data))) == data


def test_prune_over_and_over_during_builds_leaves_each_build_correct(bulk: Bulk, tmp_path: Path) -> None:
    """`cache prune --max-size 0` in a loop, from the first wheel fetched to the end of a cold build and
    of a warm one: every entry it can take goes at once, while the builds read and write the cache."""
    reference = bulk.reference()
    cache = tmp_path / "cache"
    for run in ("cold", "warm"):
        build = subprocess.Popen(
            bulk.command(cache, tmp_path / run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        removed = 0
        while build.poll() is None:
            removed += len(prune(cache, max_bytes=0).removed)
            time.sleep(0.002)  # leave the build most of the shared cores
        stdout, stderr = build.communicate()
        assert build.returncode == 0, stderr
        assert json.loads(stdout)["sha256"] == reference["sha256"]
        assert removed > 0  # the prunes did take entries while the build ran
    # What the prunes left is whole.
    store = MemberCache(cache)
    for path in (cache / KIND).glob("*/*"):
        assert path.name.startswith(".") or store.get(path.name) is not None


def test_prune_over_and_over_during_verified_builds_leaves_each_build_correct(
    bulk: Bulk, tmp_path: Path
) -> None:
    """The same with verification on, so that the proofs are read and filed while the prunes run: each
    build still verifies and writes the reference's zip, and every proof left is whole."""
    if find_interpreter(Target("python3.11", "x86_64")) is None:
        pytest.skip("no python3.11 here to verify with")
    reference = bulk.reference()
    cache = tmp_path / "cache"
    for run in ("cold", "warm", "again"):
        command = [a for a in bulk.command(cache, tmp_path / run) if a != "--no-verify"]
        build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        removed = 0
        while build.poll() is None:
            removed += len(prune(cache, max_bytes=0).removed)
            time.sleep(0.002)
        stdout, stderr = build.communicate()
        assert build.returncode == 0, stderr
        manifest = json.loads(stdout)
        assert manifest["verified"] is True and manifest["sha256"] == reference["sha256"]
        assert removed > 0
    # What the prunes left is whole: every proof entry reads back as a proof (a damaged one would not).
    store = ProofStore(cache)
    for context in (cache / PROOFS).iterdir():
        present = {p for p in context.iterdir() if not p.name.startswith(".")}
        assert {path for path, _ in store.candidates(context.name)} == present
