"""size-report's findings: the audit's system-library check over a function and all its layers."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from tests.report.test_size_report import run
from tests.support.elf import compile_linked_object

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the objects are built for x86_64")
NATIVE = "python/madeup/_native.abi3.so"


def _zip(path: Path, members: dict[str, Path | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, member in members.items():
            if isinstance(member, Path):
                archive.write(member, name)
            else:
                archive.writestr(name, member)
    return path


@pytest.fixture()
def layer(tmp_path: Path) -> Path:
    native = compile_linked_object(tmp_path / "native.so", ("libmadeup.so.3", "libz.so.1"))
    return _zip(
        tmp_path / "madeup.zip",
        {
            "python/madeup/__init__.py": "",
            NATIVE: native,
            "python/madeup-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: madeup\nVersion: 1.0\n",
            "python/madeup-1.0.dist-info/top_level.txt": "madeup\n",
        },
    )


def test_a_library_no_zip_and_not_the_runtime_has_is_a_finding_in_the_audits_words(layer: Path) -> None:
    result = run(str(layer), "--runtime", "python3.12", "--json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    checked = payload["system_libraries"]
    assert checked["runtime"] == "python3.12" and checked["arch"] == "x86_64"
    [finding] = checked["findings"]
    assert finding["code"] == "system-library" and finding["path"] == f"madeup.zip:{NATIVE}"
    assert finding["message"].startswith(f"libmadeup.so.3 is needed by {NATIVE} (from madeup)")
    assert payload["error"]["exit_code"] == 1 and "libmadeup.so.3" in payload["error"]["message"]
    assert payload["unzipped_bytes"] > 0  # the size report itself is all there


def test_a_library_in_another_zips_lib_folder_is_found(layer: Path, tmp_path: Path) -> None:
    library = compile_linked_object(tmp_path / "libmadeup.so.3.1", (), soname="libmadeup.so.3")
    natives = _zip(tmp_path / "natives.zip", {"lib/libmadeup.so.3.1": library, "python/natives.txt": "x"})
    result = run(str(layer), str(natives), "--runtime", "python3.12", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["system_libraries"]["findings"] == []


def test_the_runtime_comes_from_the_manifest_and_without_one_the_check_says_it_did_not_run(
    layer: Path,
) -> None:
    result = run(str(layer), "--json")
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)["system_libraries"]
    assert checked["runtime"] is None and "pass --runtime" in checked["reason"]

    manifest = layer.with_name("madeup.manifest.json")
    manifest.write_text(json.dumps({"zip": layer.name, "runtime": "python3.11", "arch": "x86_64"}))
    beside = run(str(layer), "--json")
    assert beside.exit_code == 1
    assert json.loads(beside.stdout)["system_libraries"]["runtime"] == "python3.11"
