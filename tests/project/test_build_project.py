"""`layerforge build --project`: every cell of a project built here, from tiny wheels on a local index."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from layerforge.cli import main
from layerforge.resolve import source_build
from tests.layers import publish_demo_stack
from tests.support.index import LocalIndex

PROJECT = """\
[[layers]]
recipe = "demo.toml"
runtimes = ["python3.11", "python3.12"]
archs = ["x86_64"]

[[layers]]
recipe = "fast.toml"
runtimes = ["python3.11", "python3.12"]
archs = ["x86_64"]
"""


@pytest.fixture()
def project(local_index: LocalIndex, tmp_path: Path) -> Path:
    publish_demo_stack(local_index, tmp_path / "wheels-src")
    local_index.serve_metadata = True  # layerforge's own metadata serving is used all the same
    root = tmp_path / "project"
    root.mkdir()
    (root / "demo.toml").write_text('name = "demo"\nrequirements = ["demo"]\n')
    (root / "fast.toml").write_text('name = "fast"\nrequirements = ["fastlib"]\n')
    (root / "layerforge.toml").write_text(PROJECT)
    return root


def build(root: Path, index: LocalIndex, *args: str) -> Result:
    argv = ["build", "--project", str(root / "layerforge.toml"), "--out", str(root / "dist")]
    argv += ["--cache-dir", str(root / "cache"), "--index-url", index.url, "--json", *args]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def test_four_cells_build_four_verified_zips_sharing_one_wheel_cache(
    project: Path, local_index: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spy on the real resolution: where each cell's resolution keeps its scratch (pip's files).
    scratch: list[Path] = []
    real_resolve = source_build.resolve

    def resolve(*args: Any, **kwargs: Any) -> Any:
        assert kwargs["scratch_in"].is_dir()
        scratch.append(kwargs["scratch_in"])
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(source_build, "resolve", resolve)
    local_index.reset_log()
    result = build(project, local_index)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    names = [
        "demo-python3.11-x86_64",
        "demo-python3.12-x86_64",
        "fast-python3.11-x86_64",
        "fast-python3.12-x86_64",
    ]
    assert [cell["cell"] for cell in report["cells"]] == names
    assert report["exit_code"] == 0
    for name in names:
        manifest = json.loads((project / "dist" / f"{name}.manifest.json").read_text())
        assert manifest["verified"] is True, name
        assert manifest["zip"] == f"{name}.zip" and (project / "dist" / f"{name}.zip").is_file()
    with zipfile.ZipFile(project / "dist" / "fast-python3.12-x86_64.zip") as layer:
        assert "python/fastlib/_native.cpython-312-x86_64-linux-gnu.so" in layer.namelist()
    # One wheel cache: fastlib 1.0 (cp311) serves two cells, demo (pure) two more; each came once.
    downloads = Counter(name for name in local_index.downloads() if name.endswith(".whl"))
    assert downloads["demo-1.0-py3-none-any.whl"] == 1
    assert downloads["fastlib-1.0-cp311-cp311-manylinux2014_x86_64.whl"] == 1
    assert set(downloads.values()) == {1}
    # The two runtimes of each recipe resolved from one reading of each project page.
    pages = Counter(r.path for r in local_index.requests if r.path.startswith("/simple/"))
    assert pages and set(pages.values()) == {1}, pages
    # One table at the end, on stderr.
    assert "cells" in result.stderr and all(name[:18] in result.stderr for name in names)
    # Each cell resolved in a staging folder of the output folder (swept if killed), removed after.
    assert len(scratch) == 4
    assert all(folder.parent == project / "dist" and not folder.exists() for folder in scratch)

    again = build(project, local_index)
    assert again.exit_code == 0
    assert all(cell["reused"] for cell in json.loads(again.stdout)["cells"])


def test_one_cell_by_name_and_the_worst_exit_code_of_many(project: Path, local_index: LocalIndex) -> None:
    one = build(project, local_index, "--cell", "fast-python3.11-x86_64")
    assert one.exit_code == 0, one.stderr
    assert [p.name for p in (project / "dist").glob("*.zip")] == ["fast-python3.11-x86_64.zip"]

    (project / "missing.toml").write_text('name = "missing"\nrequirements = ["no-such-dist"]\n')
    (project / "heavy.toml").write_text(
        'name = "heavy"\nrequirements = ["demo"]\n[limits]\nunzipped_bytes = 10\n'
    )
    (project / "layerforge.toml").write_text(
        PROJECT
        + '\n[[layers]]\nrecipe = "missing.toml"\nruntimes = ["python3.11"]\n'
        + '\n[[layers]]\nrecipe = "heavy.toml"\nruntimes = ["python3.11"]\n'
    )
    result = build(project, local_index, "--cells", "fast-python3.11-x86_64,missing-*,heavy-*")
    report = json.loads(result.stdout)
    codes = {cell["cell"]: cell["exit_code"] for cell in report["cells"]}
    assert codes == {
        "fast-python3.11-x86_64": 0,
        "missing-python3.11-x86_64": 1,
        "heavy-python3.11-x86_64": 3,
    }
    # Over a size limit is the worst of these: the run exits 3, and the good cell was still built.
    assert result.exit_code == report["exit_code"] == 3
    assert "no-such-dist" in report["cells"][1]["error"]
    assert "2 of 3 cells failed" in " ".join(result.stderr.split())


def test_project_and_recipe_do_not_mix(project: Path, local_index: LocalIndex) -> None:
    result = build(project, local_index, "--runtime", "python3.12")
    assert result.exit_code == 2 and "--runtime cannot apply" in result.stderr
    excluding = build(project, local_index, "--exclude-runtime-provided")
    assert excluding.exit_code == 2 and "--exclude-runtime-provided cannot apply" in excluding.stderr
    plain = CliRunner().invoke(main, ["build"])
    assert plain.exit_code == 2 and "--project" in plain.stderr
