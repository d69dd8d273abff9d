"""`publish --project DIST...`: every built cell found in DIST, to every region of the project.

A DIST is a build's output folder, or a folder of matrix-job artifacts (one sub-folder per cell, each
holding zip, manifest, lock and SBOM). Each cell goes through the one `publish` there is, so the same
rules hold: content-addressed keys, no upload of an object already there, no layer version when the
latest holds the same zip.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..aws.publish import PublishOptions, PublishResult, publish
from ..cache import sha256_of
from ..errors import InputError
from ..fsutil import sibling
from .config import Cell, Project

MANIFEST_SUFFIX = ".manifest.json"
# Folders deeper than this below a DIST are not searched: artifacts nest one or two levels.
MAX_DEPTH = 4


@dataclass(frozen=True)
class BuiltCell:
    cell: Cell
    zip_path: Path


@dataclass(frozen=True)
class Found:
    cells: tuple[BuiltCell, ...]
    missing: tuple[str, ...]  # cells of the project with no build in any DIST
    foreign: tuple[str, ...]  # zips in DIST that are no cell of the project


def find_built_cells(project: Project, cells: Sequence[Cell], dists: Sequence[Path]) -> Found:
    by_name = {cell.name: cell for cell in cells}
    chosen: dict[str, BuiltCell] = {}
    foreign: list[str] = []
    for dist in dists:
        if not dist.is_dir():
            raise InputError(
                f"{dist} is not a folder", hint="pass the build's --out folder, or the artifacts"
            )
        for manifest in _manifests(dist):
            zip_path = _zip_of(manifest)
            if zip_path is None:
                continue
            cell = by_name.get(zip_path.stem)
            if cell is None:
                foreign.append(str(zip_path))
                continue
            earlier = chosen.get(cell.name)
            if earlier is not None and sha256_of(earlier.zip_path) != sha256_of(zip_path):
                raise InputError(
                    f"cell {cell.name} is built twice, differently: {earlier.zip_path} and {zip_path}",
                    hint="pass the folders of one build only",
                )
            chosen.setdefault(cell.name, BuiltCell(cell, zip_path))
    ordered = tuple(chosen[cell.name] for cell in cells if cell.name in chosen)
    missing = tuple(cell.name for cell in cells if cell.name not in chosen)
    return Found(ordered, missing, tuple(foreign))


def _manifests(dist: Path) -> list[Path]:
    found = []
    base = len(dist.parts)
    # os.walk does not follow symbolic links to folders: an artifact cannot lead the search elsewhere.
    for folder, subfolders, files in os.walk(dist):
        if len(Path(folder).parts) - base >= MAX_DEPTH:
            subfolders.clear()
        found += [Path(folder) / name for name in sorted(files) if name.endswith(MANIFEST_SUFFIX)]
    return sorted(found)


def _zip_of(manifest: Path) -> Path | None:
    """The layer zip a manifest describes, beside it; None for a function's manifest or a stray file."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind", "layer") != "layer":
        return None
    name = data.get("zip")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".zip"):
        return None
    path = manifest.parent / name
    if sibling(path, MANIFEST_SUFFIX) != manifest or not path.is_file() or path.is_symlink():
        return None
    return path


def publish_cells(
    project: Project,
    found: Sequence[BuiltCell],
    base: PublishOptions,
    *,
    jobs: int = 4,
    on_done: Callable[[BuiltCell, PublishResult], None] | None = None,
) -> list[PublishResult]:
    """Each cell with `base`'s settings; the project's regions and bucket unless `base` names its own."""
    regions = base.regions or project.regions
    bucket = base.bucket or project.bucket
    if not regions:
        raise InputError(
            f"{project.path}: no regions to publish to", hint='regions = ["us-east-1"], or --region'
        )

    def one(built: BuiltCell) -> PublishResult:
        options = dataclasses.replace(
            base,
            zip_path=built.zip_path,
            regions=regions,
            bucket=bucket,
            prefix=project.prefix if base.prefix == PublishOptions.prefix else base.prefix,
        )
        result = publish(options)
        if on_done:
            on_done(built, result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(found))), thread_name_prefix="cell") as pool:
        return list(pool.map(one, found))
