"""Compiling a layer's modules with the target's interpreter, through the real py_compile workers."""

from __future__ import annotations

import sys
from pathlib import Path

from layerforge.runners.interpreters import Interpreter
from layerforge.tree.bytecode import compile_tree
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
