"""Pieces and the tree made of them, below the build: the tree's files are the cache's own inodes, and
what the build does after (slimming, the spared modules' bytecode, sourceless) leaves every entry whole."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from layerforge.cache import sha256_of
from layerforge.piece_cache import FILES, MANIFEST, PieceCache
from layerforge.recipe import StripConfig
from layerforge.runners.interpreters import Interpreter, find_interpreter
from layerforge.target import Target
from layerforge.tree.processed import Assembled, WheelFile, assemble, finish, piece_settings
from layerforge.tree.slim import RuleMatcher, apply, plan
from tests.support.index import LocalIndex


@pytest.fixture(scope="module")
def compiler() -> Interpreter:
    found = find_interpreter(Target("python3.11", "x86_64"))
    if found is None:
        pytest.skip("no Python 3.11 here to compile with")
    return found


def wheels(index: LocalIndex) -> list[WheelFile]:
    made = [
        index.add_wheel(
            "alpha",
            "1.0",
            files={
                "alpha/__init__.py": "from alpha.tests.helpers import make\n",
                "alpha/tests/__init__.py": "",
                "alpha/tests/helpers.py": "def make():\n    return 1\n",
                "alpha/tests/test_alpha.py": "def test_it():\n    pass\n",
            },
        ),
        index.add_wheel("beta", "1.0", files={"beta/__init__.py": "x = 1\n", "beta/_c.c": "/* c */\n"}),
    ]
    return [WheelFile(path, hashlib.sha256(path.read_bytes()).hexdigest()) for path in made]


def assembled(
    tmp_path: Path, name: str, index_wheels: list[WheelFile], config: StripConfig, compiler: Interpreter
) -> Assembled:
    settings = piece_settings(
        "python3.11", "x86_64", config.bytecode, debug_ranges=True, strip_level="debug", compiler=compiler
    )
    return assemble(
        index_wheels,
        tmp_path / name / "layer",
        tmp_path / name / "pieces",
        PieceCache(tmp_path / "cache"),
        RuleMatcher(config),
        settings,
        compiler,
        jobs=2,
    )


def entry_files(cache: Path) -> dict[Path, tuple[int, str]]:
    found = {}
    for manifest in (cache / "pieces").glob("??/*/" + MANIFEST):
        for path in json.loads(manifest.read_text())["files"]:
            file = manifest.parent / FILES / path
            found[file] = (file.stat().st_ino, sha256_of(file))
    return found


@pytest.mark.parametrize("mode", ["compile", "sourceless"])
def test_the_tree_is_linked_from_the_cache_and_the_build_leaves_entries_whole(
    local_index: LocalIndex, tmp_path: Path, compiler: Interpreter, mode: str
) -> None:
    config = StripConfig(bytecode=mode)
    made = wheels(local_index)
    first = assembled(tmp_path, "one", made, config, compiler)
    assert sorted(first.processed) == sorted(w.path.name for w in made) and first.from_cache == []
    before = entry_files(tmp_path / "cache")
    second = assembled(tmp_path, "two", made, config, compiler)
    assert second.processed == [] and sorted(second.from_cache) == sorted(w.path.name for w in made)
    tree = second.tree
    # Hard links: the tree's files are the entries' inodes, not copies.
    inodes = {ino for ino, _ in before.values()}
    assert (tree.root / "python/beta/__init__.py").stat().st_ino in inodes
    # The test module alpha imports is held in the piece, outside the tree, until the guard spares it.
    assert not (tree.root / "python/alpha/tests/helpers.py").exists()
    slim = plan(tree, config)
    apply(tree, slim)
    spared = ["python/alpha/tests/__init__.py", "python/alpha/tests/helpers.py"]
    assert [s.path for s in slim.spared] == spared
    report, _ = finish(second, slim, mode, compiler, debug_ranges=True, jobs=2)
    assert not report.failed and report.compiled == 4
    pycs = sorted(p for p in tree.files if p.endswith(".pyc"))
    on_disk = sorted(str(p.relative_to(tree.root)) for p in tree.root.rglob("*.pyc"))
    assert pycs == on_disk and len(pycs) == 4
    if mode == "sourceless":
        assert not [p for p in tree.files if p.endswith(".py")]
        assert not list(tree.root.rglob("*.py"))
    # Removing, compiling and dropping sources went by unlink and rename: every entry is as it was.
    assert entry_files(tmp_path / "cache") == before
    assert all(os.stat(file).st_mode & 0o222 == 0 for file in before)  # read-only as well


def test_a_wheel_planned_once_is_not_read_again_under_another_link(
    local_index: LocalIndex, tmp_path: Path, compiler: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head start plans the previous lock's wheels from the cache; the build's own links to the same
    wheels (same name, same sha256) take those plans, and the tree is the one planned from scratch. A
    wheel of another sha256 under the same name is read again."""
    from layerforge.tree import processed

    config = StripConfig()
    made = wheels(local_index)
    reference = assembled(tmp_path, "reference", made, config, compiler)
    links = []
    for wheel in made:
        link = tmp_path / "links" / wheel.path.name
        link.parent.mkdir(exist_ok=True)
        os.link(wheel.path, link)
        links.append(WheelFile(link, wheel.sha256))
    read: list[Path] = []
    monkeypatch.setattr(processed, "plan_wheel", lambda path: read.append(path) or pytest.fail("read again"))
    again = assembled(tmp_path, "again", links, config, compiler)
    assert read == []
    assert sorted(again.tree.files) == sorted(reference.tree.files)

    def written(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert written(again.tree.root) == written(reference.tree.root) != {}
    monkeypatch.undo()
    other = WheelFile(links[0].path, "0" * 64)
    seen: list[Path] = []
    real = processed.plan_wheel
    monkeypatch.setattr(processed, "plan_wheel", lambda path: seen.append(path) or real(path))
    settings = piece_settings(
        "python3.11", "x86_64", config.bytecode, debug_ranges=True, strip_level="debug", compiler=compiler
    )
    processed.describe_wheel(other, RuleMatcher(config), settings)
    assert seen == [links[0].path]
