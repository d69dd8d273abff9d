"""The SBOM and the license policy, end to end: tiny real wheels on a local index, real builds, the
CycloneDX 1.6 schema checked by cyclonedx-python-lib's own validator, and the `sbom` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from layerforge.build import BuildOptions, build
from layerforge.cache import sha256_of
from layerforge.errors import LicensePolicyError, RecipeError
from layerforge.recipe import recipe_from_mapping
from layerforge.sbom.document import serial_number
from layerforge.target import Target
from tests.support.elf import compile_source
from tests.support.index import LocalIndex

SONAME = "libgrafted-0a1b2c3d.so.5"
GRAFTED = f"grafted.libs/{SONAME}"
LIBRARY_SOURCE = "int grafted_answer(void) { return 42; }\n"


@pytest.fixture(scope="module")
def grafted_library(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A shared object with a SONAME, as auditwheel leaves one in `<dist>.libs/`."""
    out = tmp_path_factory.mktemp("grafted") / SONAME
    return compile_source(out, LIBRARY_SOURCE, f"-Wl,-soname,{SONAME}").read_bytes()


def metadata(name: str, version: str, *headers: str, requires: tuple[str, ...] = ()) -> str:
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *headers]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


@pytest.fixture()
def licensed_index(local_index: LocalIndex, grafted_library: bytes) -> LocalIndex:
    """Three distributions: `grafted` (MIT by PEP 639, ships a native library), `copyleft` (AGPL by its
    classifier), `mystery` (a license no SPDX id names)."""
    local_index.add_wheel(
        "grafted",
        "1.0",
        "cp311-cp311-manylinux2014_x86_64",
        files={"grafted/__init__.py": "ANSWER = 42\n", GRAFTED: grafted_library},
        extra_dist_info={
            "METADATA": metadata(
                "grafted", "1.0", "License-Expression: MIT", requires=("copyleft", "mystery")
            )
        },
    )
    local_index.add_wheel(
        "copyleft",
        "2.1",
        extra_dist_info={
            "METADATA": metadata(
                "copyleft",
                "2.1",
                "License: Dual Licensed - GNU AFFERO GPL 3.0 or Artifex Commercial License",
            )
        },
    )
    local_index.add_wheel(
        "mystery",
        "0.3",
        extra_dist_info={"METADATA": metadata("mystery", "0.3", "License: The Wibble Licence, v7")},
    )
    return local_index


def options(index: LocalIndex, tmp_path: Path, out: str = "out", **recipe: Any) -> BuildOptions:
    raw = {"name": "lic", "requirements": ["grafted"], **recipe}
    strict = bool(raw.pop("strict", False))
    return BuildOptions(
        recipe=recipe_from_mapping(raw, "lic.toml", "lic"),
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / out,
        cache_dir=tmp_path / "cache",
        index_url=index.url,
        verify=False,
        strict_licenses=strict,
    )


def components(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in document["components"]}


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def validate_offline(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's own JSON schema validator, with every socket refused: its schemas ship with it."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("the schema check must not reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    monkeypatch.undo()
    assert error is None, str(error)


def test_the_sbom_lists_every_locked_distribution_and_the_grafted_library_and_validates(
    licensed_index: LocalIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = build(options(licensed_index, tmp_path))
    text = result.sbom_path.read_text()
    validate_offline(text, monkeypatch)
    document = json.loads(text)
    assert document["specVersion"] == "1.6"
    assert "timestamp" not in document["metadata"]
    assert document["serialNumber"] == serial_number(result.manifest["sha256"]).urn
    root = document["metadata"]["component"]
    assert root["name"] == result.zip_path.name
    assert root["hashes"] == [{"alg": "SHA-256", "content": sha256_of(result.zip_path)}]

    found = components(document)
    for package in result.lock.packages:
        purl = f"pkg:pypi/{package.name}@{package.version}"
        assert found[purl]["purl"] == purl
        assert found[purl]["hashes"] == [{"alg": "SHA-256", "content": package.sha256}]
    assert found["pkg:pypi/grafted@1.0"]["licenses"] == [{"expression": "MIT"}]
    copyleft = found["pkg:pypi/copyleft@2.1"]
    assert copyleft["licenses"] == [{"expression": "AGPL-3.0-only"}]
    assert props(copyleft)["layerforge:license-status"] == "inferred"
    assert "Artifex" in props(copyleft)["layerforge:license-text"]
    mystery = found["pkg:pypi/mystery@0.3"]
    assert mystery["licenses"] == [{"license": {"name": "The Wibble Licence, v7"}}]
    assert props(mystery)["layerforge:license-status"] == "unknown"

    library = found[f"file:python/{GRAFTED}"]
    with zipfile.ZipFile(result.zip_path) as archive:
        shipped = archive.read(f"python/{GRAFTED}")
    import hashlib

    assert library["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(shipped).hexdigest()}]
    assert props(library)["layerforge:soname"] == SONAME
    depends = {d["ref"]: set(d.get("dependsOn", [])) for d in document["dependencies"]}
    assert depends["pkg:pypi/grafted@1.0"] == {f"file:python/{GRAFTED}"}
    assert depends[root["bom-ref"]] == {f"pkg:pypi/{p.name}@{p.version}" for p in result.lock.packages}
    assert result.manifest["sbom"] == result.sbom_path.name


def test_two_builds_from_one_lock_give_the_same_bytes_and_source_date_epoch_is_the_only_time(
    licensed_index: LocalIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(options(licensed_index, tmp_path, out="one"))
    again = options(licensed_index, tmp_path, out="two")
    second = build(dataclass_replace(again, lock_path=first.lock_path))
    assert second.sbom_path.read_bytes() == first.sbom_path.read_bytes()

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = build(
        dataclass_replace(options(licensed_index, tmp_path, out="three"), lock_path=first.lock_path)
    )
    document = json.loads(dated.sbom_path.read_text())
    assert document["metadata"]["timestamp"] == "2023-11-14T22:13:20+00:00"


def dataclass_replace(value: BuildOptions, **changes: Any) -> BuildOptions:
    import dataclasses

    return dataclasses.replace(value, **changes)


def test_a_denied_license_fails_the_build_naming_the_distribution_its_license_and_the_rule(
    licensed_index: LocalIndex, tmp_path: Path
) -> None:
    policy = {"deny_licenses": ["AGPL-3.0-only", "AGPL-3.0-or-later"]}
    with pytest.raises(LicensePolicyError) as caught:
        build(options(licensed_index, tmp_path, policy=policy))
    message = str(caught.value)
    assert "copyleft 2.1" in message and "AGPL-3.0-only" in message and "deny_licenses" in message
    assert caught.value.exit_code == 1
    assert not list((tmp_path / "out").glob("*.zip")), "a refused layer is not written"


def test_an_allow_list_refuses_what_it_does_not_name_and_passes_what_it_does(
    licensed_index: LocalIndex, tmp_path: Path
) -> None:
    with pytest.raises(LicensePolicyError) as caught:
        build(options(licensed_index, tmp_path, policy={"allow_licenses": ["MIT", "BSD-3-Clause"]}))
    assert "copyleft 2.1" in str(caught.value) and "allow_licenses" in str(caught.value)
    assert "grafted" not in str(caught.value)

    allowed = {"allow_licenses": ["MIT", "AGPL-3.0-only"]}
    result = build(options(licensed_index, tmp_path, out="allowed", policy=allowed))
    assert result.sbom_path.is_file()


def test_an_unknown_license_is_a_warning_or_with_strict_licenses_an_error(
    licensed_index: LocalIndex, tmp_path: Path
) -> None:
    warnings: list[str] = []

    class Events:
        def __getattr__(self, _name: str) -> Any:
            return lambda *args, **kwargs: None

        def warn(self, message: str) -> None:
            warnings.append(message)

    build(options(licensed_index, tmp_path), Events())  # type: ignore[arg-type]
    assert any("mystery 0.3" in w and "Wibble" in w for w in warnings), warnings
    with pytest.raises(LicensePolicyError) as caught:
        build(options(licensed_index, tmp_path, out="strict", strict=True))
    assert "mystery 0.3" in str(caught.value) and "--strict-licenses" in str(caught.value)


def test_a_policy_names_spdx_ids_only(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"did you mean AGPL-3.0"):
        recipe_from_mapping(
            {"name": "x", "requirements": ["a"], "policy": {"deny_licenses": ["AGPL 3"]}}, "x", "x"
        )
    with pytest.raises(RecipeError, match=r"did you mean `policy.deny_licenses`"):
        recipe_from_mapping(
            {"name": "x", "requirements": ["a"], "policy": {"deny_license": ["MIT"]}}, "x", "x"
        )


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
        check=False,
    )


def test_sbom_of_a_built_layer_gives_the_build_s_own_bytes_and_applies_a_recipe_policy(
    licensed_index: LocalIndex, tmp_path: Path
) -> None:
    built = build(options(licensed_index, tmp_path))
    again = tmp_path / "again.cdx.json"
    completed = run_cli("sbom", str(built.zip_path), "-o", str(again), "--json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    # The lock beside the zip gives the wheels' sha256: the same document as the build's.
    assert again.read_bytes() == built.sbom_path.read_bytes()
    assert json.loads(completed.stdout)["native_libraries"][0]["soname"] == SONAME

    recipe = tmp_path / "deny.toml"
    recipe.write_text(
        'name = "lic"\nrequirements = ["grafted"]\n[policy]\ndeny_licenses = ["AGPL-3.0-only"]\n'
    )
    completed = run_cli("sbom", str(built.zip_path), "-o", str(again), "--recipe", str(recipe), cwd=tmp_path)
    assert completed.returncode == 1
    assert "copyleft 2.1 is licensed AGPL-3.0-only" in completed.stderr
    assert "Traceback" not in completed.stderr


def hand_zip(path: Path, grafted_library: bytes, *, dist_info: bool) -> Path:
    members = {
        "python/handmade/__init__.py": "X = 1\n",
        "python/loose.py": "Y = 2\n",
        f"python/{GRAFTED}": grafted_library,
    }
    if dist_info:
        members["python/handmade-0.9.dist-info/METADATA"] = metadata(
            "handmade", "0.9", "Classifier: License :: OSI Approved :: MIT License"
        )
        members["python/handmade-0.9.dist-info/top_level.txt"] = "handmade\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_sbom_of_a_zip_made_by_hand_is_valid(
    grafted_library: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = hand_zip(tmp_path / "made.zip", grafted_library, dist_info=True)
    completed = run_cli("sbom", str(made), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    text = (tmp_path / "made.cdx.json").read_text()
    validate_offline(text, monkeypatch)
    found = components(json.loads(text))
    handmade = found["pkg:pypi/handmade@0.9"]
    assert handmade["licenses"] == [{"expression": "MIT"}] and "hashes" not in handmade  # no lock, no hash
    assert found["top-level:loose"]["name"] == "loose" and "version" not in found["top-level:loose"]
    assert props(found[f"file:python/{GRAFTED}"])["layerforge:soname"] == SONAME


def test_sbom_of_a_zip_whose_dist_info_was_deleted_says_so_and_invents_no_version(
    grafted_library: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stripped = hand_zip(tmp_path / "guide.zip", grafted_library, dist_info=False)
    completed = run_cli("sbom", str(stripped), "--json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "no distribution metadata is left" in completed.stderr
    assert "top-level packages found: handmade, loose" in completed.stderr
    assert f"python/{GRAFTED} (SONAME {SONAME})" in completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["distributions"] == [] and summary["without_metadata"] == ["handmade", "loose"]
    text = (tmp_path / "guide.cdx.json").read_text()
    validate_offline(text, monkeypatch)
    document = json.loads(text)
    assert all("version" not in c and "purl" not in c for c in document["components"])


def test_sbom_of_something_that_is_not_a_zip_exits_2(tmp_path: Path) -> None:
    (tmp_path / "not.zip").write_text("hello")
    completed = run_cli("sbom", str(tmp_path / "not.zip"), cwd=tmp_path)
    assert completed.returncode == 2 and "not a readable zip" in completed.stderr
