"""Pure-Python sdists built on the host, without Docker; everything else still needs the build image.

Real throughout: the sdists (tests/support/sdists.py) carry their own PEP 517 backends, served by a PEP
503 index on 127.0.0.1, and the real pip builds them on this machine with build isolation. The C
extension one is really compiled by this machine's gcc, and refused for what it gives. No engine is
asked for anything: a FakeDockerClient stands where one would be, only to record that it was not used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from layerforge.build import BuildOptions, build
from layerforge.cache import WheelCache, sha256_of
from layerforge.cli import main
from layerforge.errors import BuildError, LockError
from layerforge.recipe import recipe_from_mapping
from layerforge.resolve.host_build import native_content
from layerforge.resolve.index import IndexWheel
from layerforge.resolve.lock import lock_from_dict, read_lock, runtimes_with_a_wheel
from layerforge.resolve.source_build import SOURCE_DATE_EPOCH, SourceBuilder
from layerforge.target import Target
from tests.support.elf import compile_shared_object
from tests.support.index import LocalIndex
from tests.support.sdists import c_extension_sdist, pure_python_sdist
from tests.support.wheelfactory import build_wheel
from tests.verify.test_container import FakeDockerClient

TARGET = Target("python3.11", "x86_64")
PURE = {
    "purepkg/__init__.py": "from purepkg.core import answer\n",
    "purepkg/core.py": "def answer():\n    return 42\n",
}


def options(index: LocalIndex, tmp: Path, *requirements: str, **more: object) -> BuildOptions:
    client = FakeDockerClient()
    raw = {
        "name": "pure",
        "requirements": list(requirements),
        "verify": {"smoke": "import purepkg\nassert purepkg.answer() == 42\n"},
    }
    base = BuildOptions(
        recipe=recipe_from_mapping(raw, "pure.toml", "pure"),
        target=TARGET,
        out_dir=tmp / "out",
        cache_dir=tmp / "cache",
        index_url=index.url,
        docker=False,
        docker_client=lambda: client,
    )
    return dataclasses.replace(base, **more)  # type: ignore[arg-type]


def sdists_fetched(index: LocalIndex) -> list[str]:
    return [name for name in index.downloads() if name.endswith(".tar.gz")]


@pytest.fixture()
def pure_index(local_index: LocalIndex) -> LocalIndex:
    """app (a wheel) needs purepkg, which has only an sdist of pure Python."""
    local_index.add_wheel("app", "1.0", requires=["purepkg"])
    pure_python_sdist(local_index.wheel_dir, "purepkg", "1.0", PURE)
    return local_index


def test_a_pure_python_sdist_builds_on_the_host_without_docker_and_the_lock_says_so(
    pure_index: LocalIndex, tmp_path: Path
) -> None:
    result = build(options(pure_index, tmp_path, "app"))

    raw = json.loads(result.lock_path.read_text())
    pins = {p["name"]: p for p in raw["packages"]}
    purepkg = pins["purepkg"]
    assert purepkg["wheel"] == "purepkg-1.0-py3-none-any.whl"
    assert purepkg["built_from"] == {
        "sdist": pure_index.file_url("purepkg-1.0.tar.gz"),
        "sdist_sha256": pure_index.sha256("purepkg-1.0.tar.gz"),
        "builder": "host",
        "source_date_epoch": SOURCE_DATE_EPOCH,
    }
    cached = WheelCache(tmp_path / "cache").lookup(purepkg["sha256"], purepkg["wheel"])
    assert cached is not None and sha256_of(cached) == purepkg["sha256"]
    # SOURCE_DATE_EPOCH reached the backend: every entry carries 1980-01-01.
    with zipfile.ZipFile(cached) as wheel:
        assert {info.date_time for info in wheel.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert "built_from" not in pins["app"]
    # The layer holds it and imports it: the smoke code ran in a clean interpreter.
    assert result.manifest["verified"] is True
    with zipfile.ZipFile(result.zip_path) as layer:
        assert "python/purepkg/core.py" in layer.namelist()
    assert "built from source (purepkg-1.0.tar.gz) on this machine (pure Python)" in " ".join(
        n["reason"] for n in raw["notes"]
    )
    assert read_lock(result.lock_path) == result.lock
    assert sdists_fetched(pure_index) == ["purepkg-1.0.tar.gz"]


def test_the_host_build_is_isolated_from_the_host_and_stamped(
    local_index: LocalIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pure_python_sdist(local_index.wheel_dir, "purepkg", "1.0", PURE, record_env=True)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))  # the machines set it: it must not reach pip
    result = build(options(local_index, tmp_path, "purepkg", verify=False))
    [package] = result.lock.packages
    cached = WheelCache(tmp_path / "cache").lookup(package.sha256, package.wheel)
    assert cached is not None
    with zipfile.ZipFile(cached) as wheel:
        seen = json.loads(wheel.read("purepkg/_build_env.json"))
    assert seen["SOURCE_DATE_EPOCH"] == str(SOURCE_DATE_EPOCH)
    # A scratch HOME, in the build's staging folder (inside the output folder), which the build removed.
    home = Path(seen["HOME"])
    assert seen["HOME"] != os.environ.get("HOME")
    assert home.parent.name.startswith("host-build-") and home.is_relative_to(
        result.zip_path.parent.resolve()
    )
    assert not home.parent.exists()
    # pip's own settings of the host are gone; only what layerforge sets for pip is there.
    assert "PIP_FIND_LINKS" not in seen["PIP"] and "PIP_CERT" not in seen["PIP"]
    assert seen["umask"] == 0o022


def test_build_requirements_come_from_the_index_as_wheels_only(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    """Only the one pinned sdist's backend runs here: a build requirement that has no wheel is not built."""
    helper_ran = tmp_path / "SENTINEL-a-build-requirement-was-built-here"
    pure_python_sdist(local_index.wheel_dir, "purepkg", "1.0", PURE, build_requires=["buildhelper"])
    pure_python_sdist(
        local_index.wheel_dir, "buildhelper", "1.0", {"buildhelper/__init__.py": ""}, sentinel=helper_ran
    )
    with pytest.raises(BuildError) as raised:
        build(options(local_index, tmp_path, "purepkg", verify=False))
    assert "purepkg-1.0.tar.gz did not build a pure-Python wheel on this machine" in raised.value.message
    assert "buildhelper" in raised.value.message  # pip's own words: no wheel of it to install
    assert not helper_ran.exists()

    # Given as a wheel on the index, the build requirement is installed and the build goes through.
    local_index.add_wheel("buildhelper", "1.0")
    result = build(options(local_index, tmp_path, "purepkg", verify=False, out_dir=tmp_path / "two"))
    assert [p.name for p in result.lock.packages] == ["purepkg"]
    assert not helper_ran.exists()


def test_build_from_the_lock_with_an_empty_cache_rebuilds_on_the_host_and_gets_the_same_bytes(
    pure_index: LocalIndex, tmp_path: Path
) -> None:
    first = build(options(pure_index, tmp_path, "app"))
    pure_index.reset_log()
    empty, two = tmp_path / "empty", tmp_path / "two"
    second = build(
        options(pure_index, tmp_path, "app", cache_dir=empty, out_dir=two, lock_path=first.lock_path)
    )
    pins = {p.name: p for p in first.lock.packages}
    rebuilt = WheelCache(tmp_path / "empty").lookup(pins["purepkg"].sha256, pins["purepkg"].wheel)
    assert rebuilt is not None and sha256_of(rebuilt) == pins["purepkg"].sha256
    assert second.manifest["sha256"] == first.manifest["sha256"]
    # Built again from the sdist the lock pins, not resolved again.
    assert sdists_fetched(pure_index) == ["purepkg-1.0.tar.gz"]
    assert not any(r.path.startswith("/simple/app") for r in pure_index.requests)


def test_a_host_rebuild_that_differs_is_refused_as_not_reproducible(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    pure_python_sdist(local_index.wheel_dir, "purepkg", "1.0", PURE, stamp_now=True)
    first = build(options(local_index, tmp_path, "purepkg", verify=False))
    again = options(
        local_index, tmp_path, "purepkg", verify=False, cache_dir=tmp_path / "empty", out_dir=tmp_path / "two"
    )
    with pytest.raises(BuildError) as raised:
        build(dataclasses.replace(again, lock_path=first.lock_path))
    assert "purepkg 1.0 built again" in raised.value.message and "not reproducible" in raised.value.message
    assert "on this machine" in raised.value.message and "--refresh" in str(raised.value.hint)
    assert not list((tmp_path / "empty").rglob("purepkg-*.whl"))
    assert not list((tmp_path / "two").glob("*.zip"))


def test_a_c_extension_sdist_is_compiled_here_but_refused_and_gets_the_docker_message(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    local_index.add_wheel("app", "1.0", requires=["cext"])
    c_extension_sdist(local_index.wheel_dir, "cext", "1.0")
    client = FakeDockerClient()
    with pytest.raises(BuildError) as raised:
        build(options(local_index, tmp_path, "app", docker_client=lambda: client))
    message, hint = raised.value.message, str(raised.value.hint)
    assert "no release of cext has a wheel for python3.11 on x86_64" in message
    assert "its sdist cext-1.0.tar.gz did not build a pure-Python wheel on this machine" in message
    assert "cext-1.0-cp311-cp311-linux_x86_64.whl" in message  # what the host's gcc made of it
    assert "rerun with --docker to build cext from source inside the Lambda build image" in hint
    assert client.calls == []
    assert not list((tmp_path / "cache").rglob("cext-*.whl"))  # nothing of it was kept
    assert not list((tmp_path / "out").glob("*.lock.json"))


@pytest.mark.parametrize("command", ["lock", "build", "package-function"])
def test_no_host_builds_refuses_before_fetching_the_sdist(
    pure_index: LocalIndex, tmp_path: Path, command: str
) -> None:
    recipe = tmp_path / "pure.toml"
    recipe.write_text('name = "pure"\nrequirements = ["app"]\n')
    function = tmp_path / "fn"
    function.mkdir()
    (function / "handler.py").write_text("import purepkg\n\n\ndef handler(event, context):\n    return 1\n")
    (function / "requirements.txt").write_text("app\n")
    what = {
        "lock": [str(recipe)],
        "build": [str(recipe), "--no-verify"],
        "package-function": [str(function), "--handler", "handler.handler", "--no-verify"],
    }[command]
    args = [command, *what, "--index-url", pure_index.url, "--cache-dir", str(tmp_path / "c")]
    args += ["--out", str(tmp_path / "out")]
    completed = CliRunner().invoke(main, [*args, "--no-host-builds"])
    assert completed.exit_code == 1, completed.output
    assert "rerun with --docker to build purepkg" in " ".join(completed.output.split())
    assert sdists_fetched(pure_index) == []
    # The same from the environment, for CI that must never run an sdist's code on its runner.
    refused = CliRunner().invoke(main, args, env={"LAYERFORGE_NO_HOST_BUILDS": "1"})
    assert refused.exit_code == 1 and sdists_fetched(pure_index) == []
    allowed = CliRunner().invoke(main, args)
    assert allowed.exit_code == 0, allowed.output
    assert sdists_fetched(pure_index) == ["purepkg-1.0.tar.gz"]


def test_a_lock_with_a_host_build_not_in_the_cache_is_refused_with_no_host_builds(
    pure_index: LocalIndex, tmp_path: Path
) -> None:
    first = build(options(pure_index, tmp_path, "app", verify=False))
    builder = SourceBuilder(
        TARGET, pure_index.url, WheelCache(tmp_path / "empty"), enabled=True, host_builds=False
    )
    pure_index.reset_log()
    with pytest.raises(LockError) as raised:
        builder.provide(first.lock)
    assert "purepkg 1.0 was built on the host" in raised.value.message and raised.value.exit_code == 2
    assert sdists_fetched(pure_index) == []


# --------------------------------------------------------------------------------------------------
# What a host build may give: pure Python only


@pytest.mark.parametrize("tag", ["py3-none-any", "py2.py3-none-any"])
def test_a_pure_wheel_passes(tmp_path: Path, tag: str) -> None:
    wheel = build_wheel(tmp_path, "purepkg", "1.0", tag, files=PURE)
    assert native_content(wheel) is None


@pytest.mark.parametrize(
    ("tag", "member", "problem"),
    [
        ("cp311-cp311-linux_x86_64", "purepkg/core.py", "not a pure-Python (py3-none-any) wheel"),
        ("py3-none-manylinux2014_x86_64", "purepkg/core.py", "not a pure-Python"),
        ("py2-none-any", "purepkg/core.py", "not a pure-Python"),
        ("py3-none-any", "purepkg/_speed.so", "holds purepkg/_speed.so, native code"),
        ("py3-none-any", "purepkg/data.bin", "holds purepkg/data.bin, native code (ELF)"),
    ],
)
def test_a_wheel_with_native_code_is_not_pure_whatever_its_tag_or_names_say(
    tmp_path: Path, tag: str, member: str, problem: str
) -> None:
    elf = compile_shared_object(tmp_path / "native.so").read_bytes()
    files: dict[str, bytes | str] = {"purepkg/__init__.py": "", member: elf}
    wheel = build_wheel(tmp_path / "w", "purepkg", "1.0", tag, files=files)
    found = native_content(wheel)
    assert found is not None and problem in found


def test_a_pe_or_mach_o_member_is_native_too(tmp_path: Path) -> None:
    pe = bytearray(128)
    pe[:2], pe[0x3C:0x40], pe[64:68] = b"MZ", (64).to_bytes(4, "little"), b"PE\x00\x00"
    for data, kind in ((bytes(pe), "PE"), (b"\xcf\xfa\xed\xfe" + bytes(60), "MACHO")):
        wheel = build_wheel(tmp_path / kind, "purepkg", "1.0", files={"purepkg/blob.dat": data})
        assert f"purepkg/blob.dat, native code ({kind})" in str(native_content(wheel))


# --------------------------------------------------------------------------------------------------
# The lock reader: the host builder is hostile input like the rest


def host_package(**built: object) -> dict[str, object]:
    return {
        "name": "purepkg",
        "version": "1.0",
        "wheel": "purepkg-1.0-py3-none-any.whl",
        "url": "file:///cache/purepkg-1.0-py3-none-any.whl",
        "sha256": "cd" * 32,
        "built_from": {
            "sdist": "https://files.example.invalid/purepkg-1.0.tar.gz",
            "sdist_sha256": "ab" * 32,
            "builder": "host",
            "source_date_epoch": SOURCE_DATE_EPOCH,
            **built,
        },
    }


def lock_of(package: dict[str, object]) -> dict[str, object]:
    return {
        "schema_version": 1,
        "recipe": "pure",
        "runtime": "python3.11",
        "arch": "x86_64",
        "index_url": "https://pypi.org/simple",
        "packages": [package],
    }


def test_a_host_built_package_loads_and_hashes_apart_from_an_image_build() -> None:
    lock = lock_from_dict(lock_of(host_package()), "x.lock.json")
    built_from = lock.packages[0].built_from
    assert built_from is not None and built_from.image is None
    assert lock.as_dict()["packages"][0]["built_from"]["builder"] == "host"
    assert lock_from_dict(dict(lock_of(host_package()), lock_hash=lock.lock_hash), "x") == lock
    # An image that happens to be called "host" is another build, and another lock hash.
    other = host_package(image="host")
    del other["built_from"]["builder"]  # type: ignore[attr-defined]
    assert lock_from_dict(lock_of(other), "y").lock_hash != lock.lock_hash


@pytest.mark.parametrize(
    "built",
    [
        {"builder": "docker"},
        {"builder": "host", "image": "x/y:z"},
        {"builder": "host", "image_digest": "sha256:" + "a" * 64},
    ],
)
def test_a_hostile_builder_is_refused(built: dict[str, object]) -> None:
    with pytest.raises(LockError) as raised:
        lock_from_dict(lock_of(host_package(**built)), "hostile.lock.json")
    assert "built_from.builder" in raised.value.message and raised.value.exit_code == 2


# --------------------------------------------------------------------------------------------------
# The --runtime hint: only a runtime that would help


def wheel(filename: str) -> IndexWheel:
    _, version, _, tags = parse_wheel_filename(filename)
    return IndexWheel(filename, version, tags, yanked=False)


def test_the_runtime_hint_names_only_runtimes_a_wheel_fits() -> None:
    newer_glibc = [wheel("lib-1.0-py3-none-manylinux_2_28_x86_64.whl")]
    assert runtimes_with_a_wheel(Requirement("lib"), newer_glibc, Target("python3.11")) == [
        "python3.12",
        "python3.13",
        "python3.14",
    ]
    # The target already is python3.12 and nothing fits any runtime: no runtime to suggest.
    too_new = [wheel("lib-1.0-cp312-cp312-manylinux_2_39_x86_64.whl")]
    assert runtimes_with_a_wheel(Requirement("lib"), too_new, Target("python3.12")) == []
    older = [wheel("lib-1.0-cp311-cp311-manylinux2014_x86_64.whl")]
    assert runtimes_with_a_wheel(Requirement("lib"), older, Target("python3.12")) == ["python3.11"]
    assert runtimes_with_a_wheel(Requirement("lib>1"), older, Target("python3.12")) == []
    assert runtimes_with_a_wheel(Requirement("lib"), older, Target("python3.12", "arm64")) == []


def test_the_resolution_error_for_python312_does_not_suggest_python312(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    local_index.add_wheel("newglibc", "1.0", "cp312-cp312-manylinux_2_39_x86_64")
    builder = SourceBuilder(Target("python3.12"), local_index.url, WheelCache(tmp_path / "c"), enabled=False)
    with pytest.raises(BuildError) as raised:
        builder.resolve("n", ["newglibc"])
    assert "--runtime" not in str(raised.value.hint)
    local_index.add_wheel("oldonly", "1.0", "cp311-cp311-manylinux2014_x86_64")
    with pytest.raises(BuildError) as raised:
        builder.resolve("n", ["oldonly"])
    assert "--runtime python3.11" in str(raised.value.hint)
