"""Pieces and the tree made of them, below the build: the tree's files are the cache's own inodes, and
what the build does after (slimming, the spared modules' bytecode, sourceless) leaves every entry whole."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from layerforge.cache import sha256_of
from layerforge.piece_cache import FILES, MANIFEST, PieceCache
from layerforge.recipe import StripConfig
from layerforge.runners.interpreters import Interpreter, find_interpreter
from layerforge.target import Target
from layerforge.tree.head_start import HeadStart
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
    return assembled_with(tmp_path, name, index_wheels, config, compiler, None)


def assembled_with(
    tmp_path: Path,
    name: str,
    index_wheels: list[WheelFile],
    config: StripConfig,
    compiler: Interpreter,
    ready: dict[str, Path] | None,
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
        ready=ready,
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
    # The test module alpha imports is held in its wheel, in no piece and outside the tree, until the
    # guard spares it.
    assert not (tree.root / "python/alpha/tests/helpers.py").exists()
    assert not [path for path in before if "/tests/" in path.as_posix()]
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


def checked_out_ahead(
    tmp_path: Path,
    name: str,
    index_wheels: list[WheelFile],
    config: StripConfig,
    compiler: Interpreter,
    told: list[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """The pieces of `index_wheels` checked out as a head start does while pip resolves; `told` gathers
    the files of each piece the head start says it found whole, before its checkout (for the zip child to
    prove)."""
    settings = piece_settings(
        "python3.11", "x86_64", config.bytecode, debug_ranges=True, strip_level="debug", compiler=compiler
    )
    head_start = HeadStart(tmp_path / name / "head-start", PieceCache(tmp_path / "cache"))
    head_start.begin(
        lambda: index_wheels,
        RuleMatcher(config),
        lambda: settings,
        found=(told if told is not None else []).append,
    )
    # As if pip took longer than the checkouts: stop() would end them after the piece in hand.
    assert head_start._thread is not None
    head_start._thread.join()
    return head_start.stop()


def written(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_pieces_checked_out_ahead_move_in_by_whole_folders(
    local_index: LocalIndex, tmp_path: Path, compiler: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece that owns all it keeps moves in a folder at a time: one rename for `python/alpha`, none per
    file. The tree, the files held back for the import guard and the cache's inodes are those of a
    checkout from the cache."""
    from layerforge.tree import processed

    config = StripConfig()
    made = wheels(local_index)
    reference = assembled(tmp_path, "reference", made, config, compiler)
    told: list[Mapping[str, Any]] = []
    ready = checked_out_ahead(tmp_path, "ahead", made, config, compiler, told)
    assert len(ready) == 2
    # Each piece's files as its manifest lists them, said once its entry was found whole: what the zip
    # child is asked to prove streams for while pip still resolves.
    manifests = [
        json.loads((PieceCache(tmp_path / "cache").entry_dir(key) / "MANIFEST.json").read_text())["files"]
        for key in ready
    ]

    def as_text(files: Mapping[str, Any]) -> str:
        return json.dumps(files, sort_keys=True)

    assert sorted(map(as_text, told)) == sorted(map(as_text, manifests)) and all(told)
    renamed: list[str] = []
    real_rename = os.rename
    monkeypatch.setattr(processed.os, "rename", lambda a, b: renamed.append(str(a)) or real_rename(a, b))
    again = assembled_with(tmp_path, "again", made, config, compiler, ready)
    assert sorted(again.from_cache) == sorted(w.path.name for w in made)
    moved = [
        Path(path).relative_to(folder).as_posix()
        for folder in ready.values()
        for path in renamed
        if Path(path).is_relative_to(folder)
    ]
    # Folders only: `python` (tried for both pieces; the second finds it there), the second piece's
    # package and dist-info into it, and each piece's side folder (its compiled modules, until finish()).
    assert moved.count("tree/python") == 2 and moved.count("side") == 2
    assert all(Path(path).suffix in ("", ".dist-info") for path in moved) and len(moved) <= 6
    assert written(again.tree.root) == written(reference.tree.root) != {}
    before = entry_files(tmp_path / "cache")
    assert (again.tree.root / "python/beta/__init__.py").stat().st_ino in {i for i, _ in before.values()}
    slim = plan(again.tree, config)
    apply(again.tree, slim)
    assert [s.path for s in slim.spared] == [
        "python/alpha/tests/__init__.py",
        "python/alpha/tests/helpers.py",
    ]


def test_the_head_start_says_what_it_found_before_it_checks_that_piece_out(
    local_index: LocalIndex, tmp_path: Path, compiler: Interpreter
) -> None:
    """The zip child proves a piece's streams while the head start checks that piece out, not after: each
    piece is told while no folder of its own is there yet."""
    config = StripConfig()
    made = wheels(local_index)
    assembled(tmp_path, "reference", made, config, compiler)  # fills the cache
    folder = tmp_path / "ahead" / "head-start"
    checked_out_when_told: list[list[str]] = []
    settings = piece_settings(
        "python3.11", "x86_64", config.bytecode, debug_ranges=True, strip_level="debug", compiler=compiler
    )
    head_start = HeadStart(folder, PieceCache(tmp_path / "cache"))
    head_start.begin(
        lambda: made,
        RuleMatcher(config),
        lambda: settings,
        found=lambda _files: checked_out_when_told.append(
            sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        ),
    )
    assert head_start._thread is not None
    head_start._thread.join()
    ready = head_start.stop()
    assert len(checked_out_when_told) == 2
    assert checked_out_when_told[0] == []
    assert len(checked_out_when_told[1]) == 1 and checked_out_when_told[1][0] in ready


def test_a_piece_checked_out_ahead_that_shares_a_file_moves_in_file_by_file(
    local_index: LocalIndex, tmp_path: Path, compiler: Interpreter
) -> None:
    """gamma ships beta's `beta/__init__.py` too, and the later wheel's copy is kept: beta's piece does not
    own all it keeps, so its files move one by one and the clash is settled as a build without a head
    start settles it."""
    config = StripConfig()
    made = wheels(local_index)
    clash = local_index.add_wheel("gamma", "1.0", files={"beta/__init__.py": "x = 2\n", "gamma.py": ""})
    made.append(WheelFile(clash, hashlib.sha256(clash.read_bytes()).hexdigest()))
    reference = assembled(tmp_path, "reference", made, config, compiler)
    ready = checked_out_ahead(tmp_path, "ahead", made, config, compiler)
    again = assembled_with(tmp_path, "again", made, config, compiler, ready)
    assert reference.tree.conflicts == again.tree.conflicts != []
    assert written(again.tree.root) == written(reference.tree.root)
    assert (again.tree.root / "python/beta/__init__.py").read_text() == "x = 2\n"
    # Moved, not checked out of the cache again: nothing is left where the head start put it.
    assert [p for folder in ready.values() for p in folder.rglob("*") if p.is_file()] == []


def test_a_file_in_the_way_stops_a_move_and_is_not_replaced(tmp_path: Path) -> None:
    from layerforge.tree.processed import _merge_into

    source, target = tmp_path / "source", tmp_path / "target"
    (source / "python" / "pkg").mkdir(parents=True)
    (source / "python" / "pkg" / "a.py").write_text("ours")
    (source / "python" / "top.py").write_text("ours")
    (target / "python").mkdir(parents=True)
    (target / "python" / "top.py").write_text("theirs")
    with pytest.raises(FileExistsError):
        _merge_into(str(source), str(target))
    assert (target / "python" / "top.py").read_text() == "theirs"
    # A folder the target has, not empty: entered, not replaced.
    (target / "python" / "top.py").unlink()
    (target / "python" / "pkg").mkdir(exist_ok=True)
    (target / "python" / "pkg" / "b.py").write_text("theirs")
    _merge_into(str(source), str(target))
    assert sorted(p.name for p in (target / "python" / "pkg").iterdir()) == ["a.py", "b.py"]
    assert (target / "python" / "top.py").read_text() == "ours"


def test_the_import_guard_reads_only_the_sources_whose_recorded_words_it_guards(
    local_index: LocalIndex, tmp_path: Path, compiler: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each piece records the words of its sources' import statements: a tree taken from the cache has
    the guard read only `alpha/__init__.py` (it imports alpha.tests), and spare what reading all would."""
    config = StripConfig()
    made = wheels(local_index)
    assembled(tmp_path, "one", made, config, compiler)
    again = assembled(tmp_path, "two", made, config, compiler)
    assert again.tree.import_words["python/alpha/__init__.py"] >= {"alpha", "tests", "helpers"}
    assert again.tree.import_words["python/beta/__init__.py"] == frozenset()
    read: list[str] = []
    real = Path.read_bytes

    def counted(path: Path) -> bytes:
        if path.is_relative_to(again.tree.root):
            read.append(path.relative_to(again.tree.root).as_posix())
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    slim = plan(again.tree, config)
    spared = ["python/alpha/tests/__init__.py", "python/alpha/tests/helpers.py"]
    assert [s.path for s in slim.spared] == spared
    # alpha's __init__ for its words, then the spared modules for theirs: never beta's.
    assert "python/beta/__init__.py" not in read and "python/alpha/__init__.py" in read
