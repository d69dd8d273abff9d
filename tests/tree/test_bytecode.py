"""Compiling a layer's modules with the target's interpreter, through the real compiling workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from layerforge.runners.interpreters import Interpreter, probe
from layerforge.tree.bytecode import compile_tree
from tests.runners.test_interpreters import real_python
from tests.support.layertree import layer_tree


def _interpreter(path: Path) -> Interpreter:
    return Interpreter(path, sys.version_info[:2], "x86_64", "cpython", "current")


MODULES = {f"python/demo/m{i}.py": f"VALUE = {i}\n" * (i + 1) for i in range(9)}


def test_every_module_gets_bytecode_whichever_the_number_of_workers(tmp_path: Path) -> None:
    outputs = []
    for jobs in (1, 3):
        tree = layer_tree(tmp_path / str(jobs), MODULES)
        report = compile_tree(tree, "sourceless", _interpreter(Path(sys.executable)), jobs=jobs)
        assert report.compiled == len(MODULES) and report.failed == ()
        assert sorted(tree.files) == sorted(f"{rel}c" for rel in MODULES)
        outputs.append({rel: (tree.root / rel).read_bytes() for rel in tree.files})
    assert outputs[0] == outputs[1]


def test_a_worker_that_dies_leaves_no_bytecode_and_every_source_in_place(tmp_path: Path) -> None:
    # The real worker compiles everything, then its answer is lost as in a crash before it could send it.
    dying = tmp_path / "dying-python"
    dying.write_text(
        f'#!/bin/sh\n"{sys.executable}" "$@" > /dev/null\n'
        "echo 'Fatal Python error: Segmentation fault' >&2\nexit 139\n"
    )
    dying.chmod(0o755)
    tree = layer_tree(tmp_path / "layer", MODULES)

    report = compile_tree(tree, "sourceless", _interpreter(dying), jobs=2)

    assert report.compiled == 0
    assert len(report.failed) == len(MODULES)
    died = "the compiling interpreter died: Fatal Python error: Segmentation fault"
    assert all(died in failure for failure in report.failed)
    assert sorted(tree.files) == sorted(MODULES)
    on_disk = sorted(p.name for p in (tmp_path / "layer/python/demo").iterdir())
    assert on_disk == sorted(Path(rel).name for rel in MODULES)


WHERE = "def where():\n    return where.__code__.co_filename\n"


# The worker runs in the target's interpreter, whichever CPython the target is, through the import
# system's own helpers rather than py_compile: every version it supports compiles with it.
@pytest.mark.parametrize("dotted", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_each_supported_python_compiles_bytecode_its_import_system_loads_without_the_source(
    tmp_path: Path, dotted: str
) -> None:
    found = probe(real_python(dotted))
    assert found is not None
    tree = layer_tree(tmp_path / "layer", {**MODULES, "python/demo/__init__.py": WHERE})
    report = compile_tree(tree, "sourceless", found, jobs=2)
    assert report.compiled == len(MODULES) + 1 and report.failed == ()
    assert not list((tmp_path / "layer").rglob("*.py"))
    # -B: the import system must take the pycs as they are (unchecked hash) and write nothing.
    check = (
        "import importlib.util, pathlib, demo, demo.m8 as m;"
        "data = pathlib.Path(m.__file__).read_bytes();"
        "print(m.VALUE, m.__file__.endswith('/python/demo/m8.pyc'), demo.where(),"
        "int.from_bytes(data[4:8], 'little'), data[8:16] == importlib.util.source_hash(b'VALUE = 8\\n' * 9))"
    )
    shown = subprocess.run(
        [str(found.path), "-I", "-B", "-c", f"import sys; sys.path.insert(0, 'python'); {check}"],
        cwd=tmp_path / "layer",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # Tracebacks name the file where Lambda unpacks it; flags 1: a hash-based pyc, not checked.
    assert shown == ["8", "True", "/opt/python/demo/__init__.py", "1", "True"]


def test_a_module_that_does_not_compile_is_named_with_its_error_and_keeps_its_source(tmp_path: Path) -> None:
    broken = {"python/demo/broken.py": "def broken(:\n", "python/demo/nul.py": "X = 1\0\n"}
    tree = layer_tree(tmp_path / "layer", {**MODULES, **broken})

    report = compile_tree(tree, "sourceless", _interpreter(Path(sys.executable)), jobs=2)

    assert report.compiled == len(MODULES)
    assert sorted(report.failed) == [
        "python/demo/broken.py: SyntaxError: invalid syntax",
        "python/demo/nul.py: SyntaxError: source code string cannot contain null bytes",
    ]
    assert sorted(tree.files) == sorted([*(f"{rel}c" for rel in MODULES), *broken])
    assert not (tmp_path / "layer/python/demo/broken.pyc").exists()


def test_a_link_where_a_pyc_goes_is_refused_and_what_it_points_at_is_left_alone(tmp_path: Path) -> None:
    # A hostile wheel can ship demo/m3.pyc as a link out of the layer: writing the pyc must not follow it.
    tree = layer_tree(tmp_path / "layer", MODULES)
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours\n")
    (tmp_path / "layer/python/demo/m3.pyc").symlink_to(outside)

    report = compile_tree(tree, "sourceless", _interpreter(Path(sys.executable)), jobs=2)

    assert report.compiled == len(MODULES) - 1
    assert len(report.failed) == 1 and report.failed[0].startswith("python/demo/m3.py: FileExistsError: ")
    assert "is a link or not a regular file" in report.failed[0]
    assert outside.read_text() == "not yours\n"
    assert (tmp_path / "layer/python/demo/m3.py").read_text() == MODULES["python/demo/m3.py"]
