from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from layerforge.tree.archive import write_zip


def make_tree(root: Path) -> None:
    (root / "python" / "pkg" / "sub").mkdir(parents=True)
    (root / "python" / "pkg" / "__init__.py").write_text("x = 1\n" * 100)
    (root / "python" / "pkg" / "sub" / "data.bin").write_bytes(os.urandom(4096))
    tool = root / "python" / "pkg" / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o700)
    (root / "python" / "link").symlink_to("/etc/passwd")


def test_same_tree_gives_the_same_bytes_whatever_the_timestamps_and_umask(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    first = write_zip(tmp_path / "a", tmp_path / "one.zip")
    for path in (tmp_path / "a").rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_700_000_000, 1_700_000_000))
    (tmp_path / "a" / "python" / "pkg" / "__init__.py").chmod(0o600)
    second = write_zip(tmp_path / "a", tmp_path / "two.zip")
    assert first.sha256 == second.sha256
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()


def test_entries_are_sorted_with_fixed_dates_normal_modes_and_no_links(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    result = write_zip(tmp_path / "a", tmp_path / "layer.zip")
    with zipfile.ZipFile(result.path) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert (
        names == sorted(names) == ["python/pkg/__init__.py", "python/pkg/sub/data.bin", "python/pkg/tool.sh"]
    )
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {i.filename: stat.S_IMODE(i.external_attr >> 16) for i in infos}
    assert modes == {
        "python/pkg/__init__.py": 0o644,
        "python/pkg/sub/data.bin": 0o644,
        "python/pkg/tool.sh": 0o755,
    }
    assert result.unzipped_bytes == sum(i.file_size for i in infos)
    assert result.zipped_bytes == result.path.stat().st_size


def test_a_failed_zip_leaves_nothing_behind(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    unreadable = tmp_path / "a" / "python" / "pkg" / "sub" / "data.bin"

    def explode(_amount: int) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_zip(tmp_path / "a", tmp_path / "out" / "layer.zip", progress=explode)
    assert list((tmp_path / "out").iterdir()) == []
    assert unreadable.exists()


def test_parallel_deflate_gives_the_same_bytes_as_serial_and_is_valid(tmp_path: Path) -> None:
    root = tmp_path / "a"
    (root / "python").mkdir(parents=True)
    big = os.urandom(1_500_000) + b"layer" * 700_000  # incompressible and repetitive parts
    (root / "python" / "big.bin").write_bytes(big)
    (root / "python" / "copy.bin").write_bytes(big)  # identical content is deflated once
    (root / "python" / "empty.py").write_bytes(b"")
    serial = write_zip(root, tmp_path / "serial.zip", jobs=1)
    parallel = write_zip(root, tmp_path / "parallel.zip", jobs=4)
    assert serial.sha256 == parallel.sha256
    with zipfile.ZipFile(parallel.path) as archive:
        assert archive.testzip() is None
        assert archive.read("python/big.bin") == big and archive.read("python/empty.py") == b""
        infos = {i.filename: i for i in archive.infolist()}
    assert infos["python/big.bin"].compress_size < len(big) * 0.5
