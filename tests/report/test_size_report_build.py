"""size-report of a real `layerforge build` (tiny wheels on a local index): it agrees with the manifest."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from layerforge.build import BuildOptions, build
from layerforge.cli import main
from layerforge.recipe import recipe_from_mapping
from layerforge.target import Target
from tests.layers import publish_demo_stack
from tests.support.index import LocalIndex


def test_the_report_of_a_built_manifest_agrees_with_the_build(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    publish_demo_stack(local_index, tmp_path)
    recipe = recipe_from_mapping({"name": "demo", "requirements": ["demo"]}, "demo.toml", "demo")
    options = BuildOptions(
        recipe=recipe,
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        index_url=local_index.url,
        lock_path=None,
    )
    result = build(options)

    report = CliRunner().invoke(main, ["size-report", str(result.manifest_path), "--json", "--quiet"])

    assert report.exit_code == 0, report.stderr
    data = json.loads(report.stdout)
    manifest = json.loads(result.manifest_path.read_text())
    assert data["unzipped_bytes"] == manifest["unzipped_bytes"]
    assert data["zipped_bytes"] == manifest["zipped_bytes"]
    # The build's own per-package accounting and the report's (from RECORD in the zip) agree.
    rows = {d["name"]: d for d in data["distributions"] if d["owned"]}
    for package in manifest["packages"]:
        assert rows[package["name"]]["unzipped_bytes"] == package["unzipped_bytes"], package["name"]
        assert rows[package["name"]]["version"] == package["version"]
    (source,) = data["sources"]
    assert source["removed"]["bytes"] == manifest["removed_bytes"] > 0
    assert source["removed"]["by_rule"] == manifest["removed"]["by_rule"]
    assert source["removed"]["by_package"] == manifest["removed"]["by_package"]
