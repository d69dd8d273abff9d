"""Hostile wheels served by an index and built end to end: each build is refused with an error naming the
wheel and the entry, and nothing is written outside the staging folder.

After every refusal the file system is checked: the output folder holds no zip, no manifest and no
staging leftovers (only the lock, written before any wheel is fetched), the cache holds only files whose
content has the sha256 they are stored under, and nothing appeared anywhere else under the test folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from layerforge.build import BuildOptions, build
from layerforge.cache import sha256_of
from layerforge.errors import AuditError, LayerforgeError, UnsafeArchiveError
from layerforge.member_cache import MemberCache
from layerforge.recipe import recipe_from_mapping
from layerforge.target import Target
from tests.support.elf import compile_shared_object, fake_pe
from tests.support.index import LocalIndex
from tests.support.wheelfactory import RawEntry, symlink

MANYLINUX = "cp311-cp311-manylinux2014_x86_64"


def build_demo(index: LocalIndex, tmp: Path, requirement: str) -> None:
    build(
        BuildOptions(
            recipe=recipe_from_mapping({"name": "liar", "requirements": [requirement]}, "liar.toml", "liar"),
            target=Target("python3.11", "x86_64"),
            out_dir=tmp / "out",
            cache_dir=tmp / "cache",
            index_url=index.url,
            verify=False,
        )
    )


def assert_nothing_escaped(tmp: Path, index: LocalIndex) -> None:
    out = tmp / "out"
    assert sorted(p.name for p in out.iterdir()) == ["liar-python3.11-x86_64.lock.json"]
    for path in (tmp / "cache" / "wheels").rglob("*"):
        if path.is_file() and path.name != ".lock":
            assert not path.name.endswith(".part"), path
            assert sha256_of(path) == path.parent.name, f"unverified file in the cache: {path}"
    # The zip runs beside the audit, so a build the audit fails may have filed members: each one whole.
    members = MemberCache(tmp / "cache")
    for path in members.folder.rglob("*"):
        if path.is_file():
            assert members.get(path.name) is not None, f"damaged or unfinished member entry: {path}"
    # Nothing else anywhere under the test folder: only the index's wheels, the cache and the output.
    stray = [
        p
        for p in tmp.rglob("*")
        if p.is_file()
        and not p.is_relative_to(tmp / "cache")
        and not p.is_relative_to(out)
        and not p.is_relative_to(index.wheel_dir)
        and not p.name.startswith("native")
    ]
    assert stray == []
    assert not Path("/tmp/layerforge-evil.py").exists()


def refused(index: LocalIndex, tmp: Path, error: type[LayerforgeError], *needles: str) -> str:
    with pytest.raises(error) as raised:
        build_demo(index, tmp, "liar")
    message = str(raised.value)
    for needle in needles:
        assert needle in message, message
    assert raised.value.exit_code == 1
    assert_nothing_escaped(tmp, index)
    return message


@pytest.fixture()
def pe_bytes(tmp_path: Path) -> bytes:
    return fake_pe(tmp_path / "native-pe.bin").read_bytes()


# ---- a tag that lies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    ["liar/_ext.pyd", "liar/_ext.cpython-311-x86_64-linux-gnu.so"],
    ids=["pyd", "pe-named-so"],
)
def test_a_windows_binary_in_a_manylinux_wheel_fails_the_build(
    entry: str, local_index: LocalIndex, tmp_path: Path, pe_bytes: bytes
) -> None:
    wheel = local_index.add_wheel(
        "liar", "1.0", MANYLINUX, files={"liar/__init__.py": "from . import _ext\n", entry: pe_bytes}
    ).name
    message = refused(local_index, tmp_path, AuditError, wheel, f"python/{entry}", "Windows")
    assert "cannot load on the target" in message


def test_a_real_linux_object_beside_the_lie_does_not_hide_it(
    local_index: LocalIndex, tmp_path: Path, pe_bytes: bytes
) -> None:
    elf = compile_shared_object(tmp_path / "native-x86_64.so").read_bytes()
    wheel = local_index.add_wheel(
        "liar",
        "1.0",
        MANYLINUX,
        files={
            "liar/__init__.py": "",
            "liar/_good.cpython-311-x86_64-linux-gnu.so": elf,
            "liar/_bad.cpython-311-x86_64-linux-gnu.so": pe_bytes,
        },
    ).name
    message = refused(
        local_index, tmp_path, AuditError, wheel, "python/liar/_bad.cpython-311-x86_64-linux-gnu.so"
    )
    assert "_good" not in message


# ---- entries that escape, or that the file system cannot take, through the whole build ----------------

ESCAPES: dict[str, tuple[Callable[[], RawEntry], str]] = {
    "dot-dot": (lambda: RawEntry("../../evil.py", "x = 1\n", in_record=True), "'../../evil.py'"),
    "absolute": (lambda: RawEntry("/tmp/layerforge-evil.py", "x = 1\n", in_record=True), "absolute path"),
    "symlink": (lambda: symlink("liar/link", "/etc/passwd", in_record=True), "symbolic link"),
    "file-and-folder": (lambda: RawEntry("liar", "x = 1\n", in_record=True), "to be a folder"),
    "long-component": (lambda: RawEntry("liar/" + "a" * 300 + ".py", "", in_record=True), "longer than 255"),
    "too-deep": (lambda: RawEntry("liar/" + "d/" * 2100 + "x.py", "", in_record=True), "cannot be written"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_a_hostile_wheel_from_the_index_fails_the_build_and_nothing_escapes(
    case: str, local_index: LocalIndex, tmp_path: Path
) -> None:
    make, needle = ESCAPES[case]
    wheel = local_index.add_wheel("liar", "1.0", files={"liar/__init__.py": ""}, raw_entries=[make()]).name
    refused(local_index, tmp_path, UnsafeArchiveError, wheel, needle)


def test_two_wheels_that_clash_file_against_folder_are_refused_naming_both(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    first = local_index.add_wheel(
        "liar", "1.0", files={"liar/__init__.py": "", "shared/x": "a file\n"}, requires=["clash"]
    )
    second = local_index.add_wheel(
        "clash", "1.0", files={"clash/__init__.py": "", "shared/x/y.py": "y = 1\n"}
    )
    refused(
        local_index, tmp_path, UnsafeArchiveError, first.name, second.name, "'shared/x'", "'shared/x/y.py'"
    )


def test_the_fix_for_a_lying_tag_does_not_blame_the_wheel_selection(
    local_index: LocalIndex, tmp_path: Path, pe_bytes: bytes
) -> None:
    local_index.add_wheel("liar", "1.0", MANYLINUX, files={"liar/__init__.py": "", "liar/_ext.pyd": pe_bytes})
    message = refused(local_index, tmp_path, AuditError, "liar/_ext.pyd")
    assert "never a win_amd64 wheel" not in message
