"""Peak resident memory of the layer's import and smoke code: measured in a real build, and the advice.

The layers are real wheels from a local index whose import (or smoke code) really allocates and touches
memory, measured by the verifying interpreter itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerforge.build import BuildOptions, BuildResult, build
from layerforge.limits import MB, recommended_memory_mb
from layerforge.recipe import recipe_from_mapping
from layerforge.target import Target
from tests.support.events import Recorded
from tests.support.index import LocalIndex

HOG_MB = 200
# `bytes * n` writes every byte, so every page is resident (a bare bytearray(n) may stay untouched).
HOG = f"HELD = b'\\x01' * ({HOG_MB} * 2**20)\n"


@pytest.fixture()
def index(local_index: LocalIndex) -> LocalIndex:
    local_index.add_wheel("hog", "1.0", files={"hog/__init__.py": HOG})
    local_index.add_wheel("small", "1.0", files={"small/__init__.py": "VALUE = 1\n"})
    return local_index


def _build(index: LocalIndex, tmp_path: Path, events: Recorded, **recipe: object) -> BuildResult:
    options = BuildOptions(
        recipe=recipe_from_mapping({"name": "mem", **recipe}, "mem.toml", "mem"),
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        index_url=index.url,
    )
    return build(options, events)


def test_a_layer_whose_import_needs_200_mb_warns_and_names_the_memory_to_set(
    index: LocalIndex, tmp_path: Path
) -> None:
    recipe = tmp_path / "hog.toml"
    recipe.write_text('name = "hog"\nrequirements = ["hog"]\n')
    env = {**os.environ, "LAYERFORGE_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "400"}
    argv = [sys.executable, "-m", "layerforge", "build", str(recipe), "--index-url", index.url, "--json"]
    completed = subprocess.run(
        [*argv, "--runtime", "python3.11", "--out", str(tmp_path / "dist")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    verification = json.loads(completed.stdout)["verification"]
    peak = verification["peak_rss_bytes"]
    assert peak == verification["memory"]["imports_peak_rss_bytes"] >= HOG_MB * MB
    # The interpreter alone is far below it: the figure is the layer's doing.
    assert verification["memory"]["baseline_rss_bytes"] < 64 * MB
    wanted = recommended_memory_mb(peak)
    assert wanted >= 320  # 200 MB and half again, in 64 MB steps
    assert verification["memory"]["recommended_memory_mb"] == wanted
    said = " ".join(completed.stderr.split())
    advice = f"the smallest Lambda memory setting that leaves headroom is {wanted} MB"
    # Warned about during the build, and said again in the summary.
    assert f"warning: the layer's import peaks at {peak / MB:,.0f} MB resident; {advice}" in said
    assert "killed during init" in said
    assert f"memory: the layer's import peaks at {peak / MB:,.0f} MB resident; {advice}" in said


def test_the_smoke_codes_memory_counts_too(index: LocalIndex, tmp_path: Path) -> None:
    events = Recorded()
    result = _build(index, tmp_path, events, requirements=["small"], verify={"smoke": HOG})
    memory = result.manifest["verification"]["memory"]
    assert memory["smoke_peak_rss_bytes"] >= HOG_MB * MB > memory["imports_peak_rss_bytes"]
    assert result.manifest["verification"]["peak_rss_bytes"] == memory["smoke_peak_rss_bytes"]
    assert any("killed during init" in warning for warning in events.warnings)


def test_a_small_layer_is_measured_as_small_even_when_the_build_process_is_big(
    index: LocalIndex, tmp_path: Path
) -> None:
    # getrusage's ru_maxrss in a child carries its parent's peak over exec: this process holds 300 MB
    # while it verifies, and the layer must still measure as what it is.
    ballast = b"\x01" * (300 * MB)
    events = Recorded()
    result = _build(index, tmp_path, events, requirements=["small"])
    assert len(ballast) == 300 * MB
    verification = result.manifest["verification"]
    assert 0 < verification["memory"]["baseline_rss_bytes"] <= verification["peak_rss_bytes"] < 64 * MB
    assert verification["memory"]["recommended_memory_mb"] == 128
    assert not [warning for warning in events.warnings if "memory" in warning]


@pytest.mark.parametrize(
    ("peak_mb", "setting"),
    [(1, 128), (85, 128), (86, 192), (150, 256), (213, 320), (214, 384), (7000, 10_240)],
)
def test_the_headroom_rule_is_half_again_in_64_mb_steps_within_lambdas_range(
    peak_mb: int, setting: int
) -> None:
    assert recommended_memory_mb(peak_mb * MB) == setting
