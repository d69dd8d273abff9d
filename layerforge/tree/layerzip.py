"""Open an existing layer zip for `layerforge verify`: unpacked safely, with the distributions it carries.

A layer zip from elsewhere is hostile input like any wheel: the same entry checks apply, and the total
unpacked size is bounded before anything is written.
"""

from __future__ import annotations

import stat
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from ..errors import InputError, UnsafeArchiveError
from .unpack import LAYER_PREFIX, MAX_TOTAL_BYTES, LayerFile, LayerTree, check_entry_name


def extract_layer(zip_path: Path, root: Path, *, prefix: str = "", python: bool = True) -> LayerTree:
    """Unpack a layer zip into `root`. Files are not attributed to distributions: the check needs only
    the top-level modules and the dist-info names (`distribution_names`). `prefix` ("python/") reads a
    function zip, whose packages sit at its root, as the layer it would be. `python=False` accepts a
    layer without python/ (one that ships only native libraries in lib/)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise InputError(f"{zip_path}: no such file", hint="pass the path of a layer zip") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{zip_path}: not a readable zip ({error})", hint="pass a layer zip") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        _check_entries(zip_path.name, infos)
        if python and not any((prefix + info.filename).startswith(LAYER_PREFIX + "/") for info in infos):
            raise InputError(
                f"{zip_path}: no entry under python/, so Lambda would put nothing of it on sys.path",
                hint="a Python layer keeps its packages under python/ (see `layerforge build`)",
            )
        tree = LayerTree(root)
        for info in infos:
            name = prefix + info.filename
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                while chunk := source.read(1024 * 1024):
                    sink.write(chunk)
            target.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
            tree.files[name] = LayerFile(name, info.file_size, "", zip_path.name)
    return tree


def _check_entries(name: str, infos: list[zipfile.ZipInfo]) -> None:
    seen: set[str] = set()
    total = 0
    for info in infos:
        check_entry_name(name, info.filename)
        if info.filename in seen:
            raise UnsafeArchiveError(f"{name}: entry {info.filename!r} appears twice")
        seen.add(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(f"{name}: entry {info.filename!r} is a symbolic link; refused")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise UnsafeArchiveError(f"{name}: declares more than {MAX_TOTAL_BYTES} bytes unpacked; refused")


def distribution_names(tree: LayerTree) -> list[str]:
    """The distributions whose metadata the layer carries: what `importlib.metadata` can find."""
    names = set()
    for path in tree.files:
        if path.endswith(".dist-info/METADATA"):
            headers = HeaderParser().parsestr((tree.root / path).read_text("utf-8", "replace"))
            if headers.get("Name"):
                names.add(canonicalize_name(headers["Name"]))
    return sorted(names)


# A dist-info file of a layer from elsewhere is hostile input: read no more of it than metadata can need.
METADATA_MAX_BYTES = 4 * 1024 * 1024


def read_metadata_text(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(METADATA_MAX_BYTES).decode("utf-8", "replace")


def owners(tree: LayerTree) -> dict[str, str]:
    """Layer path -> the distribution that ships it, as far as the layer's dist-info folders tell: their
    RECORD and top_level.txt, and auditwheel's `<distribution>.libs` folder beside them."""
    by_top: dict[tuple[str, str], str] = {}
    for path in sorted(tree.files):
        if not path.endswith(".dist-info/METADATA"):
            continue
        folder = path.rsplit("/", 1)[0]
        base = folder.rsplit("/", 1)[0]
        name = HeaderParser().parsestr(read_metadata_text(tree.root / path)).get("Name")
        if not name:
            continue
        tops = {f"{canonicalize_name(name).replace('-', '_')}.libs"}
        for listing in ("top_level.txt", "RECORD"):
            listed = tree.root / folder / listing
            if listed.is_file():
                lines = read_metadata_text(listed).splitlines()
                tops.update(line.split(",", 1)[0].split("/", 1)[0] for line in lines if line.strip())
        for top in tops:
            by_top.setdefault((base, top.removesuffix(".py")), str(name))
    found: dict[str, str] = {}
    for path in tree.files:
        for (base, top), name in by_top.items():
            if path.startswith(f"{base}/{top}/") or path.startswith(f"{base}/{top}."):
                found[path] = name
                break
    return found
