"""The composite GitHub Action (action.yml): its steps' scripts, run by bash as a runner runs them.

The report step runs the real layerforge; the build step runs against a stand-in `layerforge` that
prints what `build --json` prints, since a real build needs a package index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with moto[server]

from tests.support.size_zips import Zeros, dist, write_zip

ROOT = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def _step(step_id: str) -> dict[str, Any]:
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    return next(step for step in action["runs"]["steps"] if step.get("id") == step_id)


def _run_step(
    step_id: str, env: dict[str, str], tmp_path: Path, layerforge: str
) -> tuple[int, str, dict[str, str]]:
    """Run a step's script with bash -eo pipefail, as GitHub does; return (exit code, summary, outputs)."""
    step = _step(step_id)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "layerforge"
    shim.write_text(layerforge)
    shim.chmod(0o755)
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    summary.touch()
    outputs.touch()
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "RUNNER_TEMP": str(tmp_path),
        **env,
    }
    assert BASH is not None
    done = subprocess.run(
        [BASH, "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    pairs = (line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
    return done.returncode, summary.read_text(encoding="utf-8"), dict(pairs)


def _real_layerforge() -> str:
    return f'#!/bin/sh\nexec "{sys.executable}" -m layerforge "$@"\n'


def _manifest(tmp_path: Path, size: int) -> Path:
    layer = write_zip(
        tmp_path / "dist" / "demo-python3.11-x86_64.zip", dist("numpy", "2.2.6", {"numpy/a.so": Zeros(size)})
    )
    manifest = layer.with_name("demo-python3.11-x86_64.manifest.json")
    removed = {"files": 3, "bytes": 500, "by_rule": {"safe:tests": 500}, "by_package": {"numpy": 500}}
    manifest.write_text(
        json.dumps({"schema_version": 1, "kind": "layer", "zip": layer.name, "removed": removed})
    )
    return manifest


def _report_env(manifest: Path, **extra: str) -> dict[str, str]:
    base = {"MANIFEST": str(manifest), "MAX_UNZIPPED": "", "LAYER_ARNS": "", "COMPARE": "", "TOP": "5"}
    return {**base, "HTML": "report.html", **extra}


def test_the_report_step_writes_the_summary_and_passes_within_budget(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 1_000_000)
    status, summary, outputs = _run_step("report", _report_env(manifest), tmp_path, _real_layerforge())
    assert status == 0
    assert summary.startswith("## Lambda size report: ✅ within budget")
    assert "### Slimming removed from demo-python3.11-x86\\_64.zip" in summary
    assert outputs == {"html": "report.html", "over-budget": "false"}
    assert (tmp_path / "report.html").is_file()


def test_the_report_step_fails_the_job_over_budget_after_writing_the_summary(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 3_000_000)
    env = _report_env(manifest, MAX_UNZIPPED="2MB")
    status, summary, outputs = _run_step("report", env, tmp_path, _real_layerforge())
    assert status == 3
    assert summary.startswith("## Lambda size report: ❌ over budget")
    assert outputs["over-budget"] == "true"


def test_the_build_step_finds_the_manifest(tmp_path: Path) -> None:
    fake = '#!/bin/sh\necho \'{"zip": "dist/a.zip", "manifest": "dist/a.manifest.json"}\'\n'
    env = {"RECIPE": "sklearn", "RUNTIME": "python3.12", "ARCH": "", "OUT": "dist"}
    status, summary, outputs = _run_step("build", env, tmp_path, fake)
    assert status == 0 and summary == ""
    assert outputs == {"manifest": "dist/a.manifest.json", "zip": "dist/a.zip", "lock-hash": ""}


def test_the_cache_is_keyed_by_the_lock_s_hash_and_the_build_uses_it(tmp_path: Path) -> None:
    lock = tmp_path / "layer.lock.json"
    lock.write_text(json.dumps({"lock_hash": "c0ffee", "packages": []}))
    env = {"LOCK": str(lock), "PREFIX": "layerforge-Linux-X64-sklearn--x86_64-"}
    status, _, keyed = _run_step("cache-key", env, tmp_path, _real_layerforge())
    assert status == 0
    assert keyed == {
        "dir": f"{tmp_path}/layerforge-cache",
        "prefix": "layerforge-Linux-X64-sklearn--x86_64-",
        "key": "layerforge-Linux-X64-sklearn--x86_64-c0ffee",
    }
    (tmp_path / "x").mkdir()
    _, _, unlocked = _run_step("cache-key", {**env, "LOCK": ""}, tmp_path / "x", _real_layerforge())
    assert unlocked["key"] == "layerforge-Linux-X64-sklearn--x86_64-none"  # restored by prefix only

    # The build gets the lock and the cache folder, and says which lock it built (the save step's key).
    fake = (
        '#!/bin/sh\necho "$@" > "$RUNNER_TEMP/args"\n'
        'echo \'{"zip": "dist/a.zip", "manifest": "dist/a.manifest.json", "lock_hash": "beef"}\'\n'
    )
    env = {"RECIPE": "sklearn", "RUNTIME": "", "ARCH": "", "OUT": "dist", "LOCK": str(lock)}
    status, _, outputs = _run_step("build", {**env, "CACHE_DIR": keyed["dir"]}, tmp_path, fake)
    assert status == 0 and outputs["lock-hash"] == "beef"
    args = (tmp_path / "args").read_text().split()
    assert args[args.index("--lock") + 1] == str(lock)
    assert args[args.index("--cache-dir") + 1] == keyed["dir"]


def test_a_failed_build_says_why_in_the_summary(tmp_path: Path) -> None:
    fake = (
        "#!/bin/sh\n"
        'echo \'{"error": "the layer is 300,000,000 bytes unzipped", '
        '"hint": "slim harder", "exit_code": 3}\'\n'
        "exit 3\n"
    )
    env = {"RECIPE": "sklearn", "RUNTIME": "", "ARCH": "", "OUT": "dist"}
    status, summary, _ = _run_step("build", env, tmp_path, fake)
    assert status == 3
    assert "build failed (exit 3)" in summary and "300,000,000 bytes" in summary and "slim harder" in summary
