"""Real layers from the real package index (PyPI by default; LAYERFORGE_TEST_INDEX_URL overrides).

These download about 80 MB of wheels and take a few minutes; CI runs them. Skip with `-m "not network"`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from layerforge.limits import recommended_memory_mb
from layerforge.runners.interpreters import find_interpreter
from layerforge.target import Target

pytestmark = pytest.mark.network

INDEX_URL = os.environ.get("LAYERFORGE_TEST_INDEX_URL", "https://pypi.org/simple")
GUIDE_UNZIPPED_BYTES = 223_272_795


def layerforge(*args: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAYERFORGE_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "layerforge", *args, "--index-url", INDEX_URL],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def build_json(*args: str, cache: Path, cwd: Path) -> tuple[dict[str, object], str]:
    completed = layerforge("build", *args, "--json", cache=cache, cwd=cwd)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout), completed.stderr


@pytest.fixture(scope="module")
def sklearn_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str, Path]:
    work = tmp_path_factory.mktemp("sklearn")
    manifest, stderr = build_json("sklearn", "--out", str(work / "dist"), cache=work / "cache", cwd=work)
    return manifest, stderr, work


def test_sklearn_layer_builds_verifies_and_beats_the_guides_size(
    sklearn_build: tuple[dict, str, Path],
) -> None:
    manifest, stderr, work = sklearn_build
    dist = work / "dist"
    assert {p.name for p in dist.iterdir()} == {
        "sklearn-python3.11-x86_64.zip",
        "sklearn-python3.11-x86_64.lock.json",
        "sklearn-python3.11-x86_64.manifest.json",
        "sklearn-python3.11-x86_64.cdx.json",
    }
    assert manifest["verified"] is True
    verification = manifest["verification"]
    assert verification["compiled_from_source"] == []
    assert verification["smoke_ok"] is True
    # The import and the smoke code are measured, and the advice is printed beside them.
    peak = verification["peak_rss_bytes"]
    assert peak > verification["memory"]["baseline_rss_bytes"] > 0
    assert f"is {recommended_memory_mb(peak)} MB" in " ".join(stderr.split())
    assert manifest["unzipped_bytes"] < GUIDE_UNZIPPED_BYTES
    with zipfile.ZipFile(dist / "sklearn-python3.11-x86_64.zip") as archive:
        assert sum(i.file_size for i in archive.infolist()) == manifest["unzipped_bytes"]
    numpy = next(p for p in manifest["packages"] if p["name"] == "numpy")
    assert Version(numpy["version"]) < Version("2.3")
    assert "numpy" in stderr and "newest release with a wheel that fits" in stderr


def test_sklearn_layer_imports_in_a_fresh_interpreter_that_sees_only_the_layer(
    sklearn_build: tuple[dict, str, Path], tmp_path: Path
) -> None:
    _manifest, _stderr, work = sklearn_build
    with zipfile.ZipFile(work / "dist" / "sklearn-python3.11-x86_64.zip") as archive:
        archive.extractall(tmp_path / "opt")
    interpreter = find_interpreter(Target("python3.11"))
    assert interpreter is not None
    probe = f"""
import sys
sys.path[:0] = [{str(tmp_path / "opt" / "python")!r}]
import importlib.metadata, sklearn, pandas, numpy, scipy, joblib, threadpoolctl
from sklearn.datasets import load_iris
assert all(p.startswith({str(tmp_path)!r}) for p in (sklearn.__file__, pandas.__file__, numpy.__file__))
assert load_iris().data.shape == (150, 4)
print(importlib.metadata.version("scikit-learn"), numpy.__version__)
"""
    completed = subprocess.run(
        [str(interpreter.path), "-I", "-S", "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split()[0] == next(
        p["version"] for p in _manifest["packages"] if p["name"] == "scikit-learn"
    )


def test_rebuild_from_the_lock_with_an_empty_cache_is_byte_identical(
    sklearn_build: tuple[dict, str, Path], tmp_path: Path
) -> None:
    manifest, _stderr, work = sklearn_build
    lock = work / "dist" / "sklearn-python3.11-x86_64.lock.json"
    assert rebuild_from_lock("sklearn", lock, tmp_path)["sha256"] == manifest["sha256"]


def rebuild_from_lock(recipe: str, lock: Path, work: Path, *args: str) -> dict[str, object]:
    """The build of exactly `lock`, into work/again, with an empty wheel cache: nothing reused."""
    again, _ = build_json(
        recipe, *args, "--lock", str(lock), "--out", str(work / "again"), cache=work / "empty-cache", cwd=work
    )
    return again


SDIST_ONLY_RECIPE = """name = "sdistonly"
requirements = ["imutils", "pandasql"]
runtime = "python3.12"

[verify]
skip = ["imutils"]  # imports cv2, which it does not declare
smoke = '''
import pandas as pd
from pandasql import sqldf
frame = pd.DataFrame({"a": [1, 2, 3]})
assert sqldf("select sum(a) as s from frame", {"frame": frame})["s"][0] == 6
'''
"""


def test_imutils_and_pandasql_have_only_sdists_and_build_on_the_host_without_docker(tmp_path: Path) -> None:
    """Neither ships a wheel at all; both are pure Python, so no Docker is needed, and the lock rebuilds."""
    recipe = tmp_path / "sdistonly.toml"
    recipe.write_text(SDIST_ONLY_RECIPE)
    manifest, stderr = build_json(
        str(recipe), "--no-docker", "--out", str(tmp_path / "dist"), cache=tmp_path / "cache", cwd=tmp_path
    )
    assert manifest["verified"] is True and manifest["verification"]["smoke_ok"] is True
    lock_path = tmp_path / "dist" / "sdistonly-python3.12-x86_64.lock.json"
    pins = {p["name"]: p for p in json.loads(lock_path.read_text())["packages"]}
    for name in ("imutils", "pandasql"):
        built_from = pins[name]["built_from"]
        assert pins[name]["wheel"].endswith("-py3-none-any.whl")
        assert built_from["builder"] == "host" and "image" not in built_from
        assert built_from["sdist"].startswith("https://files.pythonhosted.org/")
        assert re.fullmatch(r"[0-9a-f]{64}", built_from["sdist_sha256"])
        assert f"{name} " in stderr and "on this machine (pure Python)" in stderr
    with zipfile.ZipFile(tmp_path / "dist" / "sdistonly-python3.12-x86_64.zip") as archive:
        names = archive.namelist()
    assert "python/imutils/convenience.py" in names or "python/imutils/convenience.pyc" in names

    # From the lock with an empty cache: both built again here, byte for byte the same layer.
    again = rebuild_from_lock(str(recipe), lock_path, tmp_path, "--no-docker")
    assert again["sha256"] == manifest["sha256"]


def test_python312_takes_numpy_2_3_or_newer_from_a_manylinux_2_28_wheel(tmp_path: Path) -> None:
    manifest, stderr = build_json(
        "sklearn",
        "--runtime",
        "python3.12",
        "--out",
        str(tmp_path / "dist"),
        cache=tmp_path / "cache",
        cwd=tmp_path,
    )
    numpy = next(p for p in manifest["packages"] if p["name"] == "numpy")
    assert Version(numpy["version"]) >= Version("2.3")
    assert "manylinux_2_28_x86_64" in numpy["wheel"] and "cp312" in numpy["wheel"]
    assert manifest["verified"] is True
    assert "cpython 3.12" in stderr  # the output names the interpreter that verified it


def test_awswrangler_over_the_limit_names_boto3_and_fits_without_what_the_runtime_provides(
    tmp_path: Path,
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("awswrangler\n")
    args = (
        str(requirements),
        "--name",
        "awswrangler",
        "--runtime",
        "python3.12",
        "--out",
        str(tmp_path / "d"),
    )
    over = layerforge("build", *args, cache=tmp_path / "cache", cwd=tmp_path)
    assert over.returncode == 3, over.stderr[-3000:]
    provided = next(line for line in over.stderr.splitlines() if "runtime provides" in line)
    assert re.search(r"boto3 [\d,]+", provided) and re.search(r"botocore [\d,]+", provided), provided
    manifest, _ = build_json(*args, "--exclude-runtime-provided", cache=tmp_path / "cache", cwd=tmp_path)
    assert manifest["verified"] is True
    assert manifest["unzipped_bytes"] <= 262_144_000
    excluded = {d["name"] for d in manifest["runtime_provided"]["excluded"]}
    assert {"boto3", "botocore"} <= excluded
    assert not excluded & {p["name"] for p in manifest["packages"]}


def test_numpy_arm64_layer_holds_only_aarch64_shared_objects(tmp_path: Path) -> None:
    manifest, stderr = build_json(
        "numpy", "--arch", "arm64", "--out", str(tmp_path / "dist"), cache=tmp_path / "cache", cwd=tmp_path
    )
    assert set(manifest["audit"]["machines"]) == {"aarch64"}
    with zipfile.ZipFile(manifest["zip"]) as archive:
        objects = [i for i in archive.infolist() if ".so" in i.filename.rsplit("/", 1)[-1]]
        assert objects
        for info in objects:
            header = archive.open(info).read(20)
            assert header[:4] == b"\x7fELF"
            assert int.from_bytes(header[18:20], "little") == 183, info.filename  # EM_AARCH64
    assert manifest["verified"] is None
    assert "only the static audit" in stderr


def test_removing_pandas_testing_fails_verification_and_names_the_rule(tmp_path: Path) -> None:
    recipe = tmp_path / "broken.toml"
    recipe.write_text(
        'name = "broken"\nrequirements = ["pandas"]\n'
        '[strip]\nremove = ["pandas/_testing/**"]\nbytecode = "none"\n'
    )
    completed = layerforge(
        "build", str(recipe), "--out", str(tmp_path / "dist"), cache=tmp_path / "c", cwd=tmp_path
    )
    assert completed.returncode == 1
    assert "pandas._testing" in completed.stderr
    assert "recipe:remove:pandas/_testing/**" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not list((tmp_path / "dist").glob("*.zip"))


def test_duckdb_builds_and_skips_its_optional_adbc_driver_by_name(tmp_path: Path) -> None:
    # duckdb's wheel also ships adbc_driver_duckdb, which imports adbc_driver_manager: an optional
    # dependency duckdb does not require. It must be a warning, not a failed build.
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("duckdb\n")
    manifest, stderr = build_json(
        str(requirements),
        "--name",
        "duckdb",
        "--runtime",
        "python3.12",
        "--out",
        str(tmp_path / "dist"),
        cache=tmp_path / "cache",
        cwd=tmp_path,
    )
    assert manifest["verified"] is True
    verification = manifest["verification"]
    assert "duckdb" in verification["imported"]
    (skipped,) = verification["optional_modules"]
    assert skipped["module"] == "adbc_driver_duckdb"
    assert skipped["distributions"] == ["duckdb"]
    assert skipped["missing"].split(".")[0] == "adbc_driver_manager"
    assert "adbc_driver_duckdb (from duckdb) is optional" in " ".join(stderr.split())
    assert isinstance(verification["peak_rss_bytes"], int)


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="chromium is not installed"
)
def test_the_html_size_report_of_the_sklearn_layer_renders_its_chart_in_chromium(
    sklearn_build: tuple[dict, str, Path], tmp_path: Path
) -> None:
    _manifest, _stderr, work = sklearn_build
    manifest_path = work / "dist" / "sklearn-python3.11-x86_64.manifest.json"
    page = tmp_path / "sklearn.html"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "layerforge",
            "size-report",
            str(manifest_path),
            "--html",
            str(page),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium is not None
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    ready = re.search(r'<div id="lf-chart-ready"[^>]*data-cells="(\d+)"', dom.stdout)
    assert ready and int(ready.group(1)) >= 6  # sklearn, numpy, scipy, pandas, joblib, threadpoolctl, ...
    assert not [line for line in dom.stderr.splitlines() if "Uncaught" in line or "CONSOLE" in line]
    shot = Path(os.environ.get("LAYERFORGE_SCREENSHOT_DIR", tmp_path)) / "sklearn-size-report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    taken = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert taken.returncode == 0 and shot.stat().st_size > 30_000


def _opencv_for_python312(tmp_path: Path, recipe: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "opencv.toml").write_text(recipe)
    out = ("--runtime", "python3.12", "--out", str(tmp_path / "dist"), "--json")
    return layerforge("build", str(tmp_path / "opencv.toml"), *out, cache=tmp_path / "cache", cwd=tmp_path)


def test_opencv_python_for_python312_is_refused_naming_libgl_the_object_and_the_headless_wheel(
    tmp_path: Path,
) -> None:
    # Its bundled Qt needs libGL and X11, which Lambda's runtimes lack: it would die at import there.
    completed = _opencv_for_python312(tmp_path, 'name = "opencv"\nrequirements = ["opencv-python"]\n')
    assert completed.returncode == 1, completed.stderr[-3000:]
    message = json.loads(completed.stdout)["error"]
    # Qt's xcb plugin (opencv-python 5) or cv2 itself (4.x) needs it, with X11 and xcb beside it.
    named = re.search(
        r"libGL\.so\.1\b[^:]*? (?:is|are) needed by (python/\S+) \(from opencv-python\)", message
    )
    assert named, message[-3000:]
    assert "use opencv-python-headless instead of opencv-python" in message
    assert "Traceback" not in completed.stderr
    assert not list((tmp_path / "dist").glob("*.zip"))


def test_opencv_python_headless_for_python312_builds_verifies_and_encodes(tmp_path: Path) -> None:
    completed = _opencv_for_python312(
        tmp_path,
        'name = "opencv"\nrequirements = ["opencv-python-headless"]\n'
        "[verify]\nsmoke = '''\n"
        "import cv2\nimport numpy as np\n"
        "ok, png = cv2.imencode('.png', np.zeros((8, 8, 3), dtype=np.uint8))\n"
        "assert ok and png[1:4].tobytes() == b'PNG'\n"
        "'''\n",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    manifest = json.loads(completed.stdout)
    assert manifest["verified"] is True
    assert manifest["verification"]["smoke_ok"] is True
    assert not [f for f in manifest["audit"]["findings"] if f["code"] == "system-library"]
