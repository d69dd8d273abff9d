"""Tiny wheels built by the tests themselves: valid ones, and hostile ones for security tests.

A valid wheel::

    path = build_wheel(tmp_path, "fastlib", "1.0", "cp311-cp311-manylinux2014_x86_64",
                       files={"fastlib/_speed.so": so_bytes}, requires=["demo>=1"])

A hostile wheel (members that escape the target, a symlink, a duplicate, a RECORD that lies)::

    build_wheel(tmp_path, "evil", "1.0", raw_entries=[
        RawEntry("../evil.py", b"boom"),
        RawEntry("/abs.py", b"boom"),
        RawEntry("C:/x.py", b"boom"),
        symlink("evil/link", "/etc/passwd"),
        RawEntry("evil/__init__.py", b"second copy"),  # duplicate of a regular member
    ], record=lambda text: text.replace("sha256=", "sha256=AAAA", 1))

Wheels are deterministic: the same arguments give the same bytes (fixed timestamps, sorted
members), so their sha256 is stable across runs.
"""

from __future__ import annotations

import base64
import hashlib
import stat
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

__all__ = [
    "RawEntry",
    "build_wheel",
    "dist_info_name",
    "expand_tag",
    "record_hash",
    "symlink",
    "wheel_filename",
]

# 1980-01-01, the earliest date a zip can hold: keeps wheels byte-for-byte reproducible.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = stat.S_IFREG | 0o644


@dataclass(frozen=True)
class RawEntry:
    """A zip member written exactly as given, bypassing every check of the factory.

    ``name`` may be anything (``../x``, ``/abs``, ``C:/x``, a name already used).
    ``mode`` is a full ``st_mode`` stored in the high 16 bits of ``external_attr``
    (``stat.S_IFLNK | 0o777`` makes a symlink whose target is ``data``); ``None`` means a
    regular 0o644 file. The entry is listed in RECORD (with its true hash) only if ``in_record``.
    """

    name: str
    data: bytes | str = b""
    mode: int | None = None
    in_record: bool = False


def symlink(name: str, target: str, *, in_record: bool = False) -> RawEntry:
    """A zip member that unzip-like extractors turn into a symlink ``name -> target``."""
    return RawEntry(name, target, stat.S_IFLNK | 0o777, in_record)


def _bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def record_hash(data: bytes | str) -> str:
    """The RECORD hash field of ``data``: ``sha256=`` + urlsafe base64 without padding."""
    digest = hashlib.sha256(_bytes(data)).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _escape_name(name: str) -> str:
    # Wheel spec: runs of "-_." become "_", lowercase (the canonical name with "-" -> "_").
    return canonicalize_name(name).replace("-", "_")


def _escape_version(version: str) -> str:
    return str(Version(version)).replace("-", "_")


def dist_info_name(name: str, version: str) -> str:
    """The ``.dist-info`` directory of a distribution, e.g. ``my_pkg-1.0.dist-info``."""
    return f"{_escape_name(name)}-{_escape_version(version)}.dist-info"


def wheel_filename(name: str, version: str, tag: str = "py3-none-any") -> str:
    """The normalised wheel file name, e.g. ``my_pkg-1.0-py3-none-any.whl``."""
    expand_tag(tag)  # validates
    return f"{_escape_name(name)}-{_escape_version(version)}-{tag}.whl"


def expand_tag(tag: str) -> list[str]:
    """Every ``python-abi-platform`` triple of a compressed tag set, in the order written.

    ``cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64`` gives two tags.
    """
    parts = [p.split(".") for p in tag.split("-")]
    if len(parts) != 3 or not all(all(x) for x in parts):
        raise ValueError(f"not a python-abi-platform tag: {tag!r}")
    interpreters, abis, platforms = parts
    return [f"{i}-{a}-{p}" for i in interpreters for a in abis for p in platforms]


def _metadata(name: str, version: str, requires: Sequence[str], requires_python: str | None) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires]
    return "\n".join(lines) + "\n\n"


def _wheel_file(tag: str) -> str:
    lines = [
        "Wheel-Version: 1.0",
        "Generator: layerforge-tests-wheelfactory",
        f"Root-Is-Purelib: {'true' if tag.endswith('-none-any') else 'false'}",
    ]
    lines += [f"Tag: {t}" for t in expand_tag(tag)]
    return "\n".join(lines) + "\n"


def _zipinfo(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so that extractors honour the mode bits
    info.external_attr = (mode & 0xFFFF) << 16
    return info


def build_wheel(
    out_dir: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    files: Mapping[str, bytes | str] | None = None,
    requires: Sequence[str] = (),
    extra_dist_info: Mapping[str, bytes | str] | None = None,
    *,
    requires_python: str | None = None,
    raw_entries: Sequence[RawEntry] = (),
    record: str | bytes | Callable[[str], str] | None = None,
) -> Path:
    """Write a wheel into ``out_dir`` (created if needed) and return its path.

    ``files``: archive path -> content; default ``{name}/__init__.py`` with ``__version__``.
    ``requires``: ``Requires-Dist`` lines; ``requires_python``: the ``Requires-Python`` line.
    ``extra_dist_info``: more files in the ``.dist-info`` directory; a ``METADATA`` or ``WHEEL``
    key replaces the generated one. ``raw_entries``: members added verbatim after everything
    else (see :class:`RawEntry`). ``record``: replaces the generated RECORD text, or, if
    callable, receives the true RECORD text and returns the one to write (to make it lie).
    """
    expand_tag(tag)
    if files is None:
        package = _escape_name(name)
        files = {f"{package}/__init__.py": f'__version__ = "{version}"\n'}
    dist_info = dist_info_name(name, version)
    generated: dict[str, bytes] = {
        f"{dist_info}/METADATA": _metadata(name, version, requires, requires_python).encode(),
        f"{dist_info}/WHEEL": _wheel_file(tag).encode(),
    }
    for rel, data in (extra_dist_info or {}).items():
        generated[f"{dist_info}/{rel}"] = _bytes(data)

    members: list[tuple[str, bytes]] = sorted((k, _bytes(v)) for k, v in files.items())
    members += [(k, generated[k]) for k in sorted(generated)]

    record_name = f"{dist_info}/RECORD"
    rows = [f"{arc},{record_hash(data)},{len(data)}" for arc, data in members]
    rows += [f"{e.name},{record_hash(e.data)},{len(_bytes(e.data))}" for e in raw_entries if e.in_record]
    rows.append(f"{record_name},,")
    record_text = "\n".join(rows) + "\n"
    if callable(record):
        record_bytes = record(record_text).encode()
    elif record is not None:
        record_bytes = _bytes(record)
    else:
        record_bytes = record_text.encode()

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / wheel_filename(name, version, tag)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted for hostile wheels
        with zipfile.ZipFile(path, "w") as zf:
            for arc, data in members:
                zf.writestr(_zipinfo(arc, _FILE_MODE), data)
            zf.writestr(_zipinfo(record_name, _FILE_MODE), record_bytes)
            for entry in raw_entries:
                mode = _FILE_MODE if entry.mode is None else entry.mode
                zf.writestr(_zipinfo(entry.name, mode), _bytes(entry.data))
    return path
