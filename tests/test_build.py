"""End-to-end builds of tiny real wheels served on 127.0.0.1, resolved by the real pip."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from layerforge.build import BuildOptions, build
from layerforge.errors import HashMismatchError, ResolutionError, SizeLimitError, VerificationError
from layerforge.recipe import recipe_from_mapping
from layerforge.target import Target
from tests.layers import publish_demo_stack
from tests.support.index import LocalIndex


@pytest.fixture()
def demo_index(local_index: LocalIndex, tmp_path: Path) -> LocalIndex:
    publish_demo_stack(local_index, tmp_path)
    return local_index


def options(
    index: LocalIndex,
    tmp_path: Path,
    *,
    runtime: str = "python3.11",
    arch: str = "x86_64",
    lock: Path | None = None,
    cache: str = "cache",
    out: str = "out",
    **recipe: object,
) -> BuildOptions:
    raw = {"name": "demo", "requirements": ["demo"], **recipe}
    return BuildOptions(
        recipe=recipe_from_mapping(raw, "demo.toml", "demo"),
        target=Target(runtime, arch),
        out_dir=tmp_path / out,
        cache_dir=tmp_path / cache,
        index_url=index.url,
        lock_path=lock,
    )


def zip_names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


def test_build_writes_zip_lock_and_manifest_with_the_fitting_wheels(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    result = build(options(demo_index, tmp_path))
    assert result.zip_path.name == "demo-python3.11-x86_64.zip"
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "demo-python3.11-x86_64.zip",
        "demo-python3.11-x86_64.lock.json",
        "demo-python3.11-x86_64.manifest.json",
        "demo-python3.11-x86_64.cdx.json",
    }
    assert result.manifest["sbom"] == "demo-python3.11-x86_64.cdx.json" == result.sbom_path.name
    lock = json.loads(result.lock_path.read_text())
    pins = {p["name"]: p for p in lock["packages"]}
    assert pins["fastlib"]["version"] == "1.0"
    assert pins["fastlib"]["wheel"] == "fastlib-1.0-cp311-cp311-manylinux2014_x86_64.whl"
    assert pins["fastlib"]["sha256"] == demo_index.sha256(pins["fastlib"]["wheel"])
    assert pins["fastlib"]["url"].startswith("http://127.0.0.1:")
    note = " ".join(n["reason"] for n in lock["notes"])
    assert "fastlib 2.0" in note and "manylinux_2_28_x86_64" in note and "took 1.0" in note

    names = zip_names(result.zip_path)
    assert all(name.startswith("python/") for name in names)
    assert (
        "python/demo/__init__.py" in names
        and "python/fastlib/_native.cpython-311-x86_64-linux-gnu.so" in names
    )

    manifest = json.loads(result.manifest_path.read_text())
    assert manifest == result.manifest
    assert manifest["sha256"] == hashlib.sha256(result.zip_path.read_bytes()).hexdigest()
    with zipfile.ZipFile(result.zip_path) as archive:
        assert manifest["unzipped_bytes"] == sum(info.file_size for info in archive.infolist())
    assert manifest["zipped_bytes"] == result.zip_path.stat().st_size
    assert manifest["verified"] is True
    assert manifest["lock_hash"] == lock["lock_hash"]
    assert {p["name"] for p in manifest["packages"]} == {"demo", "fastlib"}
    assert [c["name"] for c in manifest["limits"]] == ["lambda_unzipped", "direct_upload_zip"]
    assert all(not c["exceeded"] for c in manifest["limits"])


def test_safe_slimming_removes_dead_weight_but_keeps_metadata_and_licenses(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    result = build(options(demo_index, tmp_path))
    names = zip_names(result.zip_path)
    assert "python/demo/tests/test_core.py" not in names
    assert "python/demo/_speedups.c" not in names
    assert "python/demo/core.pyi" not in names
    assert "python/demo/docs/guide.md" not in names
    assert "python/demo-1.0.dist-info/RECORD" not in names
    assert "python/demo-1.0.dist-info/METADATA" in names
    assert "python/demo/LICENSE.txt" in names
    removed = result.manifest["removed"]
    assert removed["by_rule"]["safe:test-suites"] > 0 and removed["by_package"]["demo"] > 0
    assert (
        sum(removed["by_rule"].values())
        == sum(removed["by_package"].values())
        == result.manifest["removed_bytes"]
    )
    # RECORD is gone, so the top-level names are declared for importlib.metadata.packages_distributions().
    with zipfile.ZipFile(result.zip_path) as archive:
        assert archive.read("python/demo-1.0.dist-info/top_level.txt") == b"demo\n"
        assert archive.read("python/fastlib-1.0.dist-info/top_level.txt") == b"fastlib\n"
    # The layer reads its own version through importlib.metadata: the verification imported it.
    assert result.verify is not None
    assert result.verify.metadata_versions["demo"] == "1.0"
    assert result.verify.compiled_from_source == ()


def test_two_builds_from_one_lock_with_the_cache_emptied_give_the_same_zip(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    first = build(options(demo_index, tmp_path, out="one"))
    shutil.rmtree(tmp_path / "cache")
    demo_index.reset_log()
    second = build(options(demo_index, tmp_path, out="two", lock=first.lock_path))
    assert second.manifest["sha256"] == first.manifest["sha256"]
    assert second.zip_path.read_bytes() == first.zip_path.read_bytes()
    # The cache really was empty: each wheel came again, and nothing was resolved a second time.
    assert sorted(demo_index.downloads()) == sorted(p.wheel for p in first.lock.packages)
    assert not any(r.path.startswith("/simple/") for r in demo_index.requests)


def test_a_lock_whose_hash_does_not_match_fails_and_leaves_no_zip(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    first = build(options(demo_index, tmp_path, out="one"))
    lock = json.loads(first.lock_path.read_text())
    lock["packages"][0]["sha256"] = "0" * 64
    lock.pop("lock_hash")
    tampered = tmp_path / "tampered.lock.json"
    tampered.write_text(json.dumps(lock))
    with pytest.raises(HashMismatchError) as raised:
        build(options(demo_index, tmp_path, out="two", cache="fresh", lock=tampered))
    assert raised.value.exit_code == 1
    assert "does not match the lock" in str(raised.value)
    assert not list((tmp_path / "two").glob("*.zip"))
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]
    cached = list((tmp_path / "fresh").rglob("*.whl"))
    assert all("0000000000" not in str(p) for p in cached)


def test_python312_takes_the_manylinux_2_28_release(demo_index: LocalIndex, tmp_path: Path) -> None:
    result = build(options(demo_index, tmp_path, runtime="python3.12"))
    pins = {p.name: p for p in result.lock.packages}
    assert pins["fastlib"].wheel == "fastlib-2.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert result.lock.notes == ()


def test_arm64_layer_holds_only_aarch64_objects_and_says_imports_were_not_verified(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    result = build(options(demo_index, tmp_path, arch="arm64"))
    assert result.manifest["audit"]["machines"] == {"aarch64": 1}
    assert result.manifest["verified"] is None
    assert result.verify is not None
    assert "only the static audit" in result.verify.not_run_reason
    # Bytecode depends on the Python version only, so the host's 3.11 still compiled it.
    assert "python/demo/__pycache__/core.cpython-311.pyc" in zip_names(result.zip_path)


def test_no_release_fits_names_package_target_and_existing_wheels(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    local_index.add_wheel("winonly", "3.0", "cp311-cp311-win_amd64")
    local_index.add_wheel("winonly", "3.0", "cp311-cp311-macosx_11_0_arm64")
    with pytest.raises(ResolutionError) as raised:
        build(options(local_index, tmp_path, requirements=["winonly"]))
    message = str(raised.value)
    assert "winonly" in message and "python3.11 on x86_64" in message and "glibc 2.26" in message
    assert "winonly-3.0-cp311-cp311-win_amd64.whl" in message


def test_over_budget_exits_3_naming_the_biggest_and_leaves_no_zip(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    with pytest.raises(SizeLimitError) as raised:
        build(options(demo_index, tmp_path, limits={"unzipped_bytes": 1000}))
    assert raised.value.exit_code == 3
    message = str(raised.value)
    assert "budget" in message and "1,000 bytes" in message and "fastlib" in message and "demo" in message
    assert not list((tmp_path / "out").glob("*.zip"))


def test_a_rule_that_removes_a_needed_module_fails_verification_naming_the_rule(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    with pytest.raises(VerificationError) as raised:
        build(options(demo_index, tmp_path, strip={"remove": ["demo/core.py"]}))
    message = str(raised.value)
    assert "demo.core" in message and "recipe:remove:demo/core.py" in message
    assert not list((tmp_path / "out").glob("*.zip"))


def test_a_test_module_that_the_package_imports_is_kept(local_index: LocalIndex, tmp_path: Path) -> None:
    local_index.add_wheel(
        "needy",
        "1.0",
        files={
            "needy/__init__.py": "from needy.tests._helpers import sentinel\n",
            "needy/tests/__init__.py": "",
            "needy/tests/_helpers.py": "sentinel = object()\n",
            "needy/tests/test_big.py": "x = 1\n" * 1000,
        },
    )
    result = build(options(local_index, tmp_path, name="needy", requirements=["needy"]))
    names = zip_names(result.zip_path)
    assert "python/needy/tests/_helpers.py" in names and "python/needy/tests/__init__.py" in names
    assert "python/needy/tests/test_big.py" not in names
    assert result.manifest["verified"] is True
    spared = result.manifest["removed"]["spared"]
    assert {s["path"] for s in spared} == {"python/needy/tests/_helpers.py", "python/needy/tests/__init__.py"}


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        (
            "compile",
            {"python/demo/core.py", "python/demo/__pycache__/core.cpython-311.pyc"},
            {"python/demo/core.pyc"},
        ),
        (
            "sourceless",
            {"python/demo/core.pyc"},
            {"python/demo/core.py", "python/demo/__pycache__/core.cpython-311.pyc"},
        ),
        (
            "none",
            {"python/demo/core.py"},
            {"python/demo/core.pyc", "python/demo/__pycache__/core.cpython-311.pyc"},
        ),
    ],
)
def test_bytecode_modes(
    demo_index: LocalIndex, tmp_path: Path, mode: str, present: set[str], absent: set[str]
) -> None:
    result = build(options(demo_index, tmp_path, strip={"bytecode": mode}))
    names = zip_names(result.zip_path)
    assert present <= names
    assert not absent & names
    assert result.verify is not None
    compiled = result.verify.compiled_from_source
    assert (len(compiled) > 0) == (mode == "none"), compiled


def test_compiled_bytecode_is_hash_based_and_made_by_the_targets_python(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    result = build(options(demo_index, tmp_path, runtime="python3.12", strip={"bytecode": "compile"}))
    with zipfile.ZipFile(result.zip_path) as archive:
        pyc = archive.read("python/demo/__pycache__/core.cpython-312.pyc")
    import importlib.util

    flags = int.from_bytes(pyc[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked: stays valid with the zip's fixed timestamps
    assert pyc[:4] != importlib.util.MAGIC_NUMBER  # the host is 3.11; the magic is 3.12's


@pytest.mark.parametrize(("profile", "columns"), [("safe", True), ("aggressive", False)])
def test_aggressive_bytecode_leaves_out_the_column_tables_and_says_so(
    demo_index: LocalIndex, tmp_path: Path, profile: str, columns: bool
) -> None:
    import marshal

    result = build(options(demo_index, tmp_path, strip={"profile": profile, "bytecode": "sourceless"}))
    with zipfile.ZipFile(result.zip_path) as archive:
        pyc = archive.read("python/demo/core.pyc")
    code = marshal.loads(pyc[16:])  # the host is 3.11 like the target: its marshal reads the pyc
    positions = [
        p
        for c in [code, *[k for k in code.co_consts if hasattr(k, "co_positions")]]
        for p in c.co_positions()
    ]
    # Line numbers stay in both; only the (end) columns that draw ^^^ under an expression go.
    assert positions and any(line is not None for line, *_ in positions)
    assert any(column is not None for _, _, column, _ in positions) == columns
    assert result.manifest["bytecode"]["debug_ranges"] is columns


def test_an_audit_failure_stops_the_zip_written_beside_it_and_leaves_no_output(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    from layerforge.errors import AuditError
    from tests.support.elf import fake_pe

    pyd = fake_pe(tmp_path / "speedups.pyd").read_bytes()
    local_index.add_wheel(
        "winonly", "1.0", files={"winonly/__init__.py": "", "winonly/_speedups.cp311-win_amd64.pyd": pyd}
    )
    with pytest.raises(AuditError):
        build(options(local_index, tmp_path, name="win", requirements=["winonly"]))
    assert list((tmp_path / "out").glob("*.zip")) == []
    assert list((tmp_path / "out").glob("*.manifest.json")) == []


def test_a_module_that_does_not_compile_keeps_its_source_and_is_named(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    local_index.add_wheel(
        "oldies",
        "1.0",
        files={
            "oldies/__init__.py": "from oldies.fine import VALUE\n",
            "oldies/fine.py": "VALUE = 1\n",
            "oldies/py2only.py": "print 'never imported'\n",
        },
    )
    result = build(
        options(local_index, tmp_path, name="old", requirements=["oldies"], strip={"bytecode": "sourceless"})
    )
    names = zip_names(result.zip_path)
    assert {"python/oldies/fine.pyc", "python/oldies/__init__.pyc", "python/oldies/py2only.py"} <= names
    assert "python/oldies/fine.py" not in names and "python/oldies/py2only.pyc" not in names
    [failure] = result.manifest["bytecode"]["failed"]
    assert failure.startswith("python/oldies/py2only.py: ") and "print" in failure
    # Tracebacks name the file where Lambda puts it.
    with zipfile.ZipFile(result.zip_path) as archive:
        import marshal

        code = marshal.loads(archive.read("python/oldies/fine.pyc")[16:])
    assert code.co_filename == "/opt/python/oldies/fine.py"


def test_pip_resolves_without_the_users_pip_cache(demo_index: LocalIndex, tmp_path: Path) -> None:
    from layerforge.resolve.lock import pip_command

    command = pip_command(["demo"], Target("python3.11", "x86_64"), tmp_path / "r", tmp_path / "s")
    assert "--no-cache-dir" in command and "--only-binary=:all:" in command


def test_index_credentials_go_to_pip_in_its_environment_not_its_command_line(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    """argv is world-readable (`ps`); the environment only to the process's owner. The build must still
    reach an index that answers 401 without the credentials, so they do arrive."""
    from layerforge.resolve.host_build import host_build_command
    from layerforge.resolve.lock import pip_command, pip_environment

    secret_url = demo_index.url.replace("http://", "http://reader:s3cret@")
    command = pip_command(["demo"], Target("python3.11", "x86_64"), tmp_path / "r", tmp_path / "s")
    assert not any("s3cret" in part or "127.0.0.1" in part for part in command)
    assert not any("s3cret" in part for part in host_build_command("demo", tmp_path))
    assert pip_environment(secret_url)["PIP_INDEX_URL"] == secret_url
    demo_index.require_auth("reader", "s3cret")
    result = build(dataclasses.replace(options(demo_index, tmp_path), index_url=secret_url))
    assert result.manifest["sha256"]


def test_an_unchanged_build_reuses_its_output_without_touching_the_index(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    first = build(options(demo_index, tmp_path))
    demo_index.reset_log()
    again = build(options(demo_index, tmp_path))
    assert again.reused and again.manifest["sha256"] == first.manifest["sha256"]
    assert demo_index.requests == []


def test_a_damaged_zip_is_rebuilt_rather_than_reused(demo_index: LocalIndex, tmp_path: Path) -> None:
    first = build(options(demo_index, tmp_path))
    first.zip_path.write_bytes(b"damaged")
    again = build(options(demo_index, tmp_path))
    assert not again.reused and again.zip_path.read_bytes() != b"damaged"
    assert again.manifest["sha256"] == first.manifest["sha256"]


def test_a_changed_strip_rule_reslims_from_the_cache_without_resolving_or_downloading(
    demo_index: LocalIndex, tmp_path: Path
) -> None:
    build(options(demo_index, tmp_path))
    demo_index.reset_log()
    changed = build(options(demo_index, tmp_path, strip={"remove": ["demo/LICENSE.txt", "**/*.md"]}))
    assert not changed.reused
    assert demo_index.requests == []


def test_a_changed_requirement_downloads_only_what_changed(demo_index: LocalIndex, tmp_path: Path) -> None:
    demo_index.add_wheel("extra", "1.0")
    build(options(demo_index, tmp_path))
    demo_index.reset_log()
    build(options(demo_index, tmp_path, requirements=["demo", "extra"]))
    # pip reads metadata while resolving; layerforge itself fetched only the new wheel.
    fetched = [
        r.path for r in demo_index.requests if r.user_agent == "layerforge" and r.path.startswith("/files/")
    ]
    assert fetched == ["/files/extra-1.0-py3-none-any.whl"]


def test_refresh_resolves_again(demo_index: LocalIndex, tmp_path: Path) -> None:
    build(options(demo_index, tmp_path))
    demo_index.reset_log()
    opts = options(demo_index, tmp_path)
    build(dataclasses.replace(opts, refresh=True))
    assert any(r.path.startswith("/simple/") for r in demo_index.requests)


def test_index_credentials_are_lent_to_files_on_the_index_host_only() -> None:
    from layerforge.resolve.index import with_index_credentials

    index = "https://u:p%40ss@pkgs.example.com:8443/simple/"
    same = "https://pkgs.example.com:8443/files/a-1.0-py3-none-any.whl"
    assert (
        with_index_credentials(same, index)
        == "https://u:p%40ss@pkgs.example.com:8443/files/a-1.0-py3-none-any.whl"
    )
    for elsewhere in (
        "https://cdn.example.com/files/a.whl",  # another host
        "https://pkgs.example.com/files/a.whl",  # another port
        "http://pkgs.example.com:8443/files/a.whl",  # another scheme: never in clear text
        "https://v:q@pkgs.example.com:8443/files/a.whl",  # its own credentials win
    ):
        assert with_index_credentials(elsewhere, index) == elsewhere
    assert with_index_credentials(same, "https://pkgs.example.com:8443/simple/") == same
