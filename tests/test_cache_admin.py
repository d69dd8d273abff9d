"""`cache info` and `cache prune` over a real cache root: wheels (WheelCache) and members (MemberCache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from layerforge.cache import WheelCache
from layerforge.cache_admin import cache_info, parse_age, prune
from layerforge.cli import main
from layerforge.errors import InputError
from layerforge.member_cache import TEMP_PREFIX, TEMP_SUFFIX, MemberCache
from layerforge.staging import host_label

DAY = 86400.0
NOW = time.time() - 365 * DAY  # a year ago: a use today is later than every entry made here


def add_wheel(root: Path, name: str, size: int, used: float) -> Path:
    source = root.parent / "made" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(os.urandom(size))
    _, path = WheelCache(root).store(source)
    os.utime(path, (used, used))
    return path


def add_member(root: Path, key: str, size: int, used: float) -> Path:
    cache = MemberCache(root)
    cache.put(key, os.urandom(size))
    path = cache.path_for(key)
    os.utime(path, (used, used))
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_info_gives_entries_and_bytes_by_kind(root: Path) -> None:
    wheel = add_wheel(root, "a-1.0-py3-none-any.whl", 5000, NOW)
    add_wheel(root, "b-1.0-py3-none-any.whl", 3000, NOW)
    member = add_member(root, "ab" * 32, 700, NOW)
    info = cache_info(root)
    assert info.location == root
    assert info.kinds["wheels"].entries == 2
    assert info.kinds["wheels"].bytes == 8000 == wheel.stat().st_size + 3000
    assert info.kinds["members"].entries == 1
    assert info.kinds["members"].bytes == member.stat().st_size > 700  # the header and digest count
    assert info.total_bytes == 8000 + member.stat().st_size


def test_prune_by_age_removes_only_what_was_not_used_since(root: Path) -> None:
    old_wheel = add_wheel(root, "old-1.0-py3-none-any.whl", 1000, NOW - 40 * DAY)
    new_wheel = add_wheel(root, "new-1.0-py3-none-any.whl", 1000, NOW - 2 * DAY)
    old_member = add_member(root, "01" * 32, 100, NOW - 31 * DAY)
    new_member = add_member(root, "02" * 32, 100, NOW - 29 * DAY)

    dry = prune(root, older_than=30 * DAY, dry_run=True, now=NOW)
    assert sorted(e.path for e in dry.removed) == sorted([old_wheel.parent, old_member])
    assert old_wheel.exists() and old_member.exists()

    done = prune(root, older_than=30 * DAY, now=NOW)
    assert [e.path for e in done.removed] == [e.path for e in dry.removed]
    assert not old_wheel.exists() and not old_member.exists()
    assert new_wheel.exists() and new_member.exists()
    assert (old_wheel.parent / ".lock").exists()  # a lock file is never removed (cache_admin's notes)
    assert cache_info(root).kinds["wheels"].entries == 1


def test_prune_to_a_size_budget_removes_the_least_recently_used_first(root: Path) -> None:
    paths = [add_member(root, f"{i:02x}" * 32, 1000, NOW - (10 - i) * DAY) for i in range(5)]
    sizes = [p.stat().st_size for p in paths]
    budget = sizes[3] + sizes[4]  # room for the two most recently used
    result = prune(root, max_bytes=budget, now=NOW)
    assert [e.path for e in result.removed] == paths[:3]
    assert [p.exists() for p in paths] == [False, False, False, True, True]
    assert result.kept_bytes == budget
    # A use refreshes an entry: the oldest, once read, outlives the one read before it.
    os.utime(paths[3], (NOW - 9 * DAY, NOW - 9 * DAY))
    assert MemberCache(root).get(paths[3].name) is not None
    second = prune(root, max_bytes=sizes[3], now=time.time())
    assert [e.path for e in second.removed] == [paths[4]]


def test_a_wheel_whose_lock_a_build_holds_is_left_alone(root: Path) -> None:
    wheel = add_wheel(root, "busy-1.0-py3-none-any.whl", 1000, NOW - 90 * DAY)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
            str(wheel.parent / ".lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = prune(root, max_bytes=0, now=NOW)
        assert [e.path for e in result.busy] == [wheel.parent] and result.removed == []
        assert wheel.exists()
    finally:
        holder.communicate("")
    assert [e.path for e in prune(root, max_bytes=0, now=NOW).removed] == [wheel.parent]
    assert not wheel.exists()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_temporary_files_of_dead_writers_or_a_day_old_are_swept(root: Path) -> None:
    add_member(root, "aa" * 32, 10, NOW)
    shard = root / "members" / "aa"
    dead = shard / f"{TEMP_PREFIX}{host_label()}-{dead_pid()}-abcdefgh{TEMP_SUFFIX}"
    live = shard / f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-abcdefgh{TEMP_SUFFIX}"
    foreign_new = shard / f"{TEMP_PREFIX}elsewhere-1-abcdefgh{TEMP_SUFFIX}"
    foreign_old = shard / f"{TEMP_PREFIX}elsewhere-2-abcdefgh{TEMP_SUFFIX}"
    for path in (dead, live, foreign_new, foreign_old):
        path.write_bytes(b"half")
    os.utime(foreign_old, (NOW - 2 * DAY, NOW - 2 * DAY))
    os.utime(foreign_new, (NOW - 3600, NOW - 3600))
    assert cache_info(root).temporary_bytes == 16
    result = prune(root, older_than=365 * DAY, now=NOW)
    assert sorted(result.temporaries) == sorted([dead, foreign_old])
    assert not dead.exists() and not foreign_old.exists()
    assert live.exists() and foreign_new.exists()
    assert result.removed == []


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * DAY), ("12h", 43200), ("90m", 5400), ("2w", 14 * DAY)]
)
def test_ages(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "-1d", "3x", "1.2.3h"])
def test_bad_ages_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_age(text)


def test_the_commands(root: Path) -> None:
    add_wheel(root, "a-1.0-py3-none-any.whl", 4000, time.time() - 40 * DAY)
    member = add_member(root, "cd" * 32, 100, time.time())
    runner = CliRunner()
    info = runner.invoke(main, ["cache", "info", "--cache-dir", str(root), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["kinds"] == {
        "wheels": {"entries": 1, "bytes": 4000},
        "members": {"entries": 1, "bytes": member.stat().st_size},
        "pieces": {"entries": 0, "bytes": 0},
        "proofs": {"entries": 0, "bytes": 0},
        "audits": {"entries": 0, "bytes": 0},
    }
    dry = runner.invoke(
        main, ["cache", "prune", "--cache-dir", str(root), "--older-than", "30d", "--dry-run", "--json"]
    )
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["removed_bytes"] == 4000
    assert cache_info(root).kinds["wheels"].entries == 1
    done = runner.invoke(main, ["cache", "prune", "--cache-dir", str(root), "--max-size", "1KB"])
    assert done.exit_code == 0, done.output
    assert "removed 1 entries" in done.output
    assert cache_info(root).kinds["wheels"].entries == 0 and member.exists()
    assert runner.invoke(main, ["cache", "prune", "--cache-dir", str(root)]).exit_code == 2
    assert (
        runner.invoke(main, ["cache", "prune", "--cache-dir", str(root), "--max-size", "2M"]).exit_code == 2
    )
