"""The processed-wheel cache in real builds: tiny wheels from the local index, the real pip, real ELF files.

Every incremental build is checked against a build of the same lock and recipe with an empty cache of
its own: the zip's sha256 must be the same. Which wheels a build processed is read from its manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from layerforge.build import BuildOptions, BuildResult, build
from layerforge.cache import sha256_of
from layerforge.cache_admin import cache_info, prune
from layerforge.errors import UnsafeArchiveError
from layerforge.piece_cache import FILES, KIND, MANIFEST, TEMP_SUFFIX
from layerforge.recipe import recipe_from_mapping
from layerforge.resolve.lock import resolve
from layerforge.target import Target
from tests.layers import publish_demo_stack
from tests.support.cli_build import build_command, run_build, wait_stopped
from tests.support.events import Recorded
from tests.support.index import LocalIndex
from tests.support.wheelfactory import RawEntry

ALPHA_INIT = "from alpha.tests.helpers import make\n\nvalue = make()\n"


@pytest.fixture()
def stack(local_index: LocalIndex, tmp_path: Path) -> LocalIndex:
    """The demo stack (a native extension module), a package whose code imports a module of its tests
    folder (the guard spares it), one with notes, and one to add later."""
    publish_demo_stack(local_index, tmp_path)
    local_index.add_wheel(
        "alpha",
        "1.0",
        files={
            "alpha/__init__.py": ALPHA_INIT,
            "alpha/tests/__init__.py": "",
            "alpha/tests/helpers.py": "def make():\n    return {'a', 'b'}\n",
            "alpha/tests/test_alpha.py": "def test_it():\n    assert True\n",
            "alpha/notes.md": "# notes\n" * 40,
            "alpha/_speed.c": "/* source */\n" * 40,
        },
    )
    local_index.add_wheel(
        "beta",
        "1.0",
        files={
            "beta/__init__.py": "from beta.mod import x\n",
            "beta/mod.py": "x = 1\n",
            "beta/README.md": "b\n",
        },
    )
    local_index.add_wheel(
        "gamma", "1.0", files={"gamma/__init__.py": "y = (1, 2)\n", "gamma/util.py": "def f():\n    pass\n"}
    )
    return local_index


def options(
    index: LocalIndex, tmp_path: Path, requirements: list[str], *, cache: str, out: str, **recipe: Any
) -> BuildOptions:
    raw = {"name": "stack", "requirements": requirements, **recipe}
    return BuildOptions(
        recipe=recipe_from_mapping(raw, "stack.toml", "stack"),
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / out,
        cache_dir=tmp_path / cache,
        index_url=index.url,
    )


def processed(result: BuildResult) -> list[str]:
    return [name.split("-", 1)[0] for name in result.manifest["processed_wheels"]["processed"]]


def from_cache(result: BuildResult) -> list[str]:
    return [name.split("-", 1)[0] for name in result.manifest["processed_wheels"]["from_cache"]]


def cold(index: LocalIndex, tmp_path: Path, requirements: list[str], name: str, **recipe: Any) -> str:
    """The zip sha256 a build with an empty cache of its own makes."""
    result = build(options(index, tmp_path, requirements, cache=f"cold-{name}", out=f"cold-{name}", **recipe))
    assert from_cache(result) == []
    return str(result.manifest["sha256"])


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / KIND).glob("??/*") if p.is_dir() and not p.parent.name.startswith("."))


def entry_of(cache: Path, wheel: str) -> Path:
    """The one entry whose files belong to `wheel` (its package folder)."""
    found = [e for e in entries(cache) if (e / FILES / "python" / wheel).is_dir()]
    assert len(found) == 1, found
    return found[0]


def intact(entry: Path) -> bool:
    listed = json.loads((entry / MANIFEST).read_text())["files"]
    return all(sha256_of(entry / FILES / path) == digest for path, (_, digest) in listed.items())


AGGRESSIVE = {"strip": {"profile": "aggressive"}}


def test_a_warm_build_takes_every_piece_from_the_cache_and_makes_the_same_zip(
    stack: LocalIndex, tmp_path: Path
) -> None:
    requirements = ["demo", "alpha", "beta"]
    first = build(options(stack, tmp_path, requirements, cache="cache", out="one", **AGGRESSIVE))
    assert sorted(processed(first)) == ["alpha", "beta", "demo", "fastlib"] and from_cache(first) == []
    # The guard spared the test helper that alpha imports, and it has its bytecode like any module.
    names = set(first.manifest["removed"]["by_rule"])
    assert "safe:test-suites" in names
    assert any(s["path"] == "python/alpha/tests/helpers.py" for s in first.manifest["removed"]["spared"])
    assert first.manifest["bytecode"]["compiled"] > 0 and first.manifest["binaries"]["stripped"] >= 1
    second = build(options(stack, tmp_path, requirements, cache="cache", out="two", **AGGRESSIVE))
    assert processed(second) == [] and sorted(from_cache(second)) == ["alpha", "beta", "demo", "fastlib"]
    assert second.manifest["sha256"] == first.manifest["sha256"]
    assert second.manifest["bytecode"] == first.manifest["bytecode"]
    assert second.manifest["binaries"] == first.manifest["binaries"]
    assert second.manifest["removed"] == first.manifest["removed"]
    # Verification made the build's tree read-only, and its files are the cache's own inodes: every
    # entry must still hold exactly the bytes its manifest lists.
    assert second.verify is not None and second.verify.ran
    assert all(intact(entry) for entry in entries(tmp_path / "cache"))
    assert len(entries(tmp_path / "cache")) == 4


def test_sourceless_bytecode_from_pieces_matches_a_cold_build(stack: LocalIndex, tmp_path: Path) -> None:
    recipe = {"strip": {"bytecode": "sourceless"}}
    requirements = ["demo", "alpha"]
    build(options(stack, tmp_path, requirements, cache="cache", out="one", **recipe))
    warm = build(options(stack, tmp_path, requirements, cache="cache", out="two", **recipe))
    assert processed(warm) == []
    assert warm.manifest["sha256"] == cold(stack, tmp_path, requirements, "sourceless", **recipe)
    with zipfile.ZipFile(warm.zip_path) as archive:
        names = set(archive.namelist())
    # The spared helper too: compiled after the guard, its source dropped like every other.
    for module in ("python/alpha/__init__", "python/alpha/tests/helpers", "python/demo/core"):
        assert f"{module}.pyc" in names and f"{module}.py" not in names


def test_a_wheel_that_ships_its_own_bytecode_keeps_the_target_s(stack: LocalIndex, tmp_path: Path) -> None:
    """With no strip rules, the host bytecode a wheel ships stays where the build writes its own: the
    build's replaces it, from a piece as in a cold build."""
    stack.add_wheel(
        "shipped",
        "1.0",
        files={
            "shipped/__init__.py": "z = 3\n",
            "shipped/__pycache__/__init__.cpython-311.pyc": b"not bytecode at all",
        },
    )
    recipe = {"strip": {"profile": "none"}}
    first = build(options(stack, tmp_path, ["demo", "shipped"], cache="cache", out="one", **recipe))
    warm = build(options(stack, tmp_path, ["demo", "shipped"], cache="cache", out="two", **recipe))
    assert processed(warm) == [] and warm.manifest["sha256"] == first.manifest["sha256"]
    with zipfile.ZipFile(warm.zip_path) as archive:
        pyc = archive.read("python/shipped/__pycache__/__init__.cpython-311.pyc")
    assert pyc != b"not bytecode at all" and len(pyc) > 16


def test_one_requirement_added_processes_only_the_new_wheel(stack: LocalIndex, tmp_path: Path) -> None:
    build(options(stack, tmp_path, ["demo", "alpha", "beta"], cache="cache", out="one"))
    added = build(options(stack, tmp_path, ["demo", "alpha", "beta", "gamma"], cache="cache", out="two"))
    assert processed(added) == ["gamma"]
    assert sorted(from_cache(added)) == ["alpha", "beta", "demo", "fastlib"]
    assert added.manifest["sha256"] == cold(stack, tmp_path, ["demo", "alpha", "beta", "gamma"], "added")


def test_a_requirement_added_in_place_checks_out_the_kept_pieces_while_pip_resolves(
    stack: LocalIndex, tmp_path: Path
) -> None:
    """The same output folder: the build finds its last lock, and the head start takes its wheels' pieces
    out of the cache while pip resolves the new requirements."""
    build(options(stack, tmp_path, ["demo", "alpha", "beta"], cache="cache", out="one"))
    events = Recorded()
    added = build(
        options(stack, tmp_path, ["demo", "alpha", "beta", "gamma"], cache="cache", out="one"), events
    )
    assert "4 pieces were checked out from the cache while pip resolved" in events.notes
    assert processed(added) == ["gamma"]
    assert sorted(from_cache(added)) == ["alpha", "beta", "demo", "fastlib"]
    assert added.manifest["sha256"] == cold(stack, tmp_path, ["demo", "alpha", "beta", "gamma"], "added")
    # Nothing of the head start is left behind: the staging folder went, and the cache is as it was.
    assert [p.name for p in (tmp_path / "one").iterdir() if p.name.startswith(".")] == []
    assert all(intact(entry) for entry in entries(tmp_path / "cache"))


def test_a_damaged_cached_wheel_does_not_reach_the_layer_through_the_head_start(
    stack: LocalIndex, tmp_path: Path
) -> None:
    """A cached wheel whose bytes changed (its zip still readable, so a guess from it computes the same
    piece key) is refused by the lookup and fetched again, and the layer is the cold build's."""
    build(options(stack, tmp_path, ["demo", "alpha", "beta"], cache="cache", out="one"))
    wheel = next((tmp_path / "cache" / "wheels").rglob("alpha-*.whl"))
    expected = sha256_of(wheel)
    wheel.chmod(0o644)
    with wheel.open("ab") as damaged:  # after the zip's end: the directory still reads
        damaged.write(b"\0" * 100)
    added = build(options(stack, tmp_path, ["demo", "alpha", "beta", "gamma"], cache="cache", out="one"))
    assert sha256_of(wheel) == expected  # refused, and fetched again whole
    assert added.manifest["sha256"] == cold(stack, tmp_path, ["demo", "alpha", "beta", "gamma"], "added")


def test_a_changed_strip_rule_reuses_the_checks_that_read_nothing_it_removed(
    stack: LocalIndex, tmp_path: Path
) -> None:
    requirements = ["demo", "beta"]
    smoke = {"verify": {"smoke": "import beta, demo\nassert beta.x == 1\n"}}
    first = build(options(stack, tmp_path, requirements, cache="cache", out="one", **smoke))
    assert first.manifest["verification"]["reused"] == []
    readme = {"strip": {"packages": {"beta": {"remove": ["**/*.md"]}}}, **smoke}
    changed = build(options(stack, tmp_path, requirements, cache="cache", out="one", **readme))
    assert processed(changed) == ["beta"]
    assert changed.manifest["verified"] is True
    reused = changed.manifest["verification"]["reused"]
    assert reused and reused[-1] == "the smoke code" and reused[0].startswith("imports of ")
    assert changed.manifest["sha256"] == cold(stack, tmp_path, requirements, "readme", **readme)


def test_a_wheel_made_again_for_other_rules_takes_what_it_keeps_from_its_earlier_piece(
    stack: LocalIndex, tmp_path: Path
) -> None:
    """The files both pieces keep were stripped and compiled once: the new piece links them (the same
    inodes), checked against the earlier piece's manifest, and makes only what it must."""
    requirements = ["demo", "alpha"]
    build(options(stack, tmp_path, requirements, cache="cache", out="one"))
    before = entry_of(tmp_path / "cache", "alpha")
    notes = {"strip": {"packages": {"alpha": {"remove": ["**/*.md"]}}}}
    changed = build(options(stack, tmp_path, requirements, cache="cache", out="two", **notes))
    assert processed(changed) == ["alpha"]
    after = [
        e for e in entries(tmp_path / "cache") if (e / FILES / "python" / "alpha").is_dir() and e != before
    ]
    assert len(after) == 1
    kept = json.loads((after[0] / MANIFEST).read_text())
    pyc = kept["record"]["pycs"]["python/alpha/__init__.py"]
    for path in ("python/alpha/__init__.py", pyc):
        assert (after[0] / FILES / path).stat().st_ino == (before / FILES / path).stat().st_ino
    assert not (after[0] / FILES / "python/alpha/notes.md").exists()
    assert intact(after[0]) and intact(before)
    assert changed.manifest["sha256"] == cold(stack, tmp_path, requirements, "notes", **notes)


def test_a_damaged_earlier_piece_is_not_taken_from(stack: LocalIndex, tmp_path: Path) -> None:
    requirements = ["demo", "alpha"]
    build(options(stack, tmp_path, requirements, cache="cache", out="one"))
    before = entry_of(tmp_path / "cache", "alpha")
    target = before / FILES / "python/alpha/__init__.py"
    os.chmod(target, 0o644)
    target.write_text("value = 'planted'\n")  # the manifest still lists the real file's size and sha256
    notes = {"strip": {"packages": {"alpha": {"remove": ["**/*.md"]}}}}
    changed = build(options(stack, tmp_path, requirements, cache="cache", out="two", **notes))
    assert changed.manifest["sha256"] == cold(stack, tmp_path, requirements, "notes", **notes)


def test_a_changed_strip_rule_reprocesses_only_the_wheels_it_touches(
    stack: LocalIndex, tmp_path: Path
) -> None:
    requirements = ["demo", "alpha", "beta"]
    build(options(stack, tmp_path, requirements, cache="cache", out="one"))
    # A rule for one package touches that package only.
    one_package = {"strip": {"packages": {"beta": {"remove": ["**/*.md"]}}}}
    changed = build(options(stack, tmp_path, requirements, cache="cache", out="two", **one_package))
    assert processed(changed) == ["beta"]
    assert changed.manifest["removed"]["by_package"]["beta"] > 0
    assert changed.manifest["sha256"] == cold(stack, tmp_path, requirements, "package", **one_package)
    # A rule for every package touches only those where it changes what goes: demo's guide.md is already
    # removed by the docs rule (the first rule that matches names the removal), fastlib has no .md.
    everywhere = {"strip": {"remove": ["**/*.md"]}}
    again = build(options(stack, tmp_path, requirements, cache="cache", out="three", **everywhere))
    assert processed(again) == ["alpha", "beta"]
    assert again.manifest["sha256"] == cold(stack, tmp_path, requirements, "everywhere", **everywhere)


def flip_a_byte(entry: Path) -> None:
    target = entry / FILES / "python" / "beta" / "mod.py"
    os.chmod(target, 0o644)
    target.write_bytes(b"x = 2\n")


def truncate(entry: Path) -> None:
    target = entry / FILES / "python" / "beta" / "mod.py"
    os.chmod(target, 0o644)
    target.write_bytes(b"")


def remove_a_file(entry: Path) -> None:
    (entry / FILES / "python" / "beta" / "mod.py").unlink()


def plant_a_file(entry: Path) -> None:
    (entry / FILES / "python" / "beta" / "planted.py").write_text("import os\n")


def damage_the_manifest(entry: Path) -> None:
    (entry / MANIFEST).write_text('{"format": 1, "key": ')


def list_a_foreign_pyc(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["record"]["pycs"]["python/beta/mod.py"] = "../../../../escape.pyc"
    (entry / MANIFEST).write_text(json.dumps(manifest))


def claim_a_strip_outcome(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["record"]["strip"]["python/beta/mod.py"] = {"saved": "a lot"}
    (entry / MANIFEST).write_text(json.dumps(manifest))


def leave_out_import_words(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST).read_text())
    del manifest["record"]["imports"]["python/beta/mod.py"]  # the guard would never read it
    (entry / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage",
    [
        flip_a_byte,
        truncate,
        remove_a_file,
        plant_a_file,
        damage_the_manifest,
        list_a_foreign_pyc,
        claim_a_strip_outcome,
        leave_out_import_words,
    ],
)
def test_a_damaged_entry_is_detected_and_made_again(stack: LocalIndex, tmp_path: Path, damage: Any) -> None:
    requirements = ["demo", "beta"]
    first = build(options(stack, tmp_path, requirements, cache="cache", out="one"))
    damage(entry_of(tmp_path / "cache", "beta"))
    again = build(options(stack, tmp_path, requirements, cache="cache", out="two"))
    assert processed(again) == ["beta"] and sorted(from_cache(again)) == ["demo", "fastlib"]
    assert again.manifest["sha256"] == first.manifest["sha256"]
    assert intact(entry_of(tmp_path / "cache", "beta"))


def test_without_hard_links_the_pieces_are_copied(stack: LocalIndex, tmp_path: Path) -> None:
    """The cache on another file system than the build (a tmpfs): links fail with EXDEV, copies are made."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no writable file system here other than the test's own")
    elsewhere = Path(tempfile.mkdtemp(dir=shm, prefix="layerforge-test-pieces-"))
    try:
        requirements = ["demo", "alpha"]
        opts = options(stack, tmp_path, requirements, cache="unused", out="one")
        first = build(dataclasses.replace(opts, cache_dir=elsewhere))
        opts = options(stack, tmp_path, requirements, cache="unused", out="two")
        second = build(dataclasses.replace(opts, cache_dir=elsewhere))
        assert processed(second) == []
        assert (
            second.manifest["sha256"] == first.manifest["sha256"] == cold(stack, tmp_path, requirements, "x")
        )
        assert all(intact(entry) for entry in entries(elsewhere))
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_cache_info_and_prune_know_the_pieces(stack: LocalIndex, tmp_path: Path) -> None:
    first = build(options(stack, tmp_path, ["demo", "beta"], cache="cache", out="one"))
    info = cache_info(tmp_path / "cache")
    assert info.kinds[KIND].entries == 3 and info.kinds[KIND].bytes > 0
    result = prune(tmp_path / "cache", older_than=0, now=time.time() + 10)
    assert {e.kind for e in result.removed} >= {KIND}
    assert cache_info(tmp_path / "cache").kinds[KIND].entries == 0
    again = build(options(stack, tmp_path, ["demo", "beta"], cache="cache", out="two"))
    assert sorted(processed(again)) == ["beta", "demo", "fastlib"]
    assert again.manifest["sha256"] == first.manifest["sha256"]


def test_a_wheel_refused_while_its_piece_is_made_leaves_nothing_in_the_cache(
    stack: LocalIndex, tmp_path: Path
) -> None:
    stack.add_wheel(
        "liar", "1.0", files={"liar/__init__.py": ""}, raw_entries=[RawEntry("liar/x.py", "x = 1\n")]
    )
    with pytest.raises(UnsafeArchiveError, match="not listed in RECORD"):
        build(options(stack, tmp_path, ["demo", "liar"], cache="cache", out="one"))
    assert piece_temporaries(tmp_path / "cache") == []
    assert not [e for e in entries(tmp_path / "cache") if (e / FILES / "python" / "liar").exists()]


# ---------------------------------------------------------------------------------------------------
# A build killed with SIGKILL while it writes an entry

BLOB_BYTES = 8 * 1024 * 1024


def piece_temporaries(cache: Path) -> list[Path]:
    return list((cache / KIND).glob(f".tmp-*{TEMP_SUFFIX}"))


def bulk_recipe(stack: LocalIndex, tmp_path: Path) -> tuple[Path, Path]:
    """Big incompressible files and many modules: making or checking out this piece takes long enough
    to be caught. The recipe and its lock."""
    stack.add_wheel(
        "bulk",
        "1.0",
        files={
            "bulk/__init__.py": "",
            **{f"bulk/m{i}.py": f"def f{i}():\n    return {i}\n" * 50 for i in range(200)},
            **{f"bulk/blob{i}.bin": os.urandom(BLOB_BYTES) for i in range(4)},
        },
    )
    lock = resolve("bulk", ["demo", "bulk"], Target("python3.11", "x86_64"), index_url=stack.url)
    lock_path = tmp_path / "bulk.lock.json"
    lock.write(lock_path)
    recipe = tmp_path / "bulk.toml"
    recipe.write_text('name = "bulk"\nrequirements = ["demo", "bulk"]\n', encoding="utf-8")
    return recipe, lock_path


def test_a_build_killed_while_writing_an_entry_is_followed_by_a_correct_build(
    stack: LocalIndex, tmp_path: Path
) -> None:
    recipe, lock_path = bulk_recipe(stack, tmp_path)
    cache = tmp_path / "cache"
    victim = subprocess.Popen(
        build_command(recipe, lock_path, stack, cache, tmp_path / "killed"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        left = kill_while_making_a_piece(victim, cache)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=30)
    assert left.is_dir() and not (left / MANIFEST).exists()
    installed_before = entries(cache)
    assert all(intact(entry) for entry in installed_before)

    after = run_build(build_command(recipe, lock_path, stack, cache, tmp_path / "after"))
    reference = run_build(build_command(recipe, lock_path, stack, tmp_path / "fresh", tmp_path / "reference"))
    assert after["sha256"] == reference["sha256"]
    # What the killed build left half made was not an entry, and is not read: the wheels it was making
    # were processed again.
    made_again = {name.split("-", 1)[0] for name in after["processed_wheels"]["processed"]}
    assert "bulk" in made_again
    assert all(intact(entry) for entry in entries(cache))
    # `cache info` counts the dead build's folder as an unfinished write, not as an entry.
    info = cache_info(cache)
    assert info.kinds[KIND].entries == len(entries(cache)) and left.is_dir()
    assert info.temporary_bytes >= sum(p.stat().st_size for p in left.rglob("*") if p.is_file())
    # A prune sweeps the dead build's folder; the cache then holds only whole entries.
    prune(cache)
    assert not left.exists() and piece_temporaries(cache) == []
    assert len(entries(cache)) == 3


def kill_while_making_a_piece(process: subprocess.Popen[str], cache: Path) -> Path:
    """Stop the process while a temporary piece folder exists, then SIGKILL it; the folder it left."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the build ended before it was caught making a piece")
        seen = [p for p in piece_temporaries(cache) if (p / FILES / "python" / "bulk").is_dir()]
        if seen:
            os.kill(process.pid, signal.SIGSTOP)
            wait_stopped(process.pid)
            still = [p for p in seen if p.exists()]
            if still:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return still[0]
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.001)
    pytest.fail("timed out waiting for the build to make a piece")


def test_pruning_the_pieces_over_and_over_during_a_warm_build_leaves_it_correct(
    stack: LocalIndex, tmp_path: Path
) -> None:
    recipe, lock_path = bulk_recipe(stack, tmp_path)
    cache = tmp_path / "cache"
    reference = run_build(build_command(recipe, lock_path, stack, cache, tmp_path / "first"))
    assert len(entries(cache)) == 3
    build = subprocess.Popen(
        build_command(recipe, lock_path, stack, cache, tmp_path / "pruned"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    removed = 0
    while build.poll() is None:
        # Every entry of every kind goes at once; the pieces taken are counted.
        taken = prune(cache, max_bytes=0).removed
        removed += sum(1 for entry in taken if entry.kind == KIND)
        time.sleep(0.002)
    stdout, stderr = build.communicate()
    assert build.returncode == 0, stderr
    assert json.loads(stdout)["sha256"] == reference["sha256"]
    assert removed > 0
    assert all(intact(entry) for entry in entries(cache))
