"""Over a size limit, the error names what would close the gap, with bytes; and leaving out what the
runtime provides works end to end. Real pip against tiny wheels on 127.0.0.1, real gcc-built ELF, a real
clean interpreter for verification."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from layerforge.build import BuildOptions, BuildResult, build
from layerforge.errors import LockError, SizeLimitError, VerificationError
from layerforge.recipe import recipe_from_mapping
from layerforge.resolve.lock import read_lock
from layerforge.target import Target
from tests.layers import publish_demo_stack
from tests.support.index import LocalIndex

# A stand-in SDK shaped like the real one: boto3's dependency closure, each with its own payload size,
# and one dependency (sdkextra) that the runtime does not provide.
SDK: dict[str, tuple[list[str], dict[str, str]]] = {
    "boto3": (
        ["botocore", "s3transfer", "jmespath", "sdkextra"],
        {
            "boto3/__init__.py": "from botocore import core\n\n"
            "def client(name):\n    return 'client:' + name + ':' + core.VERSION\n",
            "boto3/data/resources.json": "{}" + " " * 9_000,
        },
    ),
    "botocore": (
        ["jmespath", "python-dateutil", "urllib3"],
        {
            "botocore/__init__.py": "",
            "botocore/core.py": "import dateutil, jmespath, urllib3\nVERSION = 'stand-in'\n",
            "botocore/data/model.json": "{}" + " " * 60_000,
        },
    ),
    "s3transfer": (["botocore"], {"s3transfer/__init__.py": "import botocore\n" + "#" * 3_000}),
    "jmespath": ([], {"jmespath/__init__.py": "#" * 2_000}),
    "python-dateutil": (["six"], {"dateutil/__init__.py": "import six\n" + "#" * 5_000}),
    "six": ([], {"six.py": "#" * 1_000}),
    "urllib3": ([], {"urllib3/__init__.py": "#" * 7_000}),
    "sdkextra": ([], {"sdkextra/__init__.py": "EXTRA = 1\n"}),
}
PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}

APP_INIT = """\
import boto3
from helperdep import HELP


def run():
    return boto3.client("s3") + HELP
"""
SMOKE = """\
import awsapp
assert awsapp.run() == "client:s3:stand-in!", awsapp.run()
"""
# With the runtime-provided ones left out, boto3 comes from beside the layer (the runtime's place).
SMOKE_OUTSIDE = (
    SMOKE
    + """\
import os, boto3
layer = os.path.dirname(os.path.dirname(awsapp.__file__))
assert not boto3.__file__.startswith(layer + os.sep), (boto3.__file__, layer)
"""
)


@pytest.fixture()
def sdk_index(local_index: LocalIndex, tmp_path: Path) -> LocalIndex:
    publish_demo_stack(local_index, tmp_path)  # fastlib: a real shared object with a symbol table
    for name, (requires, files) in SDK.items():
        local_index.add_wheel(name, "1.0", files=files, requires=requires)
    local_index.add_wheel("helperdep", "1.0", files={"helperdep/__init__.py": 'HELP = "!"\n'})
    local_index.add_wheel(
        "awsapp",
        "1.0",
        files={
            "awsapp/__init__.py": APP_INIT,
            # The aggressive profile's benchmarks rule removes this; the safe profile keeps it.
            "awsapp/benchmarks/bench_run.py": "x = 1\n" * 2_000,
        },
        requires=["boto3", "helperdep", "fastlib"],
    )
    return local_index


def options(
    index: LocalIndex,
    tmp_path: Path,
    out: str,
    smoke: str = SMOKE,
    lock: Path | None = None,
    **recipe: Any,
) -> BuildOptions:
    raw = {"name": "app", "requirements": ["awsapp"], "verify": {"smoke": smoke}, **recipe}
    return BuildOptions(
        recipe=recipe_from_mapping(raw, "app.toml", "app"),
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / out,
        cache_dir=tmp_path / "cache",
        index_url=index.url,
        lock_path=lock,
    )


def sizes(result: BuildResult) -> dict[str, int]:
    return {p["name"]: p["unzipped_bytes"] for p in result.manifest["packages"]}


def zip_sizes(path: Path) -> dict[str, int]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: info.file_size for info in archive.infolist() if not info.is_dir()}


def way(message: str, start: str) -> str:
    lines = [line for line in message.splitlines() if line.startswith(f"  - {start}")]
    assert len(lines) == 1, message
    return lines[0]


def over_budget(index: LocalIndex, tmp_path: Path, budget: int, smoke: str = SMOKE, **recipe: Any) -> str:
    with pytest.raises(SizeLimitError) as raised:
        build(options(index, tmp_path, "over", smoke, limits={"unzipped_bytes": budget}, **recipe))
    assert raised.value.exit_code == 3
    assert not list((tmp_path / "over").glob("*.zip"))
    return str(raised.value)


def test_the_size_error_lists_runtime_provided_dists_the_aggressive_estimate_and_the_biggest(
    sdk_index: LocalIndex, tmp_path: Path
) -> None:
    fits = build(options(sdk_index, tmp_path, "fits"))
    layer = sizes(fits)
    assert set(layer) >= PROVIDED
    message = over_budget(sdk_index, tmp_path, fits.manifest["unzipped_bytes"] - 1)

    assert f"{fits.manifest['unzipped_bytes']:,} bytes unzipped" in message and "(by 1)" in message
    provided = way(message, "leave out what the python3.11 runtime provides")
    listed = dict(
        re.findall(r"([a-z0-9-]+) ([\d,]*\d)(?=, [a-z]|$)", provided.split("(", 1)[1].split(")")[0])
    )
    assert {name: int(size.replace(",", "")) for name, size in listed.items()} == {
        name: layer[name] for name in PROVIDED
    }
    total = sum(layer[name] for name in PROVIDED)
    assert f"provides, {total:,} bytes" in provided and "enough on its own" in provided
    assert "on AWS's schedule" in provided and "--exclude-runtime-provided" in provided
    assert "exclude_runtime_provided = true" in provided
    assert "sdkextra" not in provided and "helperdep" not in provided

    assert "an estimate" in way(message, "the aggressive strip profile, about")

    biggest = sorted(layer.items(), key=lambda item: (-item[1], item[0]))[:3]
    assert way(message, "the biggest distributions") == (
        "  - the biggest distributions: "
        + ", ".join(f"{name} {size:,}" for name, size in biggest)
        + " (leave one out, or split it into a second layer)"
    )


def symbol_tables(data: bytes, where: Path) -> int:
    where.write_bytes(data)
    with where.open("rb") as stream:
        elf = ELFFile(stream)
        tables = [elf.get_section_by_name(name) for name in (".symtab", ".strtab")]
        return sum(int(table.data_size) for table in tables if table is not None)


def test_the_aggressive_estimate_is_what_an_aggressive_build_removes(
    sdk_index: LocalIndex, tmp_path: Path
) -> None:
    safe = build(options(sdk_index, tmp_path, "safe"))
    aggressive = build(options(sdk_index, tmp_path, "aggressive", strip={"profile": "aggressive"}))
    message = over_budget(sdk_index, tmp_path, safe.manifest["unzipped_bytes"] - 1)
    found = re.search(
        r"aggressive strip profile, about ([\d,]+) bytes \(([\d,]+) in ([\d,]+) files and ([\d,]+) of "
        r"symbol tables in shared objects; an estimate",
        message,
    )
    assert found, message
    total, file_bytes, files, symbols = (int(g.replace(",", "")) for g in found.groups())

    before, after = zip_sizes(safe.zip_path), zip_sizes(aggressive.zip_path)
    # Files the real aggressive build left out; bytecode is the build's own in both, and shared objects
    # are cut rather than removed.
    gone = {p: s for p, s in before.items() if p not in after and not p.endswith((".pyc", ".so"))}
    assert any("/benchmarks/" in p for p in gone) and any(p.endswith(".dist-info/WHEEL") for p in gone)
    assert (file_bytes, files) == (sum(gone.values()), len(gone))

    so = next(p for p in before if p.endswith(".so"))
    with zipfile.ZipFile(safe.zip_path) as archive:
        assert symbols == symbol_tables(archive.read(so), tmp_path / "native.so") > 0
    # strip also drops the two tables' section headers (64 bytes each) and their names: the estimate
    # counts the tables alone.
    assert symbols <= before[so] - after[so] <= symbols + 2 * 64 + 32
    assert total == file_bytes + symbols


def test_the_recipe_key_leaves_runtime_provided_dists_out_and_verifies_against_the_runtimes(
    sdk_index: LocalIndex, tmp_path: Path
) -> None:
    result = build(options(sdk_index, tmp_path, "out", SMOKE_OUTSIDE, exclude_runtime_provided=True))
    names = zip_sizes(result.zip_path)
    tops = {p.split("/")[1] for p in names}
    for gone in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3"):
        assert gone not in tops
    assert not any(re.match(r"python/(boto3|botocore|python_dateutil|six|urllib3)-", p) for p in names)
    # Only the runtime-provided ones go: boto3's own dependency that the runtime lacks stays.
    assert {"awsapp", "helperdep", "sdkextra", "fastlib"} <= tops
    assert {p["name"] for p in result.manifest["packages"]} == {"awsapp", "helperdep", "sdkextra", "fastlib"}

    provided = result.manifest["runtime_provided"]
    assert {d["name"] for d in provided["excluded"]} == PROVIDED
    assert provided["provided_by"] == "the python3.11 runtime" and "AWS's schedule" in provided["note"]
    assert sorted(provided["verified_with"]) == sorted(f"{name} 1.0" for name in PROVIDED)
    # The smoke code imported boto3 from outside the layer and called through to botocore.
    assert result.manifest["verified"] is True and result.manifest["verification"]["smoke_ok"] is True

    lock = read_lock(result.lock_path)
    assert {p.name for p in lock.left_out} == PROVIDED and set(lock.exclude) == PROVIDED
    # What is left out is pinned but not part of what the lock hash identifies: the layer's contents.
    assert dataclasses.replace(lock, left_out=()).lock_hash == lock.lock_hash


def test_without_the_runtimes_copies_the_excluded_layer_fails_verification(
    sdk_index: LocalIndex, tmp_path: Path
) -> None:
    """Only what the runtime provides stands in: a distribution the recipe excludes that the runtime does
    not provide is absent when the layer is checked too, so an import of it fails."""
    with pytest.raises(VerificationError) as raised:
        build(options(sdk_index, tmp_path, "out", exclude=["sdkextra"], verify={"imports": ["sdkextra"]}))
    assert "sdkextra" in str(raised.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "LAYERFORGE_CACHE_DIR": str(cwd / "cache")},
        timeout=300,
        check=False,
    )


def test_the_flag_turns_exit_3_into_a_verified_layer(sdk_index: LocalIndex, tmp_path: Path) -> None:
    fits = build(options(sdk_index, tmp_path, "fits"))
    provided = sum(sizes(fits)[name] for name in PROVIDED)
    recipe = tmp_path / "app.toml"
    budget = fits.manifest["unzipped_bytes"] - provided // 2
    recipe.write_text(
        f'name = "app"\nrequirements = ["awsapp"]\n[limits]\nunzipped_bytes = {budget}\n'
        f'[verify]\nsmoke = """\n{SMOKE_OUTSIDE}"""\n'
    )
    common = ("build", str(recipe), "--index-url", sdk_index.url, "--json")
    over = run_cli(*common, cwd=tmp_path)
    assert over.returncode == 3, over.stderr
    error = json.loads(over.stdout)["error"]
    assert "boto3" in error and "botocore" in error and "--exclude-runtime-provided" in error

    fitted = run_cli(*common, "--exclude-runtime-provided", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    manifest = json.loads(fitted.stdout)
    assert manifest["unzipped_bytes"] <= budget and manifest["verified"] is True
    assert {d["name"] for d in manifest["runtime_provided"]["excluded"]} == PROVIDED


def test_a_lock_that_pins_what_the_build_leaves_out_is_refused(sdk_index: LocalIndex, tmp_path: Path) -> None:
    pinned = build(options(sdk_index, tmp_path, "pinned")).lock_path
    with pytest.raises(LockError) as raised:
        build(options(sdk_index, tmp_path, "out", lock=pinned, exclude_runtime_provided=True))
    assert raised.value.exit_code == 2
    assert "boto3" in str(raised.value) and "--exclude-runtime-provided" in str(raised.value)


def test_ways_already_taken_are_not_offered_again(sdk_index: LocalIndex, tmp_path: Path) -> None:
    message = over_budget(
        sdk_index,
        tmp_path,
        1000,
        SMOKE_OUTSIDE,
        strip={"profile": "aggressive"},
        exclude_runtime_provided=True,
    )
    ways = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(ways) == 1 and ways[0].startswith("  - the biggest distributions: "), message
    assert "boto3" not in message
