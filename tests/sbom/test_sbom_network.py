"""The SBOM of real layers from PyPI: the sklearn stack (OpenBLAS and libgfortran bundled under numpy and
scipy) and PyMuPDF under a policy that denies the AGPL. Needs the network; skip with `-m "not network"`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

pytestmark = pytest.mark.network

INDEX_URL = os.environ.get("LAYERFORGE_TEST_INDEX_URL", "https://pypi.org/simple")


def layerforge(*args: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerforge", *args, "--index-url", INDEX_URL],
        cwd=cwd,
        env={**os.environ, "LAYERFORGE_CACHE_DIR": str(cache), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def build(*args: str, cache: Path, cwd: Path) -> dict[str, Any]:
    completed = layerforge("build", *args, "--no-verify", "--json", cache=cache, cwd=cwd)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def test_the_sklearn_layer_sbom_lists_every_pin_and_the_bundled_blas_and_is_reproducible(
    tmp_path: Path,
) -> None:
    first = build("sklearn", "--out", str(tmp_path / "one"), cache=tmp_path / "cache", cwd=tmp_path)
    text = Path(first["sbom"]).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    found = {c["bom-ref"]: c for c in document["components"]}
    lock = json.loads(Path(first["lock"]).read_text())
    for pin in lock["packages"]:
        purl = f"pkg:pypi/{pin['name']}@{pin['version']}"
        assert found[purl]["hashes"] == [{"alg": "SHA-256", "content": pin["sha256"]}], purl
    owner = {ref: d["ref"] for d in document["dependencies"] for ref in d.get("dependsOn", [])}
    libraries = [c for c in document["components"] if c["bom-ref"].startswith("file:")]

    def bundled(stem: str) -> set[str]:
        return {
            owner[c["bom-ref"]].split("@")[0]
            for c in libraries
            if stem in c["name"].lower() and len(c["hashes"]) == 1
        }

    assert bundled("openblas") & {"pkg:pypi/numpy", "pkg:pypi/scipy"}, libraries
    assert bundled("libgfortran") & {"pkg:pypi/numpy", "pkg:pypi/scipy"}, libraries
    print(
        f"\nsklearn SBOM: {len(document['components'])} components, {len(lock['packages'])} distributions, "
        f"{len(libraries)} native libraries: {sorted(c['name'] for c in libraries)}; zip {first['sha256']}"
    )

    second = build(
        "sklearn",
        "--out",
        str(tmp_path / "two"),
        "--lock",
        first["lock"],
        cache=tmp_path / "cache",
        cwd=tmp_path,
    )
    assert Path(second["sbom"]).read_bytes() == Path(first["sbom"]).read_bytes()
    print(f"both SBOMs: sha256 {__import__('hashlib').sha256(Path(second['sbom']).read_bytes()).hexdigest()}")


def test_pymupdf_under_a_policy_that_denies_the_agpl_exits_1_naming_it(tmp_path: Path) -> None:
    recipe = tmp_path / "pdf.toml"
    recipe.write_text(
        'name = "pdf"\nrequirements = ["PyMuPDF"]\n'
        '[policy]\ndeny_licenses = ["AGPL-3.0-only", "AGPL-3.0-or-later"]\n'
    )
    completed = layerforge(
        "build", str(recipe), "--out", str(tmp_path / "dist"), cache=tmp_path / "cache", cwd=tmp_path
    )
    print(f"\nPyMuPDF: exit {completed.returncode}: {completed.stderr.strip().splitlines()[-2:]}")
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert "PyMuPDF" in completed.stderr and "AGPL-3.0" in completed.stderr
    assert "deny_licenses" in completed.stderr and "policy" in completed.stderr.split("hint:")[1]
    assert not list((tmp_path / "dist").glob("*.zip"))
