from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerforge.recipe import PackageRules, StripConfig
from layerforge.tree.globs import matches
from layerforge.tree.slim import apply, plan
from layerforge.tree.unpack import LayerFile, LayerTree


def tree_of(root: Path, files: dict[str, tuple[str, str]]) -> LayerTree:
    """files: inner path -> (distribution, content)."""
    tree = LayerTree(root)
    for inner, (dist, content) in files.items():
        path = root / "python" / inner
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        tree.files[f"python/{inner}"] = LayerFile(
            f"python/{inner}", len(content), dist, f"{dist}-1.0-py3-none-any.whl"
        )
    return tree


def test_globs_span_folders_only_with_double_star() -> None:
    assert matches("**/tests", "a/b/tests/c.py") and matches("**/tests", "tests")
    assert not matches("*/tests", "a/b/tests/c.py") and matches("*/tests", "a/tests/c.py")
    assert matches("**/*.pyx", "x.pyx") and not matches("**/*.pyx", "x.pyxz")
    assert not matches("**/tests", "a/tests_util.py")


def test_keep_wins_and_licenses_and_metadata_survive_any_rule(tmp_path: Path) -> None:
    tree = tree_of(
        tmp_path,
        {
            "pkg/__init__.py": ("pkg", "x = 1\n"),
            "pkg/README.md": ("pkg", "# readme\n"),
            "pkg/data/descr.md": ("pkg", "# package data\n"),
            "pkg/LICENSE.md": ("pkg", "MIT\n"),
            "pkg-1.0.dist-info/METADATA": ("pkg", "Name: pkg\n"),
            "pkg-1.0.dist-info/RECORD": ("pkg", "x\n"),
            "pkg-1.0.dist-info/licenses/COPYING.md": ("pkg", "GPL\n"),
        },
    )
    config = StripConfig(remove=("**/*.md", "*.dist-info/**"), keep=("pkg/data/**",))
    report = plan(tree, config)
    removed = {r.path: r.rule for r in report.removed}
    assert removed == {
        "python/pkg/README.md": "recipe:remove:**/*.md",
        "python/pkg-1.0.dist-info/RECORD": "safe:dist-info-install-records",
    }
    apply(tree, report)
    assert not (tmp_path / "python/pkg/README.md").exists()
    assert (tmp_path / "python/pkg/data/descr.md").exists()
    assert "python/pkg/README.md" not in tree.files


def test_rules_for_one_distribution_touch_only_it(tmp_path: Path) -> None:
    tree = tree_of(
        tmp_path,
        {
            "a/io/clip.py": ("a", "x\n"),
            "b/io/clip.py": ("b", "x\n"),
        },
    )
    config = StripConfig(packages={"a": PackageRules(remove=("**/io/**",))})
    report = plan(tree, config)
    assert [r.path for r in report.removed] == ["python/a/io/clip.py"]
    assert report.by_package() == {"a": 2}
    assert report.by_rule() == {"recipe:packages.a.remove:**/io/**": 2}


def test_profile_none_removes_nothing(tmp_path: Path) -> None:
    tree = tree_of(tmp_path, {"pkg/tests/test_a.py": ("pkg", "x\n"), "pkg/a.c": ("pkg", "x\n")})
    assert plan(tree, StripConfig(profile="none")).removed == ()


def test_relative_imports_of_a_test_helper_keep_it_and_its_package(tmp_path: Path) -> None:
    tree = tree_of(
        tmp_path,
        {
            "pkg/__init__.py": ("pkg", "from .tests import _fixtures\n"),
            "pkg/tests/__init__.py": ("pkg", ""),
            "pkg/tests/_fixtures.py": ("pkg", "from . import _more\n"),
            "pkg/tests/_more.py": ("pkg", "y = 2\n"),
            "pkg/tests/test_x.py": ("pkg", "z = 3\n"),
        },
    )
    report = plan(tree, StripConfig())
    assert [r.path for r in report.removed] == ["python/pkg/tests/test_x.py"]
    assert {s.path for s in report.spared} == {
        "python/pkg/tests/__init__.py",
        "python/pkg/tests/_fixtures.py",
        "python/pkg/tests/_more.py",
    }


def test_identical_files_in_two_distributions_are_reported(tmp_path: Path) -> None:
    blob = "x" * 70_000
    tree = tree_of(
        tmp_path,
        {"a.libs/libg.so": ("a", blob), "b.libs/libg.so": ("b", blob), "c/o.so": ("c", "y" * 70_000)},
    )
    report = plan(tree, StripConfig())
    assert report.duplicates == (("python/a.libs/libg.so", "python/b.libs/libg.so"),)


# ---- unpack holds back what the rules remove --------------------------------------------------------


def _wheel_with_an_imported_test_helper(out: Path, record: object = None) -> Path:
    from tests.support.wheelfactory import build_wheel

    return build_wheel(
        out,
        "pkg",
        "1.0",
        files={
            "pkg/__init__.py": "from pkg.tests._helper import VALUE\n",
            "pkg/tests/__init__.py": "",
            "pkg/tests/_helper.py": "VALUE = 42\n",
            "pkg/tests/test_pkg.py": "def test_value():\n    assert True\n",
            "pkg/include/pkg.h": "int pkg(void);\n",
        },
        record=record,  # type: ignore[arg-type]
    )


def test_files_the_rules_remove_are_never_written_and_spared_ones_are(tmp_path: Path) -> None:
    from layerforge.tree.slim import RuleMatcher
    from layerforge.tree.unpack import unpack_all

    wheel = _wheel_with_an_imported_test_helper(tmp_path / "wheels")
    config = StripConfig()
    matcher = RuleMatcher(config)
    root = tmp_path / "layer"
    tree = unpack_all([wheel], root, hold_back=matcher.removes)
    # Listed (with sizes, for the accounting) but left in the wheel.
    assert "python/pkg/tests/test_pkg.py" in tree.files and "python/pkg/include/pkg.h" in tree.files
    assert not (root / "python/pkg/tests").exists() and not (root / "python/pkg/include").exists()

    report = plan(tree, config, matcher)
    # The helper that pkg imports was spared, so it (and its package) is on disk now, byte for byte.
    assert (root / "python/pkg/tests/_helper.py").read_text() == "VALUE = 42\n"
    assert (root / "python/pkg/tests/__init__.py").is_file()
    assert {r.path for r in report.removed} >= {"python/pkg/tests/test_pkg.py", "python/pkg/include/pkg.h"}
    apply(tree, report)
    assert tree.held == {}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(tree.files)
    assert "python/pkg/tests/test_pkg.py" not in on_disk


def test_a_held_file_that_is_spared_is_still_checked_against_record(tmp_path: Path) -> None:
    from layerforge.errors import UnsafeArchiveError
    from layerforge.tree.slim import RuleMatcher
    from layerforge.tree.unpack import unpack_all
    from tests.support.wheelfactory import record_hash

    def lie(text: str) -> str:
        return text.replace(record_hash("VALUE = 42\n"), record_hash("VALUE = 41\n"))

    wheel = _wheel_with_an_imported_test_helper(tmp_path / "wheels", record=lie)
    config = StripConfig()
    matcher = RuleMatcher(config)
    tree = unpack_all([wheel], tmp_path / "layer", hold_back=matcher.removes)  # the helper is held back
    with pytest.raises(UnsafeArchiveError, match="does not match its RECORD hash"):
        plan(tree, config, matcher)


def test_only_import_statements_that_name_a_guarded_folder_are_parsed() -> None:
    from layerforge.tree.slim import _import_prefilter

    wanted = _import_prefilter({"tests"})
    assert wanted(b"import numpy._core.tests._natype\n")
    assert wanted(b"x = 1\n    from .tests import helper  # used by testing\n")
    assert wanted(b"from pkg.util import (\n    a,\n    tests,\n)\n")
    assert wanted(b"from pkg import tests")  # no newline at the end
    assert not wanted(b"import numpy  # see tests/README\n")
    assert not wanted(b'doc = "run the tests, then import them"\n')
    assert not wanted(b"from pkg.testsuite import x\nimport pkg.attests\n")


_WORDS = st.sampled_from(["tests", "test", "data", "x", "é", "0"])
_JOINS = st.sampled_from([".", "_", " import ", ", ", " (", ")", " as ", " # ", '"', "\n    "])
_LINE = st.tuples(
    st.sampled_from(["import ", "from ", "    from ", "x = 1  # import ", 'a = "import ', "", "f(import "]),
    st.lists(st.tuples(_WORDS, _JOINS), max_size=6),
).map(lambda line: line[0] + "".join(word + join for word, join in line[1]))


@given(
    st.lists(_LINE, max_size=6).map("\n".join),
    st.sets(st.sampled_from(["tests", "test", "data", "x", "0"]), max_size=3),
)
@settings(max_examples=500, deadline=None)
def test_a_piece_s_import_words_answer_as_the_prefilter_reads(source: str, guarded: set[str]) -> None:
    """The words a piece records for each source stand in for reading it: a guarded word is among them
    exactly when the prefilter would find it in the source."""
    from layerforge.tree.slim import _import_prefilter, import_words

    data = source.encode()
    assert _import_prefilter(guarded)(data) == (not import_words(data).isdisjoint(guarded))


_PART = st.text(alphabet="abcXY_.-0", min_size=1, max_size=8).filter(lambda p: p not in (".", ".."))


@given(
    st.lists(_PART, min_size=1, max_size=4), st.sampled_from(["__init__.py", ".py", "m.py", "m.x.py", "a."])
)
@settings(max_examples=300, deadline=None)
def test_module_names_are_those_pathlib_gives(folders: list[str], name: str) -> None:
    """The import guard names a module by strings: as pathlib would, for any path a tree can hold."""
    from layerforge.tree.slim import _module_name

    inner = "/".join([*folders, name])
    parts = list(PurePosixPath(inner).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    assert _module_name(inner) == ".".join(parts)
    top = list(PurePosixPath(name).with_suffix("").parts)
    assert _module_name(name) == ".".join(top[:-1] if top[-1] == "__init__" else top)


def test_folders_left_empty_are_removed_deepest_first_and_the_root_stays(tmp_path: Path) -> None:
    from layerforge.tree.slim import _remove_empty_dirs

    root = tmp_path / "python"
    for folder in ["a/b/c", "a/d/e/f", "a/g", "h", "i/j"]:
        (root / folder).mkdir(parents=True)
    (root / "a/g/kept.py").write_text("")
    (root / "i/x.txt").write_text("")
    _remove_empty_dirs(root)
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert left == ["a", "a/g", "a/g/kept.py", "i", "i/x.txt"]
    for path in (root / "a/g/kept.py", root / "i/x.txt"):
        path.unlink()
    _remove_empty_dirs(root)
    assert root.is_dir() and list(root.iterdir()) == []
