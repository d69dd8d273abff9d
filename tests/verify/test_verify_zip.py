"""`layerforge verify ZIP` on layer zips made here and elsewhere (by hand, as the guide did)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.elf import compile_shared_object, fake_pe


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerforge", "verify", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ),
    )


def hand_made_layer(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_good_layer_verifies(tmp_path: Path) -> None:
    layer = hand_made_layer(
        tmp_path / "good.zip",
        {
            "python/calc/__init__.py": b"from calc.core import add\n",
            "python/calc/core.py": b"def add(a, b):\n    return a + b\n",
            "python/calc-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: calc\nVersion: 1.0\n",
        },
    )
    completed = run(str(layer), "--json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    payload = json.loads(completed.stdout)
    assert payload["ok"] is True and payload["verified"] is True
    assert payload["verification"]["metadata_versions"] == {"calc": "1.0"}
    assert "calc" in payload["verification"]["imported"]
    assert len(payload["verification"]["compiled_from_source"]) == 2  # no bytecode in a hand-made zip


def test_the_guides_error_3_windows_binaries_are_caught_with_what_to_do(tmp_path: Path) -> None:
    pyd = fake_pe(tmp_path / "_check_build.cp312-win_amd64.pyd")
    layer = hand_made_layer(
        tmp_path / "guide.zip",
        {
            "python/sklearn/__init__.py": b"",
            "python/sklearn/__check_build/__init__.py": b"from ._check_build import check_build\n",
            "python/sklearn/__check_build/_check_build.cp312-win_amd64.pyd": pyd.read_bytes(),
        },
    )
    completed = run(str(layer), cwd=tmp_path)
    assert completed.returncode == 1
    assert "_check_build.cp312-win_amd64.pyd" in completed.stderr
    assert "Windows" in completed.stderr and "manylinux" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_guides_error_4_cp312_binaries_in_a_cp311_layer_are_caught(tmp_path: Path) -> None:
    so = compile_shared_object(tmp_path / "x.so")
    layer = hand_made_layer(
        tmp_path / "guide.zip",
        {
            "python/sklearn/__init__.py": b"",
            "python/sklearn/__check_build/_check_build.cpython-312-x86_64-linux-gnu.so": so.read_bytes(),
        },
    )
    completed = run(str(layer), "--runtime", "python3.11", cwd=tmp_path)
    assert completed.returncode == 1
    assert "cpython-312" in completed.stderr and "--runtime python3.12" in completed.stderr


def test_a_zip_without_python_folder_is_bad_input(tmp_path: Path) -> None:
    layer = hand_made_layer(tmp_path / "flat.zip", {"calc/__init__.py": b""})
    completed = run(str(layer), cwd=tmp_path)
    assert completed.returncode == 2
    assert "no entry under python/" in completed.stderr


def test_a_zip_that_escapes_is_refused(tmp_path: Path) -> None:
    layer = hand_made_layer(tmp_path / "evil.zip", {"python/ok.py": b"", "../../evil.py": b"x = 1"})
    completed = run(str(layer), cwd=tmp_path)
    assert completed.returncode == 1
    assert "climbs out of the tree" in completed.stderr
    assert not (tmp_path.parent / "evil.py").exists()
