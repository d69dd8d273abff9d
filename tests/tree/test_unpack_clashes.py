"""The file-against-folder check over every wheel's planned entries (tree/unpack.py), against the plain
walk it replaced: for each entry, every parent folder looked up among the files. Random trees, several
wheels; the same refusal, naming the same entries, or none."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerforge.errors import UnsafeArchiveError
from layerforge.tree.unpack import _Planned, _refuse_file_folder_clashes

NAMES = st.sampled_from(["a", "b", "c", "pkg", "x"])
PATHS = st.lists(NAMES, min_size=1, max_size=5).map(lambda parts: "python/" + "/".join(parts))
WHEELS = st.lists(st.lists(PATHS, min_size=1, max_size=12), min_size=1, max_size=3)


def planned(paths: list[list[str]]) -> dict[Path, list[_Planned]]:
    return {
        Path(f"w{index}-1.0-py3-none-any.whl"): [_Planned(zipfile.ZipInfo(p[7:]), p) for p in entries]
        for index, entries in enumerate(paths)
    }


def reference(plans: dict[Path, list[_Planned]]) -> str | None:
    files: dict[str, tuple[Path, str]] = {}
    for wheel, items in plans.items():
        for item in items:
            files.setdefault(item.destination, (wheel, item.info.filename))
    for wheel, items in plans.items():
        for item in items:
            parent = PurePosixPath(item.destination).parent
            while parent.name:
                clash = files.get(str(parent))
                if clash is not None:
                    return f"{wheel.name}: entry {item.info.filename!r} needs {clash[1]!r} to be a folder"
                parent = parent.parent
    return None


@settings(max_examples=300, deadline=None)
@given(WHEELS)
def test_the_check_refuses_exactly_what_a_walk_of_every_parent_refuses(paths: list[list[str]]) -> None:
    plans = planned(paths)
    expected = reference(plans)
    if expected is None:
        _refuse_file_folder_clashes(plans)
        return
    with pytest.raises(UnsafeArchiveError) as refused:
        _refuse_file_folder_clashes(plans)
    assert refused.value.message.startswith(expected)


def test_a_file_far_above_an_entry_is_found_after_its_folders_were_seen() -> None:
    plans = planned([["python/pkg/a/b/c.py", "python/pkg/a/b/d.py"], ["python/pkg/a/e.py", "python/pkg"]])
    with pytest.raises(UnsafeArchiveError) as refused:
        _refuse_file_folder_clashes(plans)
    assert "'pkg/a/b/c.py' needs 'pkg' to be a folder" in refused.value.message
