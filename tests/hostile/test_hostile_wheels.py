"""Hostile wheels: each is refused with an error naming the wheel and the entry, and nothing escapes.

Every test unpacks into `<tmp>/stage/layer` and then checks the whole of `<tmp>` for anything written
outside the staging folder (the checks walk the real file system).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from layerforge.errors import UnsafeArchiveError
from layerforge.tree.unpack import unpack_all
from tests.support.wheelfactory import RawEntry, build_wheel, symlink


def files_outside(tmp: Path, stage: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if not p.is_relative_to(stage) and p.is_file() and p.suffix != ".whl"]


def refuse(tmp: Path, wheel: Path, *needles: str) -> str:
    stage = tmp / "stage"
    with pytest.raises(UnsafeArchiveError) as raised:
        unpack_all([wheel], stage / "layer")
    message = str(raised.value)
    assert wheel.name in message
    for needle in needles:
        assert needle in message
    assert files_outside(tmp, stage) == []
    assert not (tmp / "evil.py").exists() and not Path("/tmp/layerforge-evil.py").exists()
    return message


HOSTILE_ENTRIES: dict[str, Callable[[], RawEntry]] = {
    "dot-dot": lambda: RawEntry("../../evil.py", "print('escaped')\n", in_record=True),
    "nested-dot-dot": lambda: RawEntry("pkg/../../../evil.py", "x = 1\n", in_record=True),
    "absolute": lambda: RawEntry("/tmp/layerforge-evil.py", "x = 1\n", in_record=True),
    "drive-letter": lambda: RawEntry("C:/evil.py", "x = 1\n", in_record=True),
    "backslash": lambda: RawEntry("..\\evil.py", "x = 1\n", in_record=True),
    "symlink": lambda: symlink("pkg/link", "/etc/passwd", in_record=True),
    "device-file": lambda: RawEntry("pkg/fifo", "", mode=0o010644, in_record=True),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ENTRIES))
def test_entries_that_escape_or_are_not_plain_files_are_refused(case: str, tmp_path: Path) -> None:
    entry = HOSTILE_ENTRIES[case]()
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", raw_entries=[entry])
    refuse(tmp_path, wheel, repr(entry.name))


def test_a_link_cannot_be_used_to_write_through(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "wheels",
        "pkg",
        "1.0",
        raw_entries=[symlink("pkg/out", str(tmp_path)), RawEntry("pkg/out/evil.py", "x=1\n")],
    )
    refuse(tmp_path, wheel, "symbolic link")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "wheels", "pkg", "1.0", raw_entries=[RawEntry("pkg/__init__.py", "print('second copy')\n")]
    )
    refuse(tmp_path, wheel, "appears twice")


def test_a_record_that_lies_is_refused(tmp_path: Path) -> None:
    def lie(record: str) -> str:
        return record.replace("pkg/__init__.py,sha256=", "pkg/__init__.py,sha256=AAAA", 1)

    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", record=lie)
    refuse(tmp_path, wheel, "does not match its RECORD hash", "pkg/__init__.py")


def test_a_file_missing_from_record_is_refused(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "wheels", "pkg", "1.0", raw_entries=[RawEntry("pkg/smuggled.py", "x = 1\n")]
    )
    refuse(tmp_path, wheel, "not listed in RECORD", "pkg/smuggled.py")


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0")
    with zipfile.ZipFile(wheel, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pkg/bomb.bin", b"\0" * (64 * 1024 * 1024))
    refuse(tmp_path, wheel, "zip bomb", "pkg/bomb.bin")
    assert not (tmp_path / "stage" / "layer" / "python" / "pkg" / "__init__.py").exists()


def test_an_entry_longer_than_it_declares_is_refused(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", files={"pkg/__init__.py": "x = 1\n" * 100})
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("pkg/__init__.py")
    # Shrink the declared size in both headers; the stored data stays as long as it was.
    true_size = info.file_size.to_bytes(4, "little")
    lie = (10).to_bytes(4, "little")
    assert data.count(true_size) >= 2
    wheel.write_bytes(bytes(data).replace(true_size, lie))
    stage = tmp_path / "stage"
    with pytest.raises(UnsafeArchiveError) as raised:
        unpack_all([wheel], stage / "layer")
    assert wheel.name in str(raised.value)
    assert files_outside(tmp_path, stage) == []


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "wheels" / "pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"<html>404</html>")
    refuse(tmp_path, wheel, "not a readable zip")


def test_a_clean_wheel_unpacks_with_provenance(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "wheels", "pkg", "1.0", files={"pkg/__init__.py": "x = 1\n", "pkg/bin.sh": "#!"}
    )
    tree = unpack_all([wheel], tmp_path / "stage" / "layer")
    assert tree.files["python/pkg/__init__.py"].wheel == wheel.name
    assert tree.files["python/pkg/__init__.py"].distribution == "pkg"
    assert (tmp_path / "stage" / "layer" / "python" / "pkg-1.0.dist-info" / "METADATA").is_file()
    assert files_outside(tmp_path, tmp_path / "stage") == []


def test_the_pieces_of_a_wheel_are_read_side_by_side_through_one_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each wheel is opened once, however many pieces its threads extract; every member still lands whole
    and is checked against RECORD (a lying RECORD is still refused, above)."""
    from layerforge.tree import unpack

    files = {f"pkg/m{i:03}.py": f"x = {i!r}\n" * (200 + i) for i in range(120)}
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", files=files)
    opened: list[Path] = []
    real_open = unpack._open

    def counting_open(path: Path) -> zipfile.ZipFile:
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(unpack, "_open", counting_open)
    monkeypatch.setattr(unpack, "_PIECE_BYTES", 4096)  # a few members a piece: about 30 pieces
    tree = unpack_all([wheel], tmp_path / "stage" / "layer", jobs=4)
    root = tmp_path / "stage" / "layer" / "python"
    assert {p: (root / p).read_text() for p in files} == files
    assert tree.files["python/pkg/m007.py"].wheel == wheel.name
    # One opening to plan the entries, one to write them: not one per piece.
    assert opened == [wheel, wheel]


# --- members read whole (libdeflate) and streamed (zipfile): the same refusals ----------------------------


@pytest.fixture(params=["whole", "streamed"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test below runs twice: members read whole and inflated by libdeflate (the default for all
    but huge members), and streamed through zipfile (what a member over _WHOLE_MEMBER_BYTES takes)."""
    from layerforge.tree import unpack

    if request.param == "streamed":
        monkeypatch.setattr(unpack, "_WHOLE_MEMBER_BYTES", -1)
    return str(request.param)


def _member_span(wheel: Path, name: str) -> tuple[zipfile.ZipInfo, int]:
    """The member's directory entry and where its compressed bytes start."""
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(name)
    data = wheel.read_bytes()
    name_length, extra_length = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        (int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")),
    )
    return info, info.header_offset + 30 + name_length + extra_length


def test_stored_and_deflated_members_land_whole(tmp_path: Path, reading: str) -> None:
    files = {
        "pkg/__init__.py": "x = 1\n" * 500,
        "pkg/data.bin": "".join(chr(65 + i % 26) for i in range(9000)),
    }
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", files=files)
    with zipfile.ZipFile(wheel, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("pkg/stored.txt", "kept as it is\n" * 50)
    _add_to_record(wheel, "pkg/stored.txt")
    unpack_all([wheel], tmp_path / "stage" / "layer")
    root = tmp_path / "stage" / "layer" / "python"
    assert {p: (root / p).read_text() for p in files} == files
    assert (root / "pkg" / "stored.txt").read_text() == "kept as it is\n" * 50


def test_a_damaged_deflate_stream_is_refused(tmp_path: Path, reading: str) -> None:
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", files={"pkg/__init__.py": "x = 1\n" * 2000})
    info, start = _member_span(wheel, "pkg/__init__.py")
    data = bytearray(wheel.read_bytes())
    data[start : start + info.compress_size] = bytes(0xFF for _ in range(info.compress_size))
    wheel.write_bytes(bytes(data))
    refuse(tmp_path, wheel, "pkg/__init__.py", "corrupt")


def test_a_member_whose_crc_lies_is_refused(tmp_path: Path, reading: str) -> None:
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", files={"pkg/__init__.py": "x = 1\n" * 2000})
    with zipfile.ZipFile(wheel) as archive:
        crc = archive.getinfo("pkg/__init__.py").CRC
    data = wheel.read_bytes()
    true_crc = crc.to_bytes(4, "little")
    assert data.count(true_crc) == 2  # the local header and the directory
    wheel.write_bytes(data.replace(true_crc, (crc ^ 1).to_bytes(4, "little")))
    refuse(tmp_path, wheel, "pkg/__init__.py", "corrupt", "CRC")


def test_a_local_header_under_another_name_is_refused(tmp_path: Path, reading: str) -> None:
    """The directory says one name, the member's own header another: which one a reader believes decides
    what it writes (zip parsers that differ on this are how scanners are slipped past)."""
    wheel = build_wheel(tmp_path / "wheels", "pkg", "1.0", files={"pkg/__init__.py": "x = 1\n"})
    with zipfile.ZipFile(wheel) as archive:
        offset = archive.getinfo("pkg/__init__.py").header_offset
    data = bytearray(wheel.read_bytes())
    assert data[offset + 30 : offset + 45] == b"pkg/__init__.py"
    data[offset + 30 : offset + 45] = b"pkg/__evil__.py"
    wheel.write_bytes(bytes(data))
    refuse(tmp_path, wheel, "pkg/__init__.py", "corrupt")


def test_a_member_that_runs_into_the_next_one_is_refused(tmp_path: Path, reading: str) -> None:
    """A directory entry whose compressed size reaches over the next member's header: the overlapping
    entries of a quoted-overlap zip bomb. zipfile refuses them from Python 3.12 (and 3.11.8); the local
    header's check refuses them on every Python, read whole or streamed."""
    wheel = build_wheel(
        tmp_path / "wheels", "pkg", "1.0", files={"pkg/a.py": "a = 1\n" * 300, "pkg/b.py": "b = 2\n" * 300}
    )
    with zipfile.ZipFile(wheel) as archive:
        infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
        start_dir = archive.start_dir
    first = next(info for info in infos if info.filename == "pkg/a.py")
    data = bytearray(wheel.read_bytes())
    entry = _directory_entry(data, start_dir, first.header_offset)
    # Its compressed size, 20 bytes into the entry: now 40 bytes into the next member's header.
    data[entry + 20 : entry + 24] = (first.compress_size + 40).to_bytes(4, "little")
    wheel.write_bytes(bytes(data))
    refuse(tmp_path, wheel, "pkg/a.py", "corrupt", "overlapped")


def _directory_entry(data: bytearray, start_dir: int, header_offset: int) -> int:
    """Where the central directory's entry for the member at `header_offset` starts (APPNOTE 4.3.12)."""
    at = start_dir
    while data[at : at + 4] == b"PK\x01\x02":
        if int.from_bytes(data[at + 42 : at + 46], "little") == header_offset:
            return at
        lengths = (int.from_bytes(data[at + i : at + i + 2], "little") for i in (28, 30, 32))
        at += 46 + sum(lengths)
    raise AssertionError(f"no directory entry for the member at {header_offset}")


def _add_to_record(wheel: Path, name: str) -> None:
    """Rewrite the wheel with `name` listed in its RECORD, hashed as it is stored."""
    import base64
    import hashlib

    with zipfile.ZipFile(wheel) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    content = next(data for info, data in members if info.filename == name)
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    rewritten = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(rewritten, "w") as archive:
        for info, data in members:
            listed = f"{name},sha256={digest},{len(content)}\n".encode()
            archive.writestr(info, data + listed if info.filename.endswith(".dist-info/RECORD") else data)
    rewritten.replace(wheel)
