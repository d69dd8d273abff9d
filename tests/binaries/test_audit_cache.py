"""The audit cache (layerforge/audit_cache.py): what the audit read of a shared object, reused by content.

Real objects compiled here with gcc, a real cache folder. A reading is filed only for an object whose
sha256 the process proved (as a piece's checkout does, through cache.note_sha256), and every finding is
still made from the facts on every audit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import layerforge.binaries.audit as audit
from layerforge.audit_cache import KIND, AuditCache
from layerforge.binaries.audit import audit_tree
from layerforge.cache import note_sha256, sha256_of
from layerforge.member_cache import keyed_digest, write_entry
from layerforge.target import Target
from tests.support.elf import compile_shared_object

PY311 = Target("python3.11", "x86_64")
PY312 = Target("python3.12", "x86_64")
NEW = "python/demo/_threads.so"  # pthread_create@GLIBC_2.34: too new for python3.11's glibc 2.26
OLD = "python/demo/_plain.cpython-311-x86_64-linux-gnu.so"


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    compile_shared_object(root / OLD)
    compile_shared_object(root / NEW, uses_pthread_create=True)
    return root


def prove(root: Path, *rels: str) -> None:
    """What a piece's checkout does: note each file's sha256 under its identity."""
    for rel in rels:
        path = root / rel
        note_sha256(path.stat(), sha256_of(path))


def filed(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / KIND).rglob("*") if p.is_file())


def reading_objects_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, above: object) -> None:
        raise AssertionError(f"{path} was read, not taken from the cache")

    monkeypatch.setattr(audit, "_read_object", refuse)


def test_a_filed_reading_gives_the_same_report_without_reading_the_objects(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    prove(tree, NEW, OLD)
    first = audit_tree(tree, PY311, cache_dir=cache)
    assert [f.code for f in first.errors] == ["glibc-too-new"]
    assert "needs GLIBC_2.34 (for pthread_create" in first.errors[0].message
    assert len(filed(cache)) == 2

    reading_objects_fails(monkeypatch)
    second = audit_tree(tree, PY311, cache_dir=cache)
    assert second == first
    assert second.as_dict() == audit_tree(tree, PY311, cache_dir=cache).as_dict()


def test_an_object_whose_digest_was_not_proved_is_read_and_not_filed(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    report = audit_tree(tree, PY311, cache_dir=cache)
    assert report == audit_tree(tree, PY311)
    assert filed(cache) == []


def test_another_glibc_is_another_reading(tree: Path, tmp_path: Path) -> None:
    # python3.12's glibc 2.34 needs no symbol named; python3.11's reading must still name them.
    cache = tmp_path / "cache"
    prove(tree, NEW)
    assert [f.code for f in audit_tree(tree, PY312, cache_dir=cache).errors] == ["abi-tag"]  # OLD's cp311
    on_311 = audit_tree(tree, PY311, cache_dir=cache)
    assert "(for pthread_create" in on_311.errors[0].message
    assert len(filed(cache)) == 2


def test_a_changed_object_is_read_again(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prove(tree, NEW, OLD)
    audit_tree(tree, PY311, cache_dir=cache)
    # The old object's bytes under the new one's name: its own sha256, so its own reading.
    shutil.copyfile(tree / OLD, tree / NEW)
    prove(tree, NEW)
    assert audit_tree(tree, PY311, cache_dir=cache).errors == ()


@pytest.mark.parametrize(
    "body",
    [
        {"glibc": "GLIBC_2.2.5", "symbols": [], "dynamic": None},
        {"glibc": [[2, "2", 5]], "symbols": [], "dynamic": None},
        {"glibc": [], "symbols": [], "dynamic": {"needed": "libc.so.6", "soname": None, "search_path": []}},
        {"glibc": []},
        ["not", "an", "object"],
    ],
)
def test_an_entry_of_the_wrong_shape_is_read_again(
    tree: Path, tmp_path: Path, body: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    prove(tree, NEW, OLD)
    reference = audit_tree(tree, PY311, cache_dir=cache)
    entry = AuditCache(cache).path_for(filed(cache)[0].name)
    raw = json.dumps(body).encode()
    write_entry(entry, b"LFAUDIT1\n", keyed_digest(entry.name, raw), raw, ".tmp-test-")
    assert audit_tree(tree, PY311, cache_dir=cache) == reference
    # The entry filed again is whole: the next audit takes it without reading the object.
    reading_objects_fails(monkeypatch)
    assert audit_tree(tree, PY311, cache_dir=cache) == reference


def test_a_damaged_entry_is_removed_and_the_object_read(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prove(tree, NEW)
    reference = audit_tree(tree, PY311, cache_dir=cache)
    (entry,) = filed(cache)
    entry.write_bytes(entry.read_bytes()[:-3])  # cut short
    assert AuditCache(cache).get(entry.name) is None
    assert not entry.exists()
    assert audit_tree(tree, PY311, cache_dir=cache) == reference
    assert filed(cache) == [entry]


def test_an_entry_moved_under_another_key_is_refused(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prove(tree, NEW, OLD)
    audit_tree(tree, PY311, cache_dir=cache)
    first, second = filed(cache)
    first.write_bytes(second.read_bytes())
    assert AuditCache(cache).get(first.name) is None
