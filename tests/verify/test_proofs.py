"""The verification cache (verify/proofs.py) with real interpreters on small layers made here.

Each test runs a check, changes the layer (or a copy of it in another folder, as the next build's
staging folder is), and runs the check again. Whether the check really ran is not taken from the report
alone: the layer's modules and the smoke code append a line to a log outside the layer each time they
run, so a reused check is one that left no line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from layerforge.cache import note_sha256, sha256_of
from layerforge.cache_admin import cache_info, prune
from layerforge.proof_cache import KIND
from layerforge.runners.interpreters import Interpreter, probe
from layerforge.target import Target
from layerforge.verify.local import VerifyReport, verify_layer
from layerforge.verify.proofs import FACT_KINDS, Facts, ProofStore, Roots
from tests.verify.test_verify import PYENV_VERSIONS, TARGET, make_layer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    found = probe(Path(sys.executable))
    assert found is not None
    return found


def logging_layer(log: Path) -> dict[str, str]:
    """A package that notes each import of it in `log`, and reads a data file beside itself."""
    note = f"open({str(log)!r}, 'a').write('import good\\n')\n"
    return {
        "python/good/__init__.py": note + "from .core import VALUE\n",
        "python/good/core.py": "VALUE = 42\n",
        "python/good/README.md": "# good\n",
        "python/good-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: good\nVersion: 1.0\n",
    }


def smoke_code(log: Path) -> str:
    return f"open({str(log)!r}, 'a').write('smoke\\n')\nimport good\nassert good.VALUE == 42\n"


def check(
    layer: Path,
    interpreter: Interpreter,
    cache: Path,
    *,
    modules: Sequence[str] = ("good",),
    smoke: str | None = None,
    distributions: Sequence[str] = (),
) -> VerifyReport:
    return verify_layer(
        layer,
        TARGET,
        modules=modules,
        distributions=distributions,
        smoke=smoke,
        interpreter=interpreter,
        proofs=ProofStore(cache),
    )


def checked_once(tmp_path: Path, interpreter: Interpreter, core: str) -> tuple[Path, Path]:
    """The logging layer with `core` as good/core.py, checked once into tmp_path/cache (its log then
    cleared): the layer and the log."""
    log = tmp_path / "log"
    files = logging_layer(log)
    files["python/good/core.py"] = core
    layer = make_layer(tmp_path / "one", files)
    check(layer, interpreter, tmp_path / "cache")
    runs(log)
    return layer, log


def runs(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def moved(layer: Path, destination: Path, changes: Mapping[str, str | None] = {}) -> Path:
    """The layer in another folder, as the next build's staging folder holds it, with `changes` made
    (None removes a file)."""
    shutil.copytree(layer, destination)
    for relative, text in changes.items():
        path = destination / relative
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return destination


def test_a_passing_check_is_not_run_again_while_nothing_it_read_changed(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    log = tmp_path / "log"
    layer = make_layer(tmp_path / "one", logging_layer(log))
    first = check(layer, interpreter, tmp_path / "cache", smoke=smoke_code(log), distributions=["good"])
    assert first.ok and first.reused == () and first.run_again == ()  # no proof was there to hold
    assert sorted(runs(log)) == ["import good", "import good", "smoke"]  # the smoke code imports it too

    # Another folder, a README gone and a package nobody imports added: none of it was read.
    changes = {"python/good/README.md": None, "python/other/__init__.py": "X = 1\n"}
    second = check(
        moved(layer, tmp_path / "two", changes),
        interpreter,
        tmp_path / "cache",
        smoke=smoke_code(log),
        distributions=["good"],
    )
    assert runs(log) == []
    assert second.ok and second.verified is True
    assert second.imported == ("good",)
    assert second.smoke_ok is True
    assert second.reused == ("imports of good", "the smoke code") and second.run_again == ()
    assert second.cold_import_seconds == first.cold_import_seconds
    # The metadata reads always run: no proof stands in for them.
    assert second.metadata_versions == {"good": "1.0"}


def test_a_file_it_read_that_changed_runs_the_check_again(tmp_path: Path, interpreter: Interpreter) -> None:
    log = tmp_path / "log"
    layer = make_layer(tmp_path / "one", logging_layer(log))
    check(layer, interpreter, tmp_path / "cache", smoke=smoke_code(log))
    runs(log)
    broken = moved(layer, tmp_path / "two", {"python/good/core.py": "VALUE = 41\n"})
    report = check(broken, interpreter, tmp_path / "cache", smoke=smoke_code(log))
    assert sorted(runs(log)) == ["import good", "import good", "smoke"]
    assert report.reused == ()
    assert report.smoke_ok is False  # the smoke code's assertion now fails: it did run
    # Each says why it ran: the first thing it had read that is not as it was.
    assert [line.split(": ")[0] for line in report.run_again] == ["the imports", "the smoke code"]
    assert all("python/good/core.py" in line and "changed" in line for line in report.run_again)


def test_a_module_an_optional_import_looked_for_runs_the_check_again(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    layer, log = checked_once(
        tmp_path, interpreter, "try:\n    import extra\nexcept ImportError:\n    extra = None\nVALUE = 42\n"
    )
    added = moved(layer, tmp_path / "two", {"python/extra.py": "raise RuntimeError('extra is broken')\n"})
    report = check(added, interpreter, tmp_path / "cache")
    assert runs(log) == ["import good"]
    assert report.reused == ()
    assert not report.ok  # extra is found now, and fails: reusing the old pass would have hidden it
    assert report.run_again == (
        "the imports: python/extra.py is there now; "
        "an earlier run looked for `extra` there and found nothing",
    )


def test_a_file_read_from_c_is_part_of_the_record(tmp_path: Path, interpreter: Interpreter) -> None:
    """libc's open() from ctypes raises no audit event: only the inotify watch sees this read."""
    log = tmp_path / "log"
    files = logging_layer(log)
    files["python/good/data.bin"] = "A"
    files["python/good/core.py"] = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "path = os.path.join(os.path.dirname(__file__), 'data.bin').encode()\n"
        "fd = libc.open(path, os.O_RDONLY)\n"
        "buffer = ctypes.create_string_buffer(1)\n"
        "assert libc.read(fd, buffer, 1) == 1\n"
        "libc.close(fd)\n"
        "assert buffer.raw == b'A', buffer.raw\n"
        "VALUE = 42\n"
    )
    layer = make_layer(tmp_path / "one", files)
    assert check(layer, interpreter, tmp_path / "cache").ok
    runs(log)
    same = check(moved(layer, tmp_path / "two"), interpreter, tmp_path / "cache")
    assert same.reused == ("imports of good",) and runs(log) == []
    changed = check(
        moved(layer, tmp_path / "three", {"python/good/data.bin": "B"}), interpreter, tmp_path / "cache"
    )
    assert runs(log) == ["import good"]
    assert changed.reused == ()
    assert not changed.ok
    assert changed.run_again == ("the imports: python/good/data.bin changed",)


def test_a_distribution_looked_up_by_name_keeps_its_proof_when_another_is_added(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    layer, log = checked_once(
        tmp_path,
        interpreter,
        "import importlib.metadata\nVALUE = 42\nVERSION = importlib.metadata.version('good')\n",
    )
    other = {"python/other-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: other\nVersion: 2.0\n"}
    report = check(moved(layer, tmp_path / "two", other), interpreter, tmp_path / "cache")
    assert report.reused == ("imports of good",) and runs(log) == []
    # A second distribution of the same name would change what importlib.metadata answers.
    same_name = {"python/Good-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: Good\nVersion: 2.0\n"}
    again = check(moved(layer, tmp_path / "three", same_name), interpreter, tmp_path / "cache")
    assert again.reused == () and runs(log) == ["import good"]
    assert again.run_again == ("the imports: the metadata of good in python changed",)


def test_proofs_cover_the_modules_they_checked_and_the_rest_run(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    log = tmp_path / "log"
    files = logging_layer(log)
    files["python/second.py"] = f"open({str(log)!r}, 'a').write('import second\\n')\n"
    layer = make_layer(tmp_path / "one", files)
    check(layer, interpreter, tmp_path / "cache", modules=["good"])
    runs(log)
    report = check(layer, interpreter, tmp_path / "cache", modules=["good", "second"])
    assert runs(log) == ["import second"]
    assert report.imported == ("good", "second")
    assert report.reused == ("imports of good",)
    # Both are covered now, by two proofs.
    both = check(moved(layer, tmp_path / "two"), interpreter, tmp_path / "cache", modules=["good", "second"])
    assert runs(log) == []
    assert both.reused == ("imports of good, second",)


def test_a_damaged_or_half_written_proof_is_never_used(tmp_path: Path, interpreter: Interpreter) -> None:
    log = tmp_path / "log"
    layer = make_layer(tmp_path / "one", logging_layer(log))
    cache = tmp_path / "cache"
    check(layer, interpreter, cache)
    runs(log)
    (entry,) = [p for p in (cache / KIND).glob("*/*") if not p.name.startswith(".")]
    # What a build killed mid-write leaves: a temporary file, never read; and an entry cut short.
    (entry.parent / ".tmp-elsewhere-1-x.part").write_bytes(entry.read_bytes()[:100])
    entry.write_bytes(entry.read_bytes()[:-10])
    report = check(layer, interpreter, cache)
    assert report.reused == () and runs(log) == ["import good"]
    assert not entry.exists()  # removed when it was found damaged
    (refiled,) = [p for p in (cache / KIND).glob("*/*") if not p.name.startswith(".")]
    assert json.loads(refiled.read_bytes()[len(b"LFPROOF1\n") + 32 :])["modules"] == ["good"]
    assert check(layer, interpreter, cache).reused == ("imports of good",)
    assert runs(log) == []


def test_cache_info_counts_proofs_and_prune_removes_them(tmp_path: Path, interpreter: Interpreter) -> None:
    log = tmp_path / "log"
    layer = make_layer(tmp_path / "one", logging_layer(log))
    check(layer, interpreter, tmp_path / "cache", smoke=smoke_code(log))
    info = cache_info(tmp_path / "cache")
    assert info.kinds[KIND].entries == 2
    assert info.kinds[KIND].bytes > 0
    pruned = prune(tmp_path / "cache", max_bytes=0)
    assert {entry.kind for entry in pruned.removed} == {KIND}
    assert cache_info(tmp_path / "cache").kinds[KIND].entries == 0
    runs(log)
    check(layer, interpreter, tmp_path / "cache", smoke=smoke_code(log))
    assert len(runs(log)) == 3  # nothing left to reuse


def test_without_inotify_nothing_is_filed(
    tmp_path: Path, interpreter: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the watch cannot be had, the check runs every time: nothing unwatched is ever filed."""
    from layerforge.verify import opens

    monkeypatch.setattr(opens, "_libc", lambda: None)
    log = tmp_path / "log"
    layer = make_layer(tmp_path / "one", logging_layer(log))
    check(layer, interpreter, tmp_path / "cache")
    check(layer, interpreter, tmp_path / "cache")
    assert runs(log) == ["import good", "import good"]
    assert not list((tmp_path / "cache").glob(f"{KIND}/*/*"))


def test_a_proven_digest_stands_for_the_file_only_while_it_keeps_its_identity(tmp_path: Path) -> None:
    """A digest a checkout proved is not hashed again; once the file is rewritten it is, in place
    (a new mtime) or by rename (a new inode)."""
    path = tmp_path / "module.pyc"
    path.write_bytes(b"first")
    roots = Roots.of(tmp_path, [])
    keys = {kind: [] for kind in FACT_KINDS} | {"content": ["L:module.pyc"]}
    note_sha256(os.stat(path), "1" * 64)  # not the real digest: shows which one is used
    assert Facts().values(keys, roots)["content"] == [[5, "1" * 64, False]]
    path.write_bytes(b"other")
    assert Facts().values(keys, roots)["content"] == [[5, sha256_of(path), False]]
    replacement = tmp_path / "new"
    replacement.write_bytes(b"third")
    note_sha256(os.stat(path), sha256_of(path))
    os.replace(replacement, path)
    assert Facts().values(keys, roots)["content"] == [[5, sha256_of(path), False]]


def test_only_files_to_hash_go_to_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Proven files, folders and missing paths are answered in place; the pool gets the others only."""
    from layerforge.verify import proofs

    names = ["proven.pyc", "unproven.pyc", "folder", "missing.pyc"]
    (tmp_path / "proven.pyc").write_bytes(b"first")
    (tmp_path / "unproven.pyc").write_bytes(b"second")
    (tmp_path / "folder").mkdir()
    note_sha256(os.stat(tmp_path / "proven.pyc"), "1" * 64)
    pooled: list[list[str]] = []
    real = proofs.ThreadPoolExecutor

    class Watched(real):  # type: ignore[misc, valid-type]
        def map(self, fn, *iterables, **kwargs):  # type: ignore[no-untyped-def]
            pooled.append([os.path.basename(p) for p in iterables[0]])
            return super().map(fn, *iterables, **kwargs)

    monkeypatch.setattr(proofs, "ThreadPoolExecutor", Watched)
    roots = Roots.of(tmp_path, [])
    keys = {kind: [] for kind in FACT_KINDS} | {"content": [f"L:{name}" for name in names]}
    assert Facts().values(keys, roots)["content"] == [
        [5, "1" * 64, False],
        [6, sha256_of(tmp_path / "unproven.pyc"), False],
        ["dir"],
        None,
    ]
    assert pooled == [["unproven.pyc"]]


@pytest.mark.parametrize("dotted", ["3.9", "3.10", "3.12", "3.13"])
def test_the_record_is_kept_on_every_runtime_s_python(tmp_path: Path, dotted: str) -> None:
    """The bootstrap's watch (its audit hook, FileFinder's lookups, importlib.metadata's queries by name)
    works on each runtime's Python: a proof is filed, survives a distribution added under another name,
    and falls to a changed file."""
    found = sorted(PYENV_VERSIONS.glob(f"{dotted}.*/bin/python{dotted}"))
    if not found:
        pytest.skip(f"no CPython {dotted} under {PYENV_VERSIONS}")
    other = probe(found[-1])
    assert other is not None
    log = tmp_path / "log"
    files = logging_layer(log)
    files["python/good/core.py"] = (
        "import importlib.metadata\nVALUE = 42\nV = importlib.metadata.version('good')\n"
    )
    layer = make_layer(tmp_path / "one", files)
    target = Target(f"python{dotted}", TARGET.arch)

    def again(folder: Path) -> VerifyReport:
        return verify_layer(
            folder,
            target,
            modules=["good"],
            distributions=[],
            interpreter=other,
            proofs=ProofStore(tmp_path / "c"),
        )

    assert again(layer).ok and runs(log) == ["import good"]
    other_dist = {"python/other-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: other\nVersion: 2.0\n"}
    kept = again(moved(layer, tmp_path / "two", other_dist))
    assert kept.reused == ("imports of good",) and runs(log) == []
    changed = again(
        moved(layer, tmp_path / "three", {"python/good/core.py": files["python/good/core.py"] + "\n"})
    )
    assert changed.reused == () and runs(log) == ["import good"]


def test_lookup_and_distribution_facts_are_the_entries_a_scan_of_the_folder_gives(tmp_path: Path) -> None:
    """The facts come from per-folder indexes; each must equal what scanning the listing by the rules of
    FileFinder and importlib.metadata gives, in the listing's order."""
    layer = tmp_path / "layer"
    folder = layer / "python"
    names = [
        "foo",
        "foo.py",
        "foo.cpython-311-x86_64-linux-gnu.so",
        "foobar.py",
        "foo_bar.py",
        "Foo_Bar-2.0.dist-info",
        "foo.bar-1.0.dist-info",
        "foo-1.0.dist-info",
        "foo-0.9.egg-info",
        "EGG-INFO",
        "README",
    ]
    for name in names:
        if name in ("foo",) or name.endswith(("-info", "EGG-INFO")):
            (folder / name).mkdir(parents=True)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("")
    roots = Roots.of(layer, [])
    facts = Facts()
    listing = facts.value("listing", "L:python", roots)

    def normalized(name: str) -> str:
        return name.replace("-", "_").replace(".", "_").lower()

    def scanned_module(name: str) -> list[list[str]]:
        return [entry for entry in listing if entry[0] == name or entry[0].startswith(name + ".")]

    def scanned_distribution(name: str) -> list[list[str]]:
        found = []
        for entry in listing:
            lowered = entry[0].lower()
            if lowered == "egg-info" or (
                lowered.endswith((".dist-info", ".egg-info", ".egg"))
                and normalized(entry[0].rpartition(".")[0].partition("-")[0]) == normalized(name)
            ):
                found.append(entry)
        return found

    for name in ("foo", "foobar", "foo_bar", "bar", "README"):
        assert facts.value("lookup", f"L:python\0{name}", roots) == scanned_module(name), name
    for name in ("foo", "Foo-Bar", "foo.bar", "FOO", "bar"):
        assert facts.value("distribution", f"L:python\0{name}", roots) == scanned_distribution(name), name
    assert [e[0] for e in facts.value("lookup", "L:python\0foo", roots)] == [
        "foo",
        "foo.bar-1.0.dist-info",  # FileFinder would try it for `foo` too: it starts with "foo."
        "foo.cpython-311-x86_64-linux-gnu.so",
        "foo.py",
    ]
    assert facts.value("lookup", "L:missing\0foo", roots) is None
