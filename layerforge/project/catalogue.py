"""The catalogue: publish records (and upload-only records) merged into what people and Terraform read.

- `catalogue.json`: per cell and region, the layer version ARN, version, sha256, sizes, locked packages;
- `catalogue.md`: one ARN table per runtime and region, for a README or a job summary;
- `layers.auto.tfvars.json`: the variable `layerforge_layers`, per cell the S3 bucket and key, the
  `source_code_hash` (base64 SHA-256, what Terraform's `filebase64sha256` gives), the compatible runtimes
  and architectures, and the ARN per region where a layer version exists.

Records are input from elsewhere (CI artifacts): every field is checked before it lands in a table.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..cache import is_sha256
from ..errors import InputError
from ..fsutil import atomic_write_text

RECORD_SUFFIX = ".publish.json"
TFVARS_VARIABLE = "layerforge_layers"
FILES = ("catalogue.json", "catalogue.md", "layers.auto.tfvars.json")
_MAX_RECORD_BYTES = 10_000_000
_MAX_DEPTH = 4
_CELL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_LAYER_VERSION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]{1,140}:\d{1,9}$"
)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_SAFE = re.compile(r"^[A-Za-z0-9._:/{}=+@-]{1,1024}$")  # bucket names, keys, runtimes: no markup


@dataclass(frozen=True)
class Published:
    """One cell in one region, as one record says."""

    region: str
    bucket: str | None
    key: str | None
    layer_version_arn: str | None
    version: int | None


@dataclass(frozen=True)
class Record:
    path: Path
    cell: str
    layer_name: str
    recipe: str | None
    sha256: str
    zipped_bytes: int
    bucket: str | None
    key: str | None
    runtimes: tuple[str, ...]
    architectures: tuple[str, ...]
    upload_only: bool
    regions: tuple[Published, ...]
    unzipped_bytes: int | None = None
    packages: tuple[dict[str, str], ...] = ()

    @property
    def newest(self) -> int:
        return max((r.version for r in self.regions if r.version is not None), default=-1)


@dataclass
class Catalogue:
    cells: dict[str, Record] = field(default_factory=dict)
    regions: dict[str, dict[str, Published]] = field(default_factory=dict)  # cell -> region -> entry
    notes: list[str] = field(default_factory=list)

    @property
    def arns(self) -> list[str]:
        return [
            entry.layer_version_arn
            for cell in sorted(self.regions)
            for _, entry in sorted(self.regions[cell].items())
            if entry.layer_version_arn
        ]


def record_paths(paths: Sequence[Path]) -> list[Path]:
    """The record files named, and those found in the folders named (not following links)."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            base = len(path.parts)
            for folder, subfolders, files in os.walk(path):
                if len(Path(folder).parts) - base >= _MAX_DEPTH:
                    subfolders.clear()
                found += [Path(folder) / n for n in sorted(files) if n.endswith(RECORD_SUFFIX)]
        else:
            raise InputError(
                f"{path}: no such record or folder", hint="pass publish records or their folders"
            )
    if not found:
        raise InputError(
            f"no publish records (*{RECORD_SUFFIX}) in {', '.join(map(str, paths))}",
            hint="run `layerforge publish` (or --upload-only) first; it writes one beside each zip",
        )
    return sorted(dict.fromkeys(found), key=lambda p: paths_order(p, paths))


def paths_order(path: Path, roots: Sequence[Path]) -> tuple[int, str]:
    # The order given on the command line, then by name: "the later record wins a tie" means something.
    for index, root in enumerate(roots):
        if path == root or root in path.parents:
            return index, str(path)
    return len(roots), str(path)


def read_record(path: Path) -> Record:
    def bad(problem: str) -> InputError:
        return InputError(f"{path}: not a publish record: {problem}", hint="pass records `publish` wrote")

    try:
        if path.stat().st_size > _MAX_RECORD_BYTES:
            raise bad("too large")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise bad(str(error)) from None
    if not isinstance(data, dict) or data.get("kind") != "publish":
        raise bad("kind is not 'publish'")
    zip_name, sha256 = data.get("zip"), data.get("sha256")
    if not isinstance(zip_name, str) or not zip_name.endswith(".zip") or not _CELL.match(zip_name[:-4]):
        raise bad("zip must be a zip's file name")
    if not isinstance(sha256, str) or not is_sha256(sha256):
        raise bad("sha256 must be 64 hex digits")
    layer_name = _text(data, "layer_name", bad, required=True)
    assert layer_name is not None
    size = data.get("zipped_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad("zipped_bytes must be a count of bytes")
    regions = data.get("regions")
    if not isinstance(regions, list):
        raise bad("regions must be a list")
    unzipped, packages = _from_manifest(path, zip_name, sha256)
    return Record(
        path=path,
        cell=zip_name[:-4],
        layer_name=layer_name,
        recipe=_text(data, "recipe", bad),
        sha256=sha256,
        zipped_bytes=size,
        bucket=_text(data, "bucket", bad),
        key=_text(data, "key", bad),
        runtimes=_texts(data, "compatible_runtimes", bad),
        architectures=_texts(data, "compatible_architectures", bad),
        upload_only=data.get("upload_only") is True,
        regions=tuple(_published(entry, bad) for entry in regions if _ok(entry)),
        unzipped_bytes=unzipped,
        packages=packages,
    )


def _ok(entry: object) -> bool:
    return isinstance(entry, dict) and entry.get("status") == "ok"


def _published(entry: dict[str, Any], bad: Any) -> Published:
    region = entry.get("region")
    if not isinstance(region, str) or not _REGION.match(region):
        raise bad(f"{region!r} is not a region")
    arn, version = entry.get("layer_version_arn"), entry.get("version")
    if arn is not None and (not isinstance(arn, str) or not _LAYER_VERSION_ARN.match(arn)):
        raise bad(f"{arn!r} is not a layer version ARN")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise bad(f"version {version!r} is not a layer version")
    return Published(region, _text(entry, "bucket", bad), _text(entry, "key", bad), arn, version)


def _text(data: dict[str, Any], key: str, bad: Any, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _SAFE.match(value):
        raise bad(f"{key} must be a plain name, not {value!r}")
    return value


def _texts(data: dict[str, Any], key: str, bad: Any) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise bad(f"{key} must be a list")
    return tuple(_text({key: item}, key, bad, required=True) or "" for item in value)


def _from_manifest(record: Path, zip_name: str, sha256: str) -> tuple[int | None, tuple[dict[str, str], ...]]:
    """Sizes and locked packages from the build manifest beside the record, when it is of the same zip."""
    try:
        data = json.loads((record.parent / (zip_name[:-4] + ".manifest.json")).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, ()
    if not isinstance(data, dict) or data.get("sha256") != sha256:
        return None, ()
    unzipped = data.get("unzipped_bytes")
    packages = tuple(
        {"name": p["name"], "version": p["version"]}
        for p in data.get("packages") or []
        if isinstance(p, dict)
        and all(isinstance(p.get(k), str) and _SAFE.match(p[k]) for k in ("name", "version"))
    )
    return (unzipped if isinstance(unzipped, int) and not isinstance(unzipped, bool) else None), packages


def merge(records: Iterable[Record]) -> Catalogue:
    """One entry per cell: the record with the newest layer version (the later one on a tie), and per
    region the newest version any record gives; every time one record displaces another, a note."""
    catalogue = Catalogue()
    for record in records:
        earlier = catalogue.cells.get(record.cell)
        if earlier is None or record.newest >= earlier.newest:
            if earlier is not None and earlier.sha256 != record.sha256:
                catalogue.notes.append(_displaced(record.cell, kept=record, dropped=earlier))
            catalogue.cells[record.cell] = record
        elif earlier.sha256 != record.sha256:
            catalogue.notes.append(_displaced(record.cell, kept=earlier, dropped=record))
        regions = catalogue.regions.setdefault(record.cell, {})
        for entry in record.regions:
            current = regions.get(entry.region)
            if current is None or (entry.version or 0) >= (current.version or 0):
                if current is not None and current.version and entry.version != current.version:
                    catalogue.notes.append(
                        f"{record.cell} in {entry.region}: published twice, versions {current.version} and "
                        f"{entry.version}; kept the newest, version {entry.version}"
                    )
                regions[entry.region] = entry
            elif entry.version != current.version:
                catalogue.notes.append(
                    f"{record.cell} in {entry.region}: published twice, versions {entry.version} and "
                    f"{current.version}; kept the newest, version {current.version}"
                )
    return catalogue


def _displaced(cell: str, *, kept: Record, dropped: Record) -> str:
    def which(record: Record) -> str:
        version = f"version {record.newest}" if record.newest > 0 else "no layer version"
        return f"{record.path} ({version}, sha256 {record.sha256[:12]})"

    return f"{cell}: two records of different zips; kept the newest, {which(kept)}, over {which(dropped)}"


def source_code_hash(sha256_hex: str) -> str:
    """The base64 of the SHA-256 digest: Terraform's `filebase64sha256` and Lambda's CodeSha256."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def as_json(catalogue: Catalogue) -> dict[str, Any]:
    cells = {}
    for name, record in sorted(catalogue.cells.items()):
        cells[name] = {
            "layer_name": record.layer_name,
            "recipe": record.recipe,
            "runtime": record.runtimes[0] if record.runtimes else None,
            "arch": record.architectures[0] if record.architectures else None,
            "compatible_runtimes": list(record.runtimes),
            "compatible_architectures": list(record.architectures),
            "sha256": record.sha256,
            "source_code_hash": source_code_hash(record.sha256),
            "zipped_bytes": record.zipped_bytes,
            "unzipped_bytes": record.unzipped_bytes,
            "packages": list(record.packages),
            "bucket": record.bucket,
            "s3_key": record.key,
            "upload_only": record.upload_only,
            "record": str(record.path),
            "regions": {
                region: {
                    "layer_version_arn": entry.layer_version_arn,
                    "version": entry.version,
                    "bucket": entry.bucket,
                    "s3_key": entry.key,
                }
                for region, entry in sorted(catalogue.regions.get(name, {}).items())
            },
        }
    return {
        "schema_version": 1,
        "kind": "catalogue",
        "layerforge_version": __version__,
        "cells": cells,
        "layer_version_arns": catalogue.arns,
        "notes": list(catalogue.notes),
    }


def as_tfvars(catalogue: Catalogue) -> dict[str, Any]:
    layers = {}
    for name, record in sorted(catalogue.cells.items()):
        regions = catalogue.regions.get(name, {})
        layers[name] = {
            "layer_name": record.layer_name,
            "s3_bucket": record.bucket,
            "s3_buckets": {r: e.bucket for r, e in sorted(regions.items()) if e.bucket},
            "s3_key": record.key,
            "source_code_hash": source_code_hash(record.sha256),
            "compatible_runtimes": list(record.runtimes),
            "compatible_architectures": list(record.architectures),
            "layer_version_arns": {
                r: e.layer_version_arn for r, e in sorted(regions.items()) if e.layer_version_arn
            },
        }
    return {TFVARS_VARIABLE: layers}


def as_markdown(catalogue: Catalogue) -> str:
    tables: dict[tuple[str, str], list[tuple[str, Record, Published]]] = {}
    uploaded: list[tuple[str, Record, Published]] = []
    for name, record in sorted(catalogue.cells.items()):
        for region, entry in sorted(catalogue.regions.get(name, {}).items()):
            if entry.layer_version_arn is None:
                uploaded.append((name, record, entry))
                continue
            for runtime in record.runtimes or ("any",):
                tables.setdefault((runtime, region), []).append((name, record, entry))
    lines = ["# Lambda layers", ""]
    for (runtime, region), rows in sorted(tables.items()):
        lines += [f"## {runtime} in {region}", "", "| layer | arch | version | ARN | zipped | unzipped |"]
        lines.append("|---|---|---:|---|---:|---:|")
        for name, record, entry in rows:
            unzipped = f"{record.unzipped_bytes:,}" if record.unzipped_bytes is not None else ""
            lines.append(
                f"| {name} | {', '.join(record.architectures)} | {entry.version} "
                f"| `{entry.layer_version_arn}` | {record.zipped_bytes:,} | {unzipped} |"
            )
        lines.append("")
    if uploaded:
        lines += [
            "## Uploaded, no layer version (Terraform publishes them)",
            "",
            "| layer | region | S3 object |",
        ]
        lines.append("|---|---|---|")
        lines += [
            f"| {name} | {entry.region} | `s3://{entry.bucket}/{entry.key}` |" for name, _, entry in uploaded
        ]
        lines.append("")
    if catalogue.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in catalogue.notes] + [""]
    return "\n".join(lines)


def write_catalogue(catalogue: Catalogue, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = (
        json.dumps(as_json(catalogue), indent=2, sort_keys=True) + "\n",
        as_markdown(catalogue),
        json.dumps(as_tfvars(catalogue), indent=2, sort_keys=True) + "\n",
    )
    written = []
    for name, text in zip(FILES, texts, strict=True):
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written


def build_catalogue(paths: Sequence[Path]) -> Catalogue:
    return merge(read_record(path) for path in record_paths(paths))
