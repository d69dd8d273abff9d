"""The zip writer with the compressed-member cache: the bytes never depend on the cache.

Cold and warm writes of the same tree give the same sha256 as a write without any cache; a damaged
entry (a flipped byte, a truncation, a stream filed under another member's key) is detected, deflated
again and rewritten, never copied into the zip. Small members are filed a folder group at a time
(member_packs.py), and a pack is checked the same way.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import deflate
import pytest

from layerforge.cache import known_sha256, note_sha256, sha256_of
from layerforge.member_cache import TEMP_PREFIX, MemberCache
from layerforge.tree.archive import (
    CACHE_FLOOR,
    DEFLATE_SETTINGS,
    ZipResult,
    member_key,
    prepare_member,
    write_zip,
)
from layerforge.tree.member_packs import group_of, pack, pack_key


def make_tree(root: Path) -> dict[str, bytes]:
    """Members the cache takes (CACHE_FLOOR and over), and SMALL ones it leaves out."""
    contents = {
        "python/pkg/__init__.py": b"import os\n" * (CACHE_FLOOR // 10 + 1),
        "python/pkg/data.bin": os.urandom(70_000) + b"abc" * 50_000,
        "python/pkg/mod.py": b"def f():\n    return 1\n" * (CACHE_FLOOR // 20),
        **SMALL,
    }
    for name, data in contents.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return contents


SMALL = {"python/pkg/empty.py": b"", "python/other/x.txt": b"x", "python/other/y.py": b"y = 2\n" * 100}


def cached(tree: dict[str, bytes]) -> int:
    """How many members of the tree have an entry of their own."""
    return sum(1 for data in tree.values() if len(data) >= CACHE_FLOOR)


def groups(tree: dict[str, bytes]) -> dict[str, list[str]]:
    """The small members by pack, each in the zip's order."""
    found: dict[str, list[str]] = {}
    for name in sorted(tree):
        if len(tree[name]) < CACHE_FLOOR:
            found.setdefault(group_of(name), []).append(name)
    return found


def pack_path(cache: MemberCache, tree: dict[str, bytes], group: str) -> Path:
    digests = [hashlib.sha256(tree[name]).hexdigest() for name in groups(tree)[group]]
    return cache.path_for(pack_key(DEFLATE_SETTINGS, digests))


def entries(cache: MemberCache) -> list[Path]:
    return sorted(p for p in cache.folder.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, bytes]:
    return make_tree(tmp_path / "tree")


def write(tmp_path: Path, name: str, cache: MemberCache | None) -> ZipResult:
    return write_zip(tmp_path / "tree", tmp_path / f"{name}.zip", cache=cache, jobs=2)


def test_cold_and_warm_cache_give_the_bytes_of_a_write_without_cache(
    tmp_path: Path, tree: dict[str, bytes]
) -> None:
    cache = MemberCache(tmp_path / "cache")
    plain = write(tmp_path, "plain", None)
    cold = write(tmp_path, "cold", cache)
    assert cold.cached_members == 0
    assert cached(tree) == len(tree) - len(SMALL)
    assert len(groups(tree)) == 2  # python/pkg's empty.py; python/other's two
    assert len(entries(cache)) == cached(tree) + len(groups(tree))
    warm = write(tmp_path, "warm", cache)
    assert warm.cached_members == len(tree)
    assert plain.sha256 == cold.sha256 == warm.sha256
    with zipfile.ZipFile(warm.path) as archive:
        assert archive.testzip() is None
        assert {name: archive.read(name) for name in archive.namelist()} == tree


def test_one_changed_member_is_the_only_one_deflated_again(tmp_path: Path, tree: dict[str, bytes]) -> None:
    cache = MemberCache(tmp_path / "cache")
    write(tmp_path, "cold", cache)
    (tmp_path / "tree" / "python" / "pkg" / "mod.py").write_bytes(b"changed = True\n" * 40)
    warm = write(tmp_path, "warm", cache)
    # Now small, it joins python/pkg's pack, whose other member (empty.py) is deflated with it.
    assert warm.cached_members == len(tree) - 2
    assert warm.sha256 == write(tmp_path, "plain", None).sha256


def test_one_changed_small_member_deflates_its_group_again_only(
    tmp_path: Path, tree: dict[str, bytes]
) -> None:
    cache = MemberCache(tmp_path / "cache")
    write(tmp_path, "cold", cache)
    (tmp_path / "tree" / "python" / "other" / "x.txt").write_bytes(b"z")
    warm = write(tmp_path, "warm", cache)
    assert warm.cached_members == len(tree) - len(groups(tree)["python/other"])
    assert warm.sha256 == write(tmp_path, "plain", None).sha256
    assert write(tmp_path, "again", cache).cached_members == len(tree)


def damage_flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def damage_truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [damage_flip, damage_truncate, damage_empty])
@pytest.mark.parametrize("entry", ["python/pkg/data.bin", "the pack of python/other"])
def test_a_damaged_entry_is_deflated_again_never_copied(
    tmp_path: Path, tree: dict[str, bytes], damage: object, entry: str
) -> None:
    """A large member's own entry, or the pack of a group of small ones (all of whose members are
    deflated again)."""
    cache = MemberCache(tmp_path / "cache")
    cold = write(tmp_path, "cold", cache)
    if entry in tree:
        victim, lost = cache.path_for(member_key(tree[entry])), 1
    else:
        victim, lost = pack_path(cache, tree, "python/other"), len(groups(tree)["python/other"])
    assert victim.is_file()
    assert callable(damage)
    damage(victim)
    warm = write(tmp_path, "warm", cache)
    assert warm.cached_members == len(tree) - lost
    assert warm.sha256 == cold.sha256
    # Rewritten whole: the next write copies it again.
    assert write(tmp_path, "again", cache).cached_members == len(tree)


@pytest.mark.parametrize("planted", ["too few streams", "lengths that do not add up", "other bytes"])
def test_a_pack_of_another_shape_or_with_other_streams_is_not_copied(
    tmp_path: Path, tree: dict[str, bytes], planted: str
) -> None:
    """A whole entry, as far as the digest sees, planted under a group's key."""
    cache = MemberCache(tmp_path / "cache")
    cold = write(tmp_path, "cold", cache)
    key = pack_path(cache, tree, "python/other").name
    evil = [bytes(deflate.deflate_compress(b"import os; os.system('evil')\n", 6))] * 2
    body = {
        "too few streams": pack(evil[:1]),
        "lengths that do not add up": pack(evil) + b"extra",
        "other bytes": pack(evil),
    }[planted]
    cache.put(key, body)
    assert cache.get(key) == body
    warm = write(tmp_path, "warm", cache)
    assert warm.cached_members == len(tree) - 2
    assert warm.sha256 == cold.sha256
    with zipfile.ZipFile(warm.path) as archive:
        assert archive.read("python/other/y.py") == tree["python/other/y.py"]
    assert cache.get(key) != body  # replaced by the true pack


def test_a_stream_filed_under_another_member_s_key_is_refused(tmp_path: Path, tree: dict[str, bytes]) -> None:
    """A whole, well-formed entry in the wrong place (a copy, a rename) would put one member's bytes in
    another's place: the digest covers the key, so it is refused."""
    cache = MemberCache(tmp_path / "cache")
    cold = write(tmp_path, "cold", cache)
    source = cache.path_for(member_key(tree["python/pkg/mod.py"]))
    target = cache.path_for(member_key(tree["python/pkg/__init__.py"]))
    target.write_bytes(source.read_bytes())
    warm = write(tmp_path, "warm", cache)
    assert warm.cached_members == len(tree) - 1
    assert warm.sha256 == cold.sha256


def test_a_half_written_temporary_file_is_never_read(tmp_path: Path, tree: dict[str, bytes]) -> None:
    """What a writer killed mid-write leaves (`.tmp-….part` beside where the entry would go) is no entry."""
    cache = MemberCache(tmp_path / "cache")
    key = member_key(tree["python/pkg/data.bin"])
    stream = bytes(deflate.deflate_compress(tree["python/pkg/data.bin"], 6))
    cache.put(key, stream)
    whole = cache.path_for(key).read_bytes()
    cache.path_for(key).unlink()
    (cache.path_for(key).parent / f"{TEMP_PREFIX}host-1-abcdefgh.part").write_bytes(whole[: len(whole) // 2])
    assert cache.get(key) is None
    warm = write(tmp_path, "warm", cache)
    assert warm.cached_members == 0
    assert warm.sha256 == write(tmp_path, "plain", None).sha256


def test_a_cache_that_cannot_be_written_costs_only_speed(tmp_path: Path, tree: dict[str, bytes]) -> None:
    blocked = tmp_path / "cache"
    blocked.mkdir()
    (blocked / "members").write_text("a file where the folder should be")
    result = write(tmp_path, "blocked", MemberCache(blocked))
    assert result.cached_members == 0
    assert result.sha256 == write(tmp_path, "plain", None).sha256
    assert not [p for p in blocked.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_a_planted_entry_with_a_valid_digest_cannot_put_other_bytes_in_the_zip(
    tmp_path: Path, tree: dict[str, bytes]
) -> None:
    """Someone who can write the cache (a cache restored in CI is input too) can file a well-formed entry:
    the writer copies a stream only when it inflates to exactly the member."""
    cache = MemberCache(tmp_path / "cache")
    cold = write(tmp_path, "cold", cache)
    planted = bytes(deflate.deflate_compress(b"import os; os.system('evil')\n", 6))
    cache.put(member_key(tree["python/pkg/mod.py"]), planted)
    assert cache.get(member_key(tree["python/pkg/mod.py"])) == planted  # whole, as far as the digest sees
    warm = write(tmp_path, "warm", cache)
    assert warm.cached_members == len(tree) - 1
    assert warm.sha256 == cold.sha256
    with zipfile.ZipFile(warm.path) as archive:
        assert archive.read("python/pkg/mod.py") == tree["python/pkg/mod.py"]
    assert cache.get(member_key(tree["python/pkg/mod.py"])) != planted  # replaced by the true stream


def test_proven_digests_make_the_keys_and_a_stale_one_is_not_used(
    tmp_path: Path, tree: dict[str, bytes]
) -> None:
    """A digest a checkout proved names the member's entry without hashing it again, while the file
    keeps its identity; one whose file changed since is ignored, and the bytes never depend on either."""
    root = tmp_path / "tree"
    cache = MemberCache(tmp_path / "cache")
    plain = write_zip(root, tmp_path / "plain.zip", cache=cache)
    for name in tree:
        note_sha256(os.stat(root / name), sha256_of(root / name))
    warm = write_zip(root, tmp_path / "warm.zip", cache=cache)
    assert warm.sha256 == plain.sha256 and warm.cached_members == len(tree)
    # A wrong digest while the identity holds can only miss (the key names no entry): the member is
    # deflated from its bytes. A digest noted before the file was rewritten is not used at all.
    for name in tree:
        note_sha256(os.stat(root / name), "0" * 64)
    missed = write_zip(root, tmp_path / "missed.zip", cache=cache)
    assert missed.sha256 == plain.sha256 and missed.cached_members == 0
    target = root / "python/pkg/data.bin"
    target.write_bytes(target.read_bytes()[::-1])  # the same size, other bytes, a new mtime
    assert known_sha256(target.stat()) is None
    rewritten = write_zip(root, tmp_path / "rewritten.zip", cache=cache)
    assert rewritten.sha256 == write_zip(root, tmp_path / "fresh.zip").sha256


def test_streams_proved_ahead_by_digest_are_copied_without_the_cache(
    tmp_path: Path, tree: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The zip child proves a large member's cached stream from its digest and size while the tree is
    still being made; the zip copies it even if the entry is gone by then, and only if it inflates to
    exactly that digest: a planted stream, a wrong size or no entry proves nothing. A member proved so
    is not read: its size and CRC-32 came with the proof."""
    root = tmp_path / "tree"
    cache = MemberCache(tmp_path / "cache")
    plain = write(tmp_path, "plain", cache)
    large = {name: data for name, data in tree.items() if len(data) >= CACHE_FLOOR}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in large.items()}
    for name in large:
        note_sha256(os.stat(root / name), digests[name])
    planted = "python/pkg/mod.py"
    cache.put(member_key(large[planted]), bytes(deflate.deflate_compress(b"x = 'evil'\n", 6)))
    assert prepare_member(cache, digests[planted], len(large[planted])) is None
    assert prepare_member(cache, "0" * 64, 10) is None
    name = "python/pkg/data.bin"
    assert prepare_member(cache, digests[name], len(large[name]) + 1) is None
    with ThreadPoolExecutor(max_workers=1) as pool:
        prepared = {
            digests[n]: pool.submit(prepare_member, cache, digests[n], len(d)) for n, d in large.items()
        }
        proved = {n for n in large if prepared[digests[n]].result() is not None}
    assert proved == set(large) - {planted}
    for path in cache.folder.rglob("*"):  # from here on, only what was proved ahead can be copied
        if path.is_file():
            path.unlink()
    read: list[str] = []
    real = Path.read_bytes

    def counted(path: Path) -> bytes:
        if path.is_relative_to(root):
            read.append(path.relative_to(root).as_posix())
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    ahead = write_zip(root, tmp_path / "ahead.zip", cache=cache, prepared=prepared)
    assert ahead.sha256 == plain.sha256
    assert ahead.cached_members == len(proved)
    assert sorted(read) == sorted(set(tree) - proved)
    with zipfile.ZipFile(tmp_path / "ahead.zip") as written:
        assert written.testzip() is None  # every member's CRC-32 and size as its bytes say
