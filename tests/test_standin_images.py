"""The stand-in image recipes (tests/support/standin_images.py), without an engine or a build."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.support.standin_images import FALLBACK_MIRROR, RECIPES, host_mirror, main


def test_names_are_test_only_and_follow_the_recipe() -> None:
    assert set(RECIPES) == {"runtime-x86_64", "runtime-arm64", "build-x86_64"}
    for recipe in RECIPES.values():
        assert recipe.image.startswith("layerforge-test/")
        assert recipe.image.endswith(f"-{recipe.arch}-{recipe.digest[:12]}")
        changed = dataclasses.replace(recipe, packages=(*recipe.packages, "less"))
        assert changed.image != recipe.image
    assert RECIPES["runtime-x86_64"].image != RECIPES["runtime-arm64"].image


def test_names_print_without_an_engine(capsys) -> None:
    assert main(["--names", "--role", "runtime-arm64"]) == 0
    assert capsys.readouterr().out == f"runtime-arm64 {RECIPES['runtime-arm64'].image}\n"


def test_the_mirror_comes_from_the_hosts_apt_sources(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    assert host_mirror(etc=etc) == FALLBACK_MIRROR
    (etc / "sources.list.d" / "other.list").write_text(
        "deb [signed-by=/k.gpg] https://packages.example.com/apt cloud-sdk-bookworm main\n"
    )
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb-src deb\n# a comment\nURIs: http://mirror.example.org/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main contrib\n"
    )
    assert host_mirror(etc=etc) == "http://mirror.example.org/debian"
    (etc / "sources.list").write_text("# deb http://old.example.org/debian bookworm main\n")
    assert host_mirror(etc=etc) == "http://mirror.example.org/debian"
    assert host_mirror("trixie", etc=etc) == FALLBACK_MIRROR
