"""Function packages: a function's code and requirements as one deterministic zip, checked before deploy.

``package_function`` collects the sources (leaving out version control, caches, tests and virtual
environments), checks the handler, installs the requirements with the layer pipeline (``build.build``:
the same resolution, slimming, audit, bytecode and verification) and re-roots them from ``python/`` to
the zip's root, where Lambda's ``/var/task`` has them. Then every import of the code is checked against
the function, its layers, the runtime and the standard library (``importscan``), the function and its
layers are measured against Lambda's unzipped limit, and only then is the zip written, atomically.
Nothing lands in the output folder unless every check passed.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__
from ..aws import remote_zip
from ..build import BuildOptions, BuildResult, build
from ..errors import InputError, SizeLimitError
from ..events import BuildEvents, SilentEvents
from ..fsutil import atomic_write_text
from ..limits import LimitCheck, direct_upload_check, layer_count_check, unzipped_check
from ..recipe import Recipe, load_requirements_file
from ..report import size_report
from ..resolve.lock import DEFAULT_INDEX_URL
from ..staging import make_staging_dir
from ..target import Target
from ..tree.archive import write_zip
from ..tree.globs import matches
from .handler_check import HandlerCheck, HandlerSpec, check_handler
from .importscan import (
    ModuleSource,
    ScanReport,
    function_source,
    layer_source,
    runtime_source,
    scan_imports,
    stdlib_source,
)

MANIFEST_SCHEMA_VERSION = 1
REQUIREMENTS_FILE = "requirements.txt"

# Left out of every function zip unless --no-default-excludes: none of it runs on Lambda.
DEFAULT_EXCLUDES = (
    # version control
    "**/.git",
    "**/.hg",
    "**/.svn",
    "**/.bzr",
    # caches: host bytecode is for the host's Python, and tool caches are never code
    "**/__pycache__",
    "**/*.py[co]",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/.tox",
    "**/.nox",
    "**/.ipynb_checkpoints",
    "**/.DS_Store",
    # tests
    "**/tests",
    "**/test",
    "**/conftest.py",
    "**/test_*.py",
    "**/*_test.py",
    # virtual environments (any folder holding a pyvenv.cfg is one too, whatever its name)
    "**/.venv",
    "**/venv",
)
_VENV_RULE = "virtual environment (pyvenv.cfg)"
_OUT_RULE = "the output folder"


@dataclass(frozen=True)
class FunctionOptions:
    source: Path
    handler: str
    target: Target
    out_dir: Path
    cache_dir: Path
    name: str | None = None
    recipe: Recipe | None = None  # else SRC/requirements.txt, if it lists anything
    layers: tuple[Path, ...] = ()
    layer_arns: tuple[str, ...] = ()
    endpoint_url: str | None = None  # of the Lambda API, for --layer-arn (a local emulator)
    excludes: tuple[str, ...] = ()
    default_excludes: bool = True
    ignore_imports: tuple[str, ...] = ()
    index_url: str = DEFAULT_INDEX_URL
    lock_path: Path | None = None
    verify: bool = True
    python: Path | None = None
    docker: bool | None = None  # as build's: verify in the Lambda image; True also builds sdists there
    image: str | None = None
    build_image: str | None = None
    host_builds: bool = True  # a pure-Python sdist may be built on this machine

    @property
    def function_name(self) -> str:
        return self.name or _safe_name(self.source.resolve().name)

    @property
    def stem(self) -> str:
        return f"{self.function_name}-{self.target.runtime}-{self.target.arch}"


@dataclass(frozen=True)
class SourceSet:
    """The files of SRC that go into the zip, and what was left out by which rule."""

    root: Path
    files: Mapping[str, Path]  # relative posix path -> file
    excluded: Mapping[str, str]  # top-most path left out -> the rule
    skipped_links: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerContents:
    """A layer the function will run with: its file names (for the import scan) and its size."""

    label: str
    origin: str  # "zip" or "layer_arn"
    location: str
    names: tuple[str, ...]
    unzipped_bytes: int
    zipped_bytes: int

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "origin": self.origin,
            "location": self.location,
            "files": len(self.names),
            "unzipped_bytes": self.unzipped_bytes,
            "zipped_bytes": self.zipped_bytes,
        }


@dataclass(frozen=True)
class FunctionResult:
    zip_path: Path
    manifest_path: Path
    lock_path: Path | None
    manifest: dict[str, Any]
    handler: HandlerCheck
    scan: ScanReport
    limits: tuple[LimitCheck, ...]
    requirements: BuildResult | None


def package_function(options: FunctionOptions, events: BuildEvents | None = None) -> FunctionResult:
    events = events or SilentEvents()
    source = _source_dir(options.source)
    _check_name(options.function_name)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    _refuse_to_overwrite_a_layer(options)

    events.stage("sources")
    sources = collect_sources(
        source, excludes=options.excludes, default_excludes=options.default_excludes, skip=(options.out_dir,)
    )
    for link in sources.skipped_links:
        events.warn(
            f"{link} is a symbolic link: left out (a zip stores no links, and it may lead out of SRC)"
        )
    handler = check_handler(HandlerSpec.parse(options.handler), sources.files, excluded=sources.excluded)
    for warning in handler.warnings:
        events.warn(warning)
    layers = [read_layer_zip(path) for path in options.layers]
    layers += [read_published_layer(arn, endpoint_url=options.endpoint_url) for arn in options.layer_arns]
    for layer in layers:
        if not any(name.startswith("python/") for name in layer.names):
            events.warn(f"layer {layer.label} has no python/ folder: Python on Lambda sees none of its files")
    recipe = _recipe(options, source, events)

    # Named after this process, so that a later run can sweep it away if this one is killed outright.
    staging = make_staging_dir(options.out_dir, options.stem)
    try:
        return _package_in(staging, options, sources, handler, layers, recipe, events)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _package_in(
    staging: Path,
    options: FunctionOptions,
    sources: SourceSet,
    handler: HandlerCheck,
    layers: list[LayerContents],
    recipe: Recipe | None,
    events: BuildEvents,
) -> FunctionResult:
    requirements = _install_requirements(recipe, options, staging, events) if recipe else None
    installed = _extract_reroot(requirements.zip_path, staging / "requirements") if requirements else {}
    entries = _merge(sources.files, installed, events)

    events.stage("imports")
    providers = _providers(installed, layers, options.target)
    scan = scan_imports(sources.files, providers, options.target, ignore=options.ignore_imports)
    for warning in scan.warnings():
        events.warn(warning)
    scan.raise_for_missing()

    function_bytes = sum(path.stat().st_size for path in entries.values())
    checks = _size_checks(function_bytes, layers)
    if any(check.hard and check.exceeded for check in checks):
        raise _size_error(staging, options, entries, checks)

    events.stage("zip", total=function_bytes)
    zip_path = options.out_dir / f"{options.stem}.zip"
    result = write_zip(sources.root, zip_path, entries=entries.items(), progress=events.advance)
    upload = direct_upload_check(result.zipped_bytes)
    if upload.exceeded:
        events.warn(
            f"{result.zipped_bytes:,} bytes zipped is over the {upload.limit:,}-byte direct-upload limit: "
            "deploy it through S3"
        )
    lock_path = _keep_lock(requirements, options)
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "kind": "function",
        "layerforge_version": __version__,
        "name": options.function_name,
        "runtime": options.target.runtime,
        "arch": options.target.arch,
        "compatible_runtimes": [options.target.runtime],
        "compatible_architectures": [options.target.arch],
        "handler": handler.spec.text,
        "handler_check": handler.as_dict(),
        "zip": zip_path.name,
        "sha256": result.sha256,
        "zipped_bytes": result.zipped_bytes,
        "unzipped_bytes": result.unzipped_bytes,
        "entries": result.entries,
        "source_files": len(sources.files),
        "excluded": [{"path": path, "rule": rule} for path, rule in sorted(sources.excluded.items())],
        **_requirements_manifest(requirements, lock_path),
        "layers": [layer.as_dict() for layer in layers],
        "imports": scan.as_dict(),
        "limits": [check.as_dict() for check in (*checks, upload)],
    }
    manifest_path = options.out_dir / f"{options.stem}.manifest.json"
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return FunctionResult(
        zip_path, manifest_path, lock_path, manifest, handler, scan, (*checks, upload), requirements
    )


# --------------------------------------------------------------------------------------------------
# Sources


def collect_sources(
    root: Path, *, excludes: Iterable[str] = (), default_excludes: bool = True, skip: Iterable[Path] = ()
) -> SourceSet:
    """Every regular file under `root` that no rule leaves out, sorted; links are never followed."""
    rules = [*(DEFAULT_EXCLUDES if default_excludes else ()), *_checked_globs(excludes)]
    skipped = {path.resolve() for path in skip}
    files: dict[str, Path] = {}
    excluded: dict[str, str] = {}
    links: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        kept = []
        for name in sorted(dirnames):
            path = here / name
            relative = path.relative_to(root).as_posix()
            rule = _rule_for(relative, rules, default_excludes, path, skipped)
            if path.is_symlink():
                links.append(relative)
            elif rule is not None:
                excluded[relative] = rule
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = here / name
            relative = path.relative_to(root).as_posix()
            rule = _first_match(relative, rules)
            if path.is_symlink():
                links.append(relative)
            elif rule is not None:
                excluded[relative] = rule
            elif path.is_file():
                files[relative] = path
    return SourceSet(root, dict(sorted(files.items())), excluded, tuple(sorted(links)))


def _rule_for(relative: str, rules: list[str], defaults: bool, path: Path, skipped: set[Path]) -> str | None:
    if path.resolve() in skipped:
        return _OUT_RULE
    rule = _first_match(relative, rules)
    if rule is None and defaults and (path / "pyvenv.cfg").is_file():
        return _VENV_RULE
    return rule


def _first_match(relative: str, rules: Iterable[str]) -> str | None:
    return next((rule for rule in rules if matches(rule, relative)), None)


def _checked_globs(patterns: Iterable[str]) -> list[str]:
    checked = []
    for pattern in patterns:
        if not pattern or pattern.startswith("/") or "\\" in pattern or ".." in pattern.split("/"):
            raise InputError(
                f"--exclude {pattern!r} must be a glob relative to SRC, with / separators and no `..`",
                hint="e.g. --exclude 'notebooks' --exclude '**/*.csv' (** spans folders)",
            )
        checked.append(pattern)
    return checked


def _source_dir(path: Path) -> Path:
    if not path.is_dir():
        raise InputError(
            f"{path} is not a folder",
            hint="SRC is the folder with the function's code (the handler module at its root)",
        )
    return path.resolve()


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-_")
    return cleaned or "function"


def _check_name(name: str) -> None:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise InputError(f"--name {name!r} is not a usable name", hint="use letters, digits, '-' and '_'")


def _refuse_to_overwrite_a_layer(options: FunctionOptions) -> None:
    """A function named like a layer in the same folder would replace the layer's zip and manifest."""
    manifest = options.out_dir / f"{options.stem}.manifest.json"
    try:
        kind = json.loads(manifest.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return
    if kind != "function":
        raise InputError(
            f"{manifest} belongs to a {kind or 'layer'} build: this function would overwrite it",
            hint="give the function another --name, or another --out",
        )


# --------------------------------------------------------------------------------------------------
# Requirements


def _recipe(options: FunctionOptions, source: Path, events: BuildEvents) -> Recipe | None:
    if options.recipe is not None:
        if (source / REQUIREMENTS_FILE).is_file():
            events.note(f"installing {options.recipe.source}, not {REQUIREMENTS_FILE} of SRC (--recipe)")
        return options.recipe
    recipe = requirements_recipe(source, options.function_name)
    if recipe is None and options.lock_path is not None:
        raise InputError(
            f"--lock {options.lock_path} given, but the function has no requirements to install",
            hint=f"list them in SRC/{REQUIREMENTS_FILE} or pass --recipe",
        )
    return recipe


def requirements_recipe(source: Path, name: str) -> Recipe | None:
    """SRC/requirements.txt as a recipe, or None when there is none or it lists nothing."""
    path = source / REQUIREMENTS_FILE
    if not path.is_file() or not _lists_requirements(path):
        return None
    return load_requirements_file(path, name)


def _lists_requirements(path: Path) -> bool:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return any(line.strip() and not line.strip().startswith("#") for line in lines)


def _install_requirements(
    recipe: Recipe, options: FunctionOptions, staging: Path, events: BuildEvents
) -> BuildResult:
    """The requirements built as a layer by the layer pipeline, into the staging folder."""
    events.note(
        f"installing {len(recipe.requirements)} requirement(s) from {recipe.source} into the function"
    )
    build_options = BuildOptions(
        recipe=recipe,
        target=options.target,
        out_dir=staging / "requirements-build",
        cache_dir=options.cache_dir,
        index_url=options.index_url,
        lock_path=options.lock_path,
        verify=options.verify,
        python=options.python,
        docker=options.docker,
        image=options.image,
        build_image=options.build_image,
        host_builds=options.host_builds,
    )
    return build(build_options, events)


def _extract_reroot(layer_zip: Path, destination: Path) -> dict[str, Path]:
    """The layer zip's python/ tree unpacked into `destination`, keyed by its path in a function zip.

    A layer keeps its code under python/ (/opt/python); a function keeps it at the root (/var/task).
    The zip is the one just built (no hostile names), and modes are restored so that write_zip keeps
    executables executable.
    """
    files: dict[str, Path] = {}
    with zipfile.ZipFile(layer_zip) as archive:
        for info in archive.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.parts[:1] != ("python",) or ".." in name.parts:
                continue
            relative = name.relative_to("python").as_posix()
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)
            files[relative] = target
    return files


def _merge(
    sources: Mapping[str, Path], installed: Mapping[str, Path], events: BuildEvents
) -> dict[str, Path]:
    clashes = sorted(set(sources) & set(installed))
    if clashes:
        # The function's own file is what its author wrote and tested: it wins.
        events.warn(
            f"{len(clashes)} file(s) of SRC have the same path as installed requirements and replace them: "
            + ", ".join(clashes[:5])
            + (" ..." if len(clashes) > 5 else "")
        )
    return dict(sorted({**installed, **sources}.items()))


def _keep_lock(requirements: BuildResult | None, options: FunctionOptions) -> Path | None:
    if requirements is None:
        return None
    destination = options.out_dir / f"{options.stem}.lock.json"
    os.replace(requirements.lock_path, destination)
    return destination


def _requirements_manifest(requirements: BuildResult | None, lock_path: Path | None) -> dict[str, Any]:
    if requirements is None or lock_path is None:
        return {"lock": None, "packages": [], "requirements_verified": None}
    built = requirements.manifest
    return {
        "lock": lock_path.name,
        "lock_hash": built["lock_hash"],
        "index_url": built["index_url"],
        "packages": [
            {key: package[key] for key in ("name", "version", "wheel", "sha256", "unzipped_bytes")}
            for package in built["packages"]
        ],
        "removed_bytes": built["removed_bytes"],
        "requirements_verified": built["verified"],
    }


# --------------------------------------------------------------------------------------------------
# Layers


def read_layer_zip(path: Path) -> LayerContents:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(
            f"--layer {path} is not a readable zip: {error}",
            hint="pass a layer zip (layerforge build writes one)",
        ) from error
    return LayerContents(
        label=path.name,
        origin="zip",
        location=str(path),
        names=tuple(info.filename for info in infos),
        unzipped_bytes=sum(info.file_size for info in infos),
        zipped_bytes=path.stat().st_size,
    )


def read_published_layer(arn: str, *, endpoint_url: str | None = None) -> LayerContents:
    """A published layer's file names and sizes, from its central directory (HTTP ranges, not the zip)."""
    layer = remote_zip.locate_layer(arn, endpoint_url=endpoint_url)
    archive, handle = remote_zip.open_remote_zip(layer.location)
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
    return LayerContents(
        label=layer.arn.split(":layer:", 1)[1],
        origin="layer_arn",
        location=layer.arn,
        names=tuple(info.filename for info in infos),
        unzipped_bytes=sum(info.file_size for info in infos),
        zipped_bytes=handle.size,
    )


def _providers(
    installed: Mapping[str, Path], layers: list[LayerContents], target: Target
) -> list[ModuleSource]:
    # Lambda's sys.path order: /var/task, the layers in order, the runtime's packages, the stdlib.
    providers = [function_source(installed, "the function's requirements")] if installed else []
    providers += [layer_source(layer.names, f"layer {layer.label}", target) for layer in layers]
    return [*providers, runtime_source(target), stdlib_source(target)]


# --------------------------------------------------------------------------------------------------
# Size


def _size_checks(function_bytes: int, layers: list[LayerContents]) -> list[LimitCheck]:
    total = function_bytes + sum(layer.unzipped_bytes for layer in layers)
    return [unzipped_check(total), layer_count_check(len(layers))]


def _size_error(
    staging: Path, options: FunctionOptions, entries: Mapping[str, Path], checks: list[LimitCheck]
) -> SizeLimitError:
    """The size report's own over-budget message, naming the biggest zips and distributions.

    Measuring costs a zip of the function and a second read of each published layer's central
    directory: paid only on this failure path, never on the way to a zip that fits.
    """
    staged = write_zip(options.source, staging / f"{options.stem}.zip", entries=entries.items())
    measured = [replace(size_report.measure_path(staged.path), kind=size_report.FUNCTION)]
    measured += [replace(size_report.measure_path(path), kind=size_report.LAYER) for path in options.layers]
    measured += [
        size_report.measure_layer_arn(arn, endpoint_url=options.endpoint_url) for arn in options.layer_arns
    ]
    error = size_report.over_budget_error(size_report.build_report(measured))
    if error is not None:
        return error
    check = next(c for c in checks if c.hard and c.exceeded)
    return SizeLimitError(f"{check.description}: {check.actual:,} > {check.limit:,}")
