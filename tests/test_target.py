from __future__ import annotations

import pytest
from packaging.tags import Tag

from layerforge.errors import TargetError
from layerforge.target import RUNTIME_PROVIDED, RUNTIME_PROVIDED_DISTRIBUTIONS, RUNTIMES, Target


def test_default_target_is_python311_x86_64_on_glibc_226() -> None:
    target = Target()
    assert (target.runtime, target.arch, target.abi, target.glibc) == (
        "python3.11",
        "x86_64",
        "cp311",
        (2, 26),
    )


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_every_runtime_accepts_its_own_manylinux_range_and_nothing_newer(runtime: str, arch: str) -> None:
    target = Target(runtime, arch)
    machine = "aarch64" if arch == "arm64" else "x86_64"
    major, minor = target.glibc
    assert Tag(target.abi, target.abi, f"manylinux_{major}_{minor}_{machine}") in target.tag_set
    assert Tag(target.abi, target.abi, f"manylinux2014_{machine}") in target.tag_set
    assert Tag(target.abi, "abi3", f"manylinux_2_17_{machine}") in target.tag_set
    assert Tag("py3", "none", "any") in target.tag_set
    assert Tag(target.abi, target.abi, f"manylinux_{major}_{minor + 1}_{machine}") not in target.tag_set
    other = "x86_64" if machine == "aarch64" else "aarch64"
    assert not any(other in tag.platform for tag in target.tags)
    assert not any(tag.platform.startswith(("win", "macosx", "musllinux")) for tag in target.tags)


def test_python312_accepts_manylinux_2_28_but_python311_does_not() -> None:
    tag = Tag("cp312", "cp312", "manylinux_2_28_x86_64")
    assert tag in Target("python3.12").tag_set
    assert Tag("cp311", "cp311", "manylinux_2_28_x86_64") not in Target("python3.11").tag_set


def test_cp312_wheel_is_not_accepted_by_python311() -> None:
    assert Tag("cp312", "cp312", "manylinux2014_x86_64") not in Target("python3.11").tag_set


def test_legacy_aliases_are_passed_explicitly_for_x86_64() -> None:
    platforms = Target().platforms
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(platforms)
    assert platforms[0] == "manylinux_2_26_x86_64"


@pytest.mark.parametrize(("runtime", "arch"), [("python3.8", "x86_64"), ("python3.11", "arm")])
def test_unknown_runtime_or_arch_is_an_input_error(runtime: str, arch: str) -> None:
    with pytest.raises(TargetError) as raised:
        Target(runtime, arch)
    assert raised.value.exit_code == 2
    assert "python3.11" in str(raised.value) or "x86_64" in str(raised.value)


def test_every_runtime_names_the_sdk_and_what_it_needs_as_provided() -> None:
    assert set(RUNTIME_PROVIDED_DISTRIBUTIONS) == set(RUNTIMES)
    sdk = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
    for runtime in RUNTIMES:
        assert Target(runtime).runtime_provided == sdk
    # The import scanner and the verifier know each by its import name (dateutil for python-dateutil).
    assert sdk <= set(RUNTIME_PROVIDED.values())
