"""A wheel whose extension needs a library that neither the layer nor Lambda's runtime has.

The wheel is built here, its extension compiled by gcc and linked against a made-up libmadeup.so.3;
the real pip resolves it from a local index, offline. `verify ZIP` runs as the user runs it."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from layerforge.build import BuildOptions, build
from layerforge.errors import AuditError
from layerforge.recipe import recipe_from_mapping
from layerforge.target import Target
from tests.support.elf import compile_linked_object
from tests.support.index import LocalIndex
from tests.verify.test_verify_zip import run

EXTENSION = "python/madeup/_native.abi3.so"

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the objects are built for x86_64")


@pytest.fixture()
def madeup_index(local_index: LocalIndex, tmp_path: Path) -> LocalIndex:
    native = compile_linked_object(tmp_path / "native.so", ("libmadeup.so.3", "libstdc++.so.6", "libz.so.1"))
    local_index.add_wheel(
        "madeup",
        "1.0",
        "cp311-abi3-manylinux2014_x86_64",
        # The package imports without its extension, so the import check alone would never see it.
        files={"madeup/__init__.py": "VALUE = 1\n", "madeup/_native.abi3.so": native.read_bytes()},
    )
    return local_index


def _options(index: LocalIndex, tmp_path: Path, **recipe: object) -> BuildOptions:
    raw = {"name": "madeup", "requirements": ["madeup"], **recipe}
    return BuildOptions(
        recipe=recipe_from_mapping(raw, "madeup.toml", "madeup"),
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        index_url=index.url,
    )


def test_the_build_fails_naming_the_library_the_object_and_the_distribution(
    madeup_index: LocalIndex, tmp_path: Path
) -> None:
    with pytest.raises(AuditError) as raised:
        build(_options(madeup_index, tmp_path))
    message = str(raised.value)
    assert raised.value.exit_code == 1
    assert f"libmadeup.so.3 is needed by {EXTENSION} (from madeup)" in message
    assert "python3.11 runtime (Amazon Linux 2, x86_64)" in message
    assert "lib/ folder" in message and "[audit] system_libraries" in message
    # libstdc++ and zlib are in the runtime: only the made-up library is named.
    assert "libstdc++" not in message and "libz.so.1 is" not in message
    assert list((tmp_path / "out").glob("*.zip")) == []


def test_declared_as_another_layers_it_builds_and_verify_zip_counts_that_layer(
    madeup_index: LocalIndex, tmp_path: Path
) -> None:
    result = build(_options(madeup_index, tmp_path, audit={"system_libraries": ["libmadeup.so.3"]}))
    assert result.manifest["verified"] is True
    assert not [f for f in result.manifest["audit"]["findings"] if f["code"] == "system-library"]

    # On its own, the zip is refused by `verify ZIP` in the same words, with exit 1.
    alone = run(str(result.zip_path), "--json", cwd=tmp_path)
    assert alone.returncode == 1, alone.stderr
    [finding] = json.loads(alone.stdout)["audit"]["findings"]
    assert finding["code"] == "system-library" and finding["path"] == EXTENSION
    assert finding["message"].startswith(f"libmadeup.so.3 is needed by {EXTENSION} (from madeup)")
    said = run(str(result.zip_path), cwd=tmp_path)
    assert said.returncode == 1
    assert "declare it in the recipe under [audit] system_libraries" in said.stderr  # text, not markup

    # With the layer that ships the library in its lib/ (/opt/lib on Lambda), it passes.
    library = compile_linked_object(tmp_path / "libmadeup.so.3.0", (), soname="libmadeup.so.3")
    other = tmp_path / "madeup-runtime.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.write(library, "lib/libmadeup.so.3.0")
    together = run(str(result.zip_path), "--layer", str(other), "--json", cwd=tmp_path)
    assert together.returncode == 0, together.stderr
    assert json.loads(together.stdout)["ok"] is True
