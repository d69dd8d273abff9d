"""Where the bytes of a function and its layers go, and how they stand against Lambda's limits.

``measure_path`` and ``measure_layer_arn`` turn one input (a zip, a folder, a build manifest, a
published layer) into a ``SourceReport``; ``build_report`` puts sources together as one function with
its layers into a frozen ``SizeReport``: sizes per distribution, the biggest files, what slimming
removed, the limits with their headroom, and an optional comparison with another build.
Nothing here knows of click or rich; ``render`` draws the report.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import posixpath
import re
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from .. import limits
from ..aws import remote_zip
from ..errors import InputError, SizeLimitError
from ..limits import LimitCheck
from ..rangefile import DEFAULT_TAIL_BYTES, read_members

SCHEMA_VERSION = 1  # of the report's JSON
_MANIFEST_SCHEMA_VERSION = 1  # of the build manifests it reads (docs/manifest.md)
DEFAULT_TOP = 10
LAYER = "layer"
FUNCTION = "function"

# The metadata files read to map files to distributions; everything else is measured, never read.
_METADATA_FILES = ("RECORD", "top_level.txt")
# A real RECORD is at most a few MB; a bigger one is ignored rather than inflated (a zip bomb).
_MAX_METADATA_BYTES = 16 * 1024 * 1024
# A zip entry's fixed overhead: local header (30) and central directory header (46), each plus the name.
_ZIP_ENTRY_OVERHEAD = 30 + 46
_ZIP_END_RECORD = 22
# Python's own site directory inside a layer, as Lambda adds it to sys.path.
_LAYER_SITE = re.compile(r"^python/lib/python3\.\d+/site-packages/")
_MARKERS = (".libs", ".data")  # numpy.libs (auditwheel's vendored libraries) belongs to numpy


# --------------------------------------------------------------------------------------------------
# The report's data


@dataclass(frozen=True)
class DistributionSize:
    """The bytes of one distribution, or of one top-level name that no distribution owns."""

    name: str
    version: str | None
    owned: bool
    unzipped_bytes: int
    compressed_bytes: int
    files: int
    sources: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, bool]:
        return (self.name, self.owned)


@dataclass(frozen=True)
class FileSize:
    path: str
    source: str
    distribution: str
    unzipped_bytes: int
    compressed_bytes: int


@dataclass(frozen=True)
class Removal:
    """What slimming removed, as a build manifest accounts it."""

    bytes: int
    files: int
    by_rule: tuple[tuple[str, int], ...]
    by_package: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SourceReport:
    """One zip, folder, manifest or published layer."""

    label: str
    kind: str  # LAYER or FUNCTION
    origin: str  # zip, folder, manifest, layer_arn
    location: str
    zipped_bytes: int | None
    zipped_estimated: bool
    unzipped_bytes: int
    compressed_bytes: int
    files: int
    distributions: tuple[DistributionSize, ...]
    top_files: tuple[FileSize, ...]
    removed: Removal | None = None
    budget_bytes: int | None = None  # a manifest's own budget (the recipe's [limits])
    fetched_bytes: int | None = None  # for a published layer: what reading it cost
    fetch_requests: int | None = None


@dataclass(frozen=True)
class BudgetLine:
    """A limit check, and what it is about when there is one per zip."""

    check: LimitCheck
    subject: str | None = None

    @property
    def fatal(self) -> bool:
        return self.check.exceeded and self.check.hard


@dataclass(frozen=True)
class DistributionDelta:
    name: str
    owned: bool
    before: int
    after: int
    files_before: int
    files_after: int

    @property
    def delta(self) -> int:
        return self.after - self.before

    @property
    def status(self) -> str:
        if self.before == 0 and self.files_before == 0:
            return "added"
        if self.after == 0 and self.files_after == 0:
            return "removed"
        return "grew" if self.delta > 0 else "shrank" if self.delta < 0 else "same"


@dataclass(frozen=True)
class Comparison:
    """This build against another build of the same thing: positive deltas grew."""

    baseline: tuple[str, ...]
    before_unzipped: int
    after_unzipped: int
    before_zipped: int | None
    after_zipped: int | None
    rows: tuple[DistributionDelta, ...]


@dataclass(frozen=True)
class SizeReport:
    sources: tuple[SourceReport, ...]
    distributions: tuple[DistributionSize, ...]
    top_files: tuple[FileSize, ...]
    limits: tuple[BudgetLine, ...]
    comparison: Comparison | None = None
    duplicates: tuple[DistributionSize, ...] = ()

    @property
    def unzipped_bytes(self) -> int:
        return sum(source.unzipped_bytes for source in self.sources)

    @property
    def zipped_bytes(self) -> int | None:
        sizes = [source.zipped_bytes for source in self.sources]
        return None if any(size is None for size in sizes) else sum(size or 0 for size in sizes)

    @property
    def files(self) -> int:
        return sum(source.files for source in self.sources)

    @property
    def exceeded(self) -> tuple[BudgetLine, ...]:
        return tuple(line for line in self.limits if line.check.exceeded)

    @property
    def over_budget(self) -> bool:
        return any(line.fatal for line in self.limits)

    def share(self, size: int) -> float:
        return size / self.unzipped_bytes if self.unzipped_bytes else 0.0


# --------------------------------------------------------------------------------------------------
# Reading inputs into entries


@dataclass(frozen=True)
class _Entry:
    path: str
    size: int
    compressed: int


@dataclass(frozen=True)
class _Tree:
    """A measured tree: its files, and a way to read a few of them (the dist-info metadata)."""

    entries: tuple[_Entry, ...]
    read: Callable[[Sequence[str]], dict[str, bytes]]
    zipped_bytes: int | None
    zipped_estimated: bool = False


def _zip_tree(
    archive: zipfile.ZipFile, zipped_bytes: int, read: Callable[[Sequence[str]], dict[str, bytes]]
) -> _Tree:
    # Directory entries hold no bytes and are not files; every size comes from the central directory.
    entries = tuple(
        _Entry(info.filename, info.file_size, info.compress_size)
        for info in archive.infolist()
        if not info.is_dir()
    )
    return _Tree(entries, read, zipped_bytes)


@contextmanager
def _read_local_zip(path: Path) -> Iterator[_Tree]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(
            f"{path} is not a readable zip: {error}", hint="pass a zip, a folder or a *.manifest.json"
        ) from error

    def read(names: Sequence[str]) -> dict[str, bytes]:
        return {name: archive.read(name) for name in names}

    with archive:
        yield _zip_tree(archive, path.stat().st_size, read)


def _read_folder(path: Path) -> _Tree:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    entries = tuple(
        _Entry(p.relative_to(path).as_posix(), p.stat().st_size, _deflated_size(p)) for p in files
    )
    # A folder has no zip yet: estimate one as deflate would write it, headers and all.
    overhead = sum(_ZIP_ENTRY_OVERHEAD + 2 * len(entry.path.encode()) for entry in entries) + _ZIP_END_RECORD

    def read(names: Sequence[str]) -> dict[str, bytes]:
        return {name: (path / name).read_bytes() for name in names}

    zipped = sum(entry.compressed for entry in entries) + overhead
    return _Tree(entries, read, zipped, zipped_estimated=True)


def _deflated_size(path: Path) -> int:
    """The file's size deflated at zip's default level, streamed so that a big file costs no memory."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


# --------------------------------------------------------------------------------------------------
# Mapping files to distributions


@dataclass(frozen=True)
class _Dist:
    name: str
    version: str | None
    folder: str  # "python/numpy-2.2.6.dist-info/"
    root: str  # the site folder it sits in: "python/"


_Owner = tuple[str, str | None, bool]  # (name, version, owned by a distribution)
# Marks a folder that several distributions share (a namespace package such as google/).
_SHARED = _Dist("", None, "", "")


def _find_dists(entries: Iterable[_Entry]) -> list[_Dist]:
    folders: dict[str, _Dist] = {}
    for entry in entries:
        parts = entry.path.split("/")
        for depth, part in enumerate(parts[:-1]):
            if part.endswith(".dist-info"):
                folder = "/".join(parts[: depth + 1]) + "/"
                if folder not in folders:
                    folders[folder] = _dist_from_folder(folder, "/".join(parts[:depth]))
                break
    return sorted(folders.values(), key=lambda dist: dist.folder)


def _dist_from_folder(folder: str, parent: str) -> _Dist:
    # Wheel spec: "{name}-{version}.dist-info", the name with runs of -_. escaped to "_".
    stem = folder.rstrip("/").rsplit("/", 1)[-1][: -len(".dist-info")]
    name, _, version = stem.partition("-")
    return _Dist(str(canonicalize_name(name)), version or None, folder, parent + "/" if parent else "")


class _Attribution:
    """Which distribution each file belongs to, from RECORD first, then by its top-level name."""

    def __init__(
        self, entries: Sequence[_Entry], dists: Sequence[_Dist], metadata: Mapping[str, bytes]
    ) -> None:
        self._dists = {dist.folder: dist for dist in dists}
        self._roots = sorted({dist.root for dist in dists}, key=len, reverse=True)
        self._by_path: dict[str, _Dist] = {}
        self._by_top: dict[tuple[str, str], _Dist] = {}
        self._by_name = {(dist.root, dist.name): dist for dist in dists}
        for dist in dists:
            self._learn_record(dist, metadata.get(dist.folder + "RECORD"))
            self._learn_top_level(dist, metadata.get(dist.folder + "top_level.txt"))
        self._dir_owner = self._directory_owners(entries)

    def _learn_record(self, dist: _Dist, record: bytes | None) -> None:
        if record is None:
            return
        # RECORD is CSV (path,hash,size), paths relative to the site folder; scripts may climb out
        # of it with ../ and count only when they stay inside the tree.
        for row in csv.reader(io.StringIO(record.decode("utf-8", "replace"))):
            path = posixpath.normpath(dist.root + row[0]) if row and row[0] else ""
            if path and not path.startswith(".."):
                self._by_path.setdefault(path, dist)

    def _learn_top_level(self, dist: _Dist, top_level: bytes | None) -> None:
        for name in (top_level or b"").decode("utf-8", "replace").split():
            self._by_top.setdefault((dist.root, name.split("/")[0]), dist)

    def _directory_owners(self, entries: Sequence[_Entry]) -> dict[str, _Dist]:
        # A folder whose RECORD-listed files all belong to one distribution is that distribution's:
        # files added after install (compiled .pyc, build artefacts) follow it. A shared folder is
        # marked, so that no guess by top-level name is made under it.
        owners: dict[str, _Dist] = {}
        for entry in entries:
            dist = self._by_path.get(entry.path)
            if dist is None:
                continue
            folder = posixpath.dirname(entry.path)
            while folder and (folder + "/") != dist.root:
                owners[folder] = dist if owners.get(folder, dist) is dist else _SHARED
                folder = posixpath.dirname(folder)
        return owners

    def owner(self, path: str) -> _Owner:
        dist = self._by_path.get(path) or self._in_dist_info(path) or self._by_source_of_pyc(path)
        dist = dist or self._by_folder(path)
        if dist is None:
            dist = self._by_top_level(path)
        if dist is None or dist is _SHARED:
            return (self._top_name(path), None, False)
        return (dist.name, dist.version, True)

    def _in_dist_info(self, path: str) -> _Dist | None:
        parts = path.split("/")
        for depth, part in enumerate(parts[:-1]):
            if part.endswith(".dist-info"):
                return self._dists.get("/".join(parts[: depth + 1]) + "/")
        return None

    def _by_source_of_pyc(self, path: str) -> _Dist | None:
        # pkg/__pycache__/mod.cpython-311.pyc belongs with pkg/mod.py.
        folder, name = posixpath.split(path)
        if posixpath.basename(folder) != "__pycache__" or not name.endswith(".pyc"):
            return None
        source = posixpath.join(posixpath.dirname(folder), name.split(".", 1)[0] + ".py")
        return self._by_path.get(source)

    def _by_folder(self, path: str) -> _Dist | None:
        folder = posixpath.dirname(path)
        while folder:
            if folder in self._dir_owner:
                return self._dir_owner[folder]
            folder = posixpath.dirname(folder)
        return None

    def _by_top_level(self, path: str) -> _Dist | None:
        root = self._root(path)
        top = self._top_name(path)
        if (root, top) in self._by_top:
            return self._by_top[(root, top)]
        name = top
        for marker in _MARKERS:
            name = name.removesuffix(marker)
        return self._by_name.get((root, str(canonicalize_name(name))))

    def _root(self, path: str) -> str:
        for root in self._roots:
            if path.startswith(root):
                return root
        site = _LAYER_SITE.match(path)
        if site:
            return site.group(0)
        return "python/" if path.startswith("python/") else ""

    def _top_name(self, path: str) -> str:
        """The importable name a file stands under: six.py and six.cpython-311.pyc give 'six'."""
        parts = path[len(self._root(path)) :].split("/")
        if len(parts) == 2 and parts[0] == "__pycache__":
            return parts[1].split(".", 1)[0]
        top = parts[0]
        return top.split(".", 1)[0] if len(parts) == 1 and "." in top.lstrip(".") else top


def _attribute(tree: _Tree) -> list[tuple[_Entry, _Owner]]:
    dists = _find_dists(tree.entries)
    readable = {entry.path for entry in tree.entries if entry.size <= _MAX_METADATA_BYTES}
    wanted = [
        dist.folder + name for dist in dists for name in _METADATA_FILES if dist.folder + name in readable
    ]
    metadata = tree.read(wanted) if wanted else {}
    attribution = _Attribution(tree.entries, dists, metadata)
    return [(entry, attribution.owner(entry.path)) for entry in tree.entries]


# --------------------------------------------------------------------------------------------------
# Measuring one source


def measure_path(path: Path, *, top: int = DEFAULT_TOP) -> SourceReport:
    """A layer or function zip, a folder, or a build manifest (``*.manifest.json``)."""
    if path.is_dir():
        return _measure_tree(_read_folder(path), path.name or str(path), "folder", str(path), top=top)
    if not path.is_file():
        raise InputError(f"{path} does not exist", hint="pass a zip, a folder or a *.manifest.json")
    if path.name.endswith(".manifest.json"):
        return _measure_manifest(path, top=top)
    with _read_local_zip(path) as tree:
        return _measure_tree(tree, path.name, "zip", str(path), top=top)


def measure_layer_arn(
    arn: str, *, top: int = DEFAULT_TOP, endpoint_url: str | None = None, tail_bytes: int | None = None
) -> SourceReport:
    """A published layer version, from its zip's central directory, read by HTTP ranges."""
    layer = remote_zip.locate_layer(arn, endpoint_url=endpoint_url)
    archive, handle = remote_zip.open_remote_zip(layer.location, tail_bytes=tail_bytes or DEFAULT_TAIL_BYTES)

    def read(names: Sequence[str]) -> dict[str, bytes]:
        return read_members(archive, handle, names)

    tree = _zip_tree(archive, handle.size, read)
    label = layer.arn.split(":layer:", 1)[1]  # "name:version", as the Lambda console shows it
    report = _measure_tree(tree, label, "layer_arn", layer.arn, top=top, kind=LAYER)
    # The fetch counters are read after the metadata reads, so that they tell the whole cost.
    return replace(report, fetched_bytes=handle.bytes_fetched, fetch_requests=handle.requests)


def _measure_manifest(path: Path, *, top: int) -> SourceReport:
    manifest = _load_manifest(path)
    zip_path = path.parent / str(manifest["zip"])
    if not zip_path.is_file():
        raise InputError(
            f"{path} names the zip {zip_path}, which does not exist",
            hint="build again, or pass the zip itself",
        )
    kind = FUNCTION if manifest.get("kind") == FUNCTION else LAYER
    with _read_local_zip(zip_path) as tree:
        report = _measure_tree(tree, zip_path.name, "manifest", str(path), top=top, kind=kind)
    return replace(report, removed=_removal(manifest), budget_bytes=_manifest_budget(manifest))


def _load_manifest(path: Path) -> dict[str, object]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path} is not a readable build manifest: {error}") from error
    if not isinstance(manifest, dict) or "zip" not in manifest:
        raise InputError(f"{path} is not a build manifest: it names no zip", hint="see docs/manifest.md")
    if manifest.get("schema_version") != _MANIFEST_SCHEMA_VERSION:
        raise InputError(
            f"{path} has manifest schema_version {manifest.get('schema_version')!r}; this layerforge reads 1",
            hint="build it again with this layerforge",
        )
    return manifest


def _removal(manifest: Mapping[str, object]) -> Removal | None:
    removed = manifest.get("removed")
    if not isinstance(removed, dict):
        return None

    def pairs(key: str) -> tuple[tuple[str, int], ...]:
        table = removed.get(key) or {}
        items = ((str(name), int(size)) for name, size in table.items()) if isinstance(table, dict) else ()
        return tuple(sorted(items, key=lambda item: (-item[1], item[0])))

    by_rule = pairs("by_rule")
    total = manifest.get("removed_bytes", removed.get("bytes"))
    size = int(total) if isinstance(total, int) else sum(size for _, size in by_rule)
    return Removal(size, int(removed.get("files") or 0), by_rule, pairs("by_package"))


def _manifest_budget(manifest: Mapping[str, object]) -> int | None:
    checks = manifest.get("limits")
    for check in checks if isinstance(checks, list) else []:
        if isinstance(check, dict) and check.get("name") == "budget_unzipped":
            return int(check["value"])
    return None


def _measure_tree(
    tree: _Tree, label: str, origin: str, location: str, *, top: int, kind: str | None = None
) -> SourceReport:
    owned = _attribute(tree)
    sums: dict[_Owner, list[int]] = defaultdict(lambda: [0, 0, 0])
    for entry, owner in owned:
        row = sums[owner]
        row[0] += entry.size
        row[1] += entry.compressed
        row[2] += 1
    distributions = tuple(
        sorted(
            (
                DistributionSize(name, version, is_owned, row[0], row[1], row[2], (label,))
                for (name, version, is_owned), row in sums.items()
            ),
            key=lambda dist: (-dist.unzipped_bytes, dist.name),
        )
    )
    biggest = heapq.nlargest(top, owned, key=lambda pair: (pair[0].size, pair[0].path))
    top_files = tuple(
        FileSize(entry.path, label, owner[0], entry.size, entry.compressed) for entry, owner in biggest
    )
    return SourceReport(
        label=label,
        kind=kind or _guess_kind(tree.entries),
        origin=origin,
        location=location,
        zipped_bytes=tree.zipped_bytes,
        zipped_estimated=tree.zipped_estimated,
        unzipped_bytes=sum(entry.size for entry in tree.entries),
        compressed_bytes=sum(entry.compressed for entry in tree.entries),
        files=len(tree.entries),
        distributions=distributions,
        top_files=top_files,
    )


def _guess_kind(entries: Sequence[_Entry]) -> str:
    # Lambda puts a layer at /opt and Python looks in /opt/python: a layer's code lives under python/.
    # A function's code sits at the zip's root.
    return LAYER if any(entry.path.startswith("python/") for entry in entries) else FUNCTION


# --------------------------------------------------------------------------------------------------
# Putting sources together


def build_report(
    sources: Sequence[SourceReport],
    *,
    top: int = DEFAULT_TOP,
    max_unzipped: int | None = None,
    baseline: Sequence[SourceReport] = (),
) -> SizeReport:
    """One function (at most) and its layers, measured against Lambda's limits and the team budget."""
    if not sources:
        raise InputError("nothing to measure", hint="pass a zip, a folder, a manifest, or --layer-arn")
    functions = [source.label for source in sources if source.kind == FUNCTION]
    if len(functions) > 1:
        raise InputError(
            f"these look like {len(functions)} functions: {', '.join(functions)}; "
            "a report is of one function and its layers",
            hint="a layer zip keeps its code under python/; report each function on its own",
        )
    sources = _unique_labels(sources)
    merged = _merge(sources)
    top_files = tuple(
        heapq.nlargest(
            top, (f for s in sources for f in s.top_files), key=lambda f: (f.unzipped_bytes, f.path)
        )
    )
    return SizeReport(
        sources=tuple(sources),
        distributions=merged,
        top_files=top_files,
        limits=_limits(sources, _budget(sources, max_unzipped)),
        comparison=compare(baseline, sources) if baseline else None,
        duplicates=tuple(dist for dist in merged if dist.owned and len(dist.sources) > 1),
    )


def _unique_labels(sources: Sequence[SourceReport]) -> list[SourceReport]:
    # Two inputs named alike (dist/a.zip and old/a.zip) must stay apart in every table.
    seen: dict[str, int] = defaultdict(int)
    result = []
    for source in sources:
        seen[source.label] += 1
        count = seen[source.label]
        result.append(source if count == 1 else _relabel(source, f"{source.label} #{count}"))
    return result


def _relabel(source: SourceReport, label: str) -> SourceReport:
    dists = tuple(replace(dist, sources=(label,)) for dist in source.distributions)
    files = tuple(
        FileSize(f.path, label, f.distribution, f.unzipped_bytes, f.compressed_bytes)
        for f in source.top_files
    )
    return replace(source, label=label, distributions=dists, top_files=files)


def _merge(sources: Sequence[SourceReport]) -> tuple[DistributionSize, ...]:
    """Distributions summed across sources; one name in two layers is one row with both sources."""
    rows: dict[tuple[str, bool], DistributionSize] = {}
    for source in sources:
        for dist in source.distributions:
            known = rows.get(dist.key)
            if known is None:
                rows[dist.key] = dist
                continue
            rows[dist.key] = DistributionSize(
                dist.name,
                known.version or dist.version,
                dist.owned,
                known.unzipped_bytes + dist.unzipped_bytes,
                known.compressed_bytes + dist.compressed_bytes,
                known.files + dist.files,
                known.sources + dist.sources,
            )
    return tuple(sorted(rows.values(), key=lambda dist: (-dist.unzipped_bytes, dist.name)))


def _budget(sources: Sequence[SourceReport], max_unzipped: int | None) -> tuple[int, str] | None:
    """The team budget and where it comes from: the option, else the tightest manifest's own."""
    if max_unzipped is not None:
        return max_unzipped, "the team's unzipped budget (--max-unzipped)"
    budgets = [source.budget_bytes for source in sources if source.budget_bytes is not None]
    return (min(budgets), "the recipe's own unzipped budget ([limits] unzipped_mb)") if budgets else None


def _limits(sources: Sequence[SourceReport], budget: tuple[int, str] | None) -> tuple[BudgetLine, ...]:
    total = sum(source.unzipped_bytes for source in sources)
    lines = [BudgetLine(limits.unzipped_check(total))]
    if budget is not None:
        lines.append(BudgetLine(replace(limits.budget_check(total, budget[0]), description=budget[1])))
    lines.append(BudgetLine(limits.layer_count_check(sum(1 for s in sources if s.kind == LAYER))))
    # A published layer was uploaded already; the direct-upload limit concerns zips still to upload.
    for source in sources:
        if source.origin != "layer_arn" and source.zipped_bytes is not None:
            subject = source.label + (" (estimated)" if source.zipped_estimated else "")
            lines.append(BudgetLine(limits.direct_upload_check(source.zipped_bytes), subject))
    return tuple(lines)


def compare(baseline: Sequence[SourceReport], current: Sequence[SourceReport]) -> Comparison:
    """Per distribution, this build (current) against another (baseline); sorted by the size of the change."""
    before = {dist.key: dist for dist in _merge(baseline)}
    after = {dist.key: dist for dist in _merge(current)}
    rows = []
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        rows.append(
            DistributionDelta(
                key[0],
                key[1],
                old.unzipped_bytes if old else 0,
                new.unzipped_bytes if new else 0,
                old.files if old else 0,
                new.files if new else 0,
            )
        )
    rows.sort(key=lambda row: (-abs(row.delta), -row.after, row.name))

    def zipped(sources: Sequence[SourceReport]) -> int | None:
        sizes = [s.zipped_bytes for s in sources]
        return None if None in sizes else sum(s or 0 for s in sizes)

    return Comparison(
        baseline=tuple(source.label for source in baseline),
        before_unzipped=sum(source.unzipped_bytes for source in baseline),
        after_unzipped=sum(source.unzipped_bytes for source in current),
        before_zipped=zipped(baseline),
        after_zipped=zipped(current),
        rows=tuple(rows),
    )


# --------------------------------------------------------------------------------------------------
# Over budget


def over_budget_error(
    report: SizeReport, *, strict: bool = False, contributors: int = 3
) -> SizeLimitError | None:
    """The error to exit with (code 3) when a hard limit, or with ``strict`` any limit, is exceeded."""
    failed = [line for line in report.exceeded if line.check.hard or strict]
    if not failed:
        return None
    zips = sorted(report.sources, key=lambda s: -s.unzipped_bytes)[:contributors]
    dists = report.distributions[:contributors]
    named = ", ".join(f"{s.label} ({s.kind}, {human_bytes(s.unzipped_bytes)})" for s in zips)
    named_dists = ", ".join(
        f"{d.name} {human_bytes(d.unzipped_bytes)} (in {', '.join(d.sources)})" for d in dists
    )
    lines = [
        "over budget: " + "; ".join(_reason(line) for line in failed),
        f"  biggest zips: {named}",
        f"  biggest distributions: {named_dists}",
    ]
    return SizeLimitError("\n".join(lines), hint=_hint(failed))


def _reason(line: BudgetLine) -> str:
    check = line.check
    subject = f" [{line.subject}]" if line.subject else ""
    unit = "" if check.name == "layer_count" else " bytes"
    return (
        f"{check.description}{subject}: {check.actual:,}{unit} > {check.limit:,} ({-check.headroom:,} over)"
    )


def _hint(failed: Sequence[BudgetLine]) -> str:
    names = {line.check.name for line in failed}
    if names == {"layer_count"}:
        return "a function takes at most 5 layers: merge layers into one build"
    if names == {"direct_upload_zip"}:
        return "publish through S3 (layerforge publish --bucket) instead of a direct upload"
    return (
        "slim the biggest distributions (the recipe's strip rules), drop what the runtime already ships "
        "(boto3), move heavy dependencies to their own function, or ship a container image (10 GB)"
    )


# --------------------------------------------------------------------------------------------------
# Units


_SIZE = re.compile(r"^\s*(\d[\d_,]*(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
# KiB/MiB/GiB are powers of 1024, KB/MB/GB of 1000.
SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_byte_size(text: str) -> int:
    """'262144000', '200MB' (10^6), '190MiB' (2^20), '1.5GB'. A bare 'M' is refused as ambiguous."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in SIZE_UNITS:
        raise InputError(
            f"not a byte size: {text!r}",
            hint="write bytes (262144000), or a number with B, KB, MB, GB (powers of 1000) "
            "or KiB, MiB, GiB (powers of 1024)",
        )
    value = float(match.group(1).replace("_", "").replace(",", "")) * SIZE_UNITS[unit]
    return round(value)


def human_bytes(size: int | float) -> str:
    """Binary units, as Lambda's own '250 MB' limit is 250 MiB (262,144,000 bytes)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# The words every rendering of a report shares: terminal, Markdown and HTML say the same things.
MINUS = "\u2212"  # a true minus sign: the hyphen reads as a dash beside a number

LIMIT_LABELS = {
    "lambda_unzipped": "function + layers, unzipped",
    "budget_unzipped": "team budget, unzipped",
    "layer_count": "layers on the function",
    "direct_upload_zip": "direct upload zip",
}


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%" if fraction >= 0.001 or fraction == 0 else "<0.1%"


def signed(value: int, fmt: Callable[[int], str] = human_bytes, *, plus: str = "+") -> str:
    """A difference with its sign; with plus="" a positive one (headroom) has none, and zero no ±."""
    sign = plus if value > 0 else MINUS if value < 0 else ("±" if plus else "")
    return sign + fmt(abs(value))


def limit_state(exceeded: bool, hard: bool) -> str:
    if not exceeded:
        return "ok"
    return "over" if hard else "warn"
