"""Reading an index's PEP 691 page: what a hostile or odd entry becomes, and the wheel names' parsing."""

from __future__ import annotations

import contextlib
import json

import pytest
from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion

from layerforge.resolve.index import _json_links, _version_and_tags, _wheels
from layerforge.resolve.local_index import _best_wheel
from layerforge.target import Target

SHA = "ab" * 32

# Valid names, with build numbers and compressed tag sets, and names packaging refuses for each of its
# reasons: the parts are parsed one by one and remembered, so a part seen valid in one name must not
# make another name valid, nor one seen invalid refuse a valid name.
NAMES = [
    "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "numpy-2.2.6-cp311-cp311-musllinux_1_2_x86_64.whl",
    "numpy-2.2.6-1-cp311-cp311-manylinux_2_17_x86_64.whl",
    "numpy-2.2.6-1abc-cp311-cp311-manylinux_2_17_x86_64.whl",
    "pkg-1.0-py2.py3-none-any.whl",
    "Pkg_Name-1.0.post1.dev3-py3-none-any.whl",
    "pkg-1.0rc1-py3-none-any.whl",
    "pkg-1.0-cp39.cp310.cp311-abi3-manylinux_2_28_aarch64.whl",
    "pkg-1.0-py3-none-any.zip",
    "pkg-1.0-none-any.whl",
    "pkg-1.0-x-y-py3-none-any.whl",
    "pk__g-1.0-py3-none-any.whl",
    "pk.g-1.0-py3-none-any.whl",
    "pk!g-1.0-py3-none-any.whl",
    "pkg-not.a.version!-py3-none-any.whl",
    "pkg-1.0-abc-py3-none-any.whl",
    "pkg-1.0-py3--any.whl",
    "pkg-1.0-py3.-none-any.whl",
    "pkg-1.0-3py-none-any.whl",
    "-1.0-py3-none-any.whl",
    "pkg-1.0-py3-none-.whl",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_wheel_name_gets_packagings_answer_whichever_names_came_before(name: str) -> None:
    for earlier in NAMES:  # every part valid or not seen before this name, in both orders
        with_suppressed(earlier)
    try:
        expected: object = parse_wheel_filename(name)
        expected = (expected[1], expected[3])  # type: ignore[index]
    except (InvalidWheelFilename, InvalidVersion):
        expected = "refused"
    try:
        found: object = _version_and_tags(name)
    except (InvalidWheelFilename, InvalidVersion):
        found = "refused"
    assert found == expected


def with_suppressed(name: str) -> None:
    with contextlib.suppress(InvalidWheelFilename, InvalidVersion):
        _version_and_tags(name)


def page(*entries: dict[str, object]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "pkg", "files": list(entries)}).encode()


def entry(filename: str, url: str | None = None) -> dict[str, object]:
    url = url or f"https://files.example/{filename}"
    return {"filename": filename, "url": url, "hashes": {"sha256": SHA}}


def test_a_page_entry_whose_url_cannot_be_split_is_dropped_and_the_rest_kept() -> None:
    links = _json_links(
        page(
            entry("pkg-1.0-py3-none-any.whl"),
            entry("pkg-1.1-py3-none-any.whl", "http://[::1/pkg-1.1-py3-none-any.whl"),
            # U+2100 turns into "a/c" under NFKC: a host that would name another host.
            entry("pkg-1.2-py3-none-any.whl", "https://ex\u2100ample.com/pkg-1.2-py3-none-any.whl"),
            entry("pkg-1.3-py3-none-any.whl", "https://h\u00e9llo.example/pkg-1.3-py3-none-any.whl"),
            entry("pkg-1.4-py3-none-any.whl", "https://[::1]:8443/pkg-1.4-py3-none-any.whl"),
        )
    )
    assert [link.filename for link in links] == [
        "pkg-1.0-py3-none-any.whl",
        "pkg-1.3-py3-none-any.whl",
        "pkg-1.4-py3-none-any.whl",
    ]


def test_the_guessed_wheel_is_the_newest_allowed_release_in_its_most_specific_fitting_wheel() -> None:
    links = _json_links(
        page(
            entry("pkg-3.0-cp312-cp312-manylinux_2_17_x86_64.whl"),  # another Python
            entry("pkg-2.1-cp311-cp311-manylinux_2_28_x86_64.whl"),  # newer glibc than 2.26
            {**entry("pkg-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"), "yanked": True},
            entry("pkg-1.9-py3-none-any.whl"),
            entry("pkg-1.9-cp311-cp311-manylinux_2_17_x86_64.whl"),
            entry("pkg-1.8-cp311-cp311-manylinux_2_17_x86_64.whl"),
        )
    )
    wheels = _wheels(links)
    target = Target("python3.11")
    best = _best_wheel(wheels, Requirement("pkg"), target)
    assert best is not None and best.filename == "pkg-1.9-cp311-cp311-manylinux_2_17_x86_64.whl"
    older = _best_wheel(wheels, Requirement("pkg<1.9"), target)
    assert older is not None and older.filename == "pkg-1.8-cp311-cp311-manylinux_2_17_x86_64.whl"
    assert _best_wheel(wheels, Requirement("pkg>3"), target) is None
