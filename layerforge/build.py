"""The build pipeline: recipe, lock, wheels, layer tree, slim, audit, bytecode, verify, size, zip.

Each stage lives in its own module; this one only runs them in order, in a staging folder inside the
output folder, and cleans up whatever happens. Nothing lands in the output folder but the finished zip,
its lock, its SBOM and its manifest, each written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from . import __version__
from .binaries.audit import AuditReport, audit_tree
from .binaries.elfstrip import StripLevel, StripReport
from .cache import WheelCache, sha256_of
from .errors import LockError
from .events import BuildEvents, SilentEvents
from .fsutil import atomic_write_text
from .limits import (
    LimitCheck,
    budget_check,
    direct_upload_check,
    memory_advice,
    over_default_memory,
    unzipped_check,
)
from .piece_cache import PieceCache
from .recipe import Recipe, StripConfig
from .report.over_limit import size_limit_error
from .resolve.download import FetchedWheel, fetch_all, fetch_into
from .resolve.lock import DEFAULT_INDEX_URL, Lock, read_lock
from .resolve.pip_runner import let_go
from .resolve.source_build import DockerClientFactory, SourceBuilder
from .runners.docker import docker_from_env
from .runners.interpreters import Interpreter, find_interpreter
from .sbom import SBOM_SUFFIX
from .sbom.inventory import Inventory, read_inventory
from .sbom.licenses import enforce
from .staging import make_staging_dir
from .target import Target, host_machine
from .tree.archive import ZipResult
from .tree.bytecode import BytecodeReport
from .tree.head_start import HeadStart
from .tree.processed import Assembled, PieceSettings, WheelFile, assemble, finish, piece_settings
from .tree.sharing import LoadProof, load_proof
from .tree.slim import RuleMatcher, SlimReport, apply, plan
from .tree.toplevel import declare_top_level, modules_to_verify
from .tree.unpack import LayerTree, unpack_all
from .tree.zip_apart import ZipChild, ZipChildSlot, large_members, write_zip_apart
from .verify.choose import already_found, choose_verifier
from .verify.local import VerifyReport, not_run, sealed
from .verify.opens import OpenWatch
from .verify.optional import OptionalPolicy, optional_policy
from .verify.proofs import ProofStore

MANIFEST_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BuildOptions:
    recipe: Recipe
    target: Target
    out_dir: Path
    cache_dir: Path
    index_url: str = DEFAULT_INDEX_URL
    lock_path: Path | None = None
    verify: bool = True
    python: Path | None = None
    refresh: bool = False
    docker: bool | None = (
        None  # True: verify in the Lambda image; False: never; None: when nothing local fits
    )
    image: str | None = None
    build_image: str | None = None  # --build-image: sdists are built here instead of the SAM build image
    host_builds: bool = True  # a pure-Python sdist may be built on this machine (--no-host-builds: never)
    jobs: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    docker_client: DockerClientFactory | None = None  # the engine for --docker; None: docker.from_env
    strict_licenses: bool = False  # an unrecognised license fails the build instead of a warning

    @property
    def stem(self) -> str:
        return f"{self.recipe.name}-{self.target.runtime}-{self.target.arch}"


@dataclass(frozen=True)
class BuildResult:
    zip_path: Path
    lock_path: Path
    manifest_path: Path
    sbom_path: Path
    manifest: dict[str, Any]
    lock: Lock
    # The stage reports are None when an up-to-date output was reused and nothing ran.
    audit: AuditReport | None
    verify: VerifyReport | None
    slim: SlimReport | None
    bytecode: BytecodeReport | None

    @property
    def reused(self) -> bool:
        return self.audit is None


def build(options: BuildOptions, events: BuildEvents | None = None) -> BuildResult:
    events = events or SilentEvents()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    interpreters = _InterpreterSearch(options)
    # Named after this host and process, so a later build can sweep it away if this one is killed outright.
    staging = make_staging_dir(options.out_dir, options.stem)
    head_start = HeadStart(staging / "head-start", PieceCache(options.cache_dir))
    # One for the head start and the build after it: each answer is remembered, and the build asks again
    # about every file of the wheels the head start took.
    matcher = RuleMatcher(options.recipe.strip)
    zip_children = ZipChildSlot(staging)
    try:
        lock, lock_path = _lock(staging, options, events, interpreters, head_start, matcher, zip_children)
        key = build_key(options, lock)
        reused = _reuse(options, lock, lock_path, key)
        if reused is not None:
            events.note(
                f"{reused.zip_path.name} is up to date (same recipe, target, lock and layerforge): reused"
            )
            return reused
        # Started before the tree is made (at the latest), so that its interpreter's start overlaps that,
        # not the checks.
        zip_child = zip_children.get()
        run = _Run(staging, options, lock, events, interpreters, head_start, matcher, zip_child)
        return _build_in(run, lock_path, key)
    finally:
        head_start.stop()
        zip_children.close()
        shutil.rmtree(staging, ignore_errors=True)


class _InterpreterSearch:
    """Finding the target's interpreters runs a few Pythons (0.4 s of CPU): a resolution, which keeps one
    core busy with pip, starts it beside itself; a build that reuses its output never runs it."""

    def __init__(self, options: BuildOptions) -> None:
        self._options = options
        self._future: Future[tuple[Interpreter | None, Interpreter | None]] | None = None

    def start(self) -> None:
        if self._future is None:
            self._future = Future()
            threading.Thread(target=self._run, name="layerforge-interpreters", daemon=True).start()

    def _run(self) -> None:
        assert self._future is not None
        try:
            self._future.set_result(_find_interpreters(self._options))
        except BaseException as error:  # handed to whoever waits for the result
            self._future.set_exception(error)

    def result(self) -> tuple[Interpreter | None, Interpreter | None]:
        self.start()
        assert self._future is not None
        return self._future.result()


def build_key(options: BuildOptions, lock: Lock) -> str:
    """Everything that decides the zip's bytes; when it is unchanged, the output can be reused."""
    recipe = dataclasses.asdict(options.recipe)
    recipe.pop("source")
    material = {
        "layerforge": __version__,
        "recipe": recipe,
        "target": [options.target.runtime, options.target.arch],
        "lock_hash": lock.lock_hash,
        "verify": options.verify,
        "python": str(options.python) if options.python else None,
        "strict_licenses": options.strict_licenses,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _reuse(options: BuildOptions, lock: Lock, lock_path: Path, key: str) -> BuildResult | None:
    manifest_path = options.out_dir / f"{options.stem}.manifest.json"
    zip_path = options.out_dir / f"{options.stem}.zip"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("build_key") != key or not zip_path.is_file():
        return None
    sbom_path = options.out_dir / f"{options.stem}{SBOM_SUFFIX}"
    if manifest.get("sbom") != sbom_path.name or not sbom_path.is_file():
        return None
    # The zip on disk must still be the one the manifest describes, byte for byte.
    if zip_path.stat().st_size != manifest.get("zipped_bytes") or sha256_of(zip_path) != manifest.get(
        "sha256"
    ):
        return None
    return BuildResult(zip_path, lock_path, manifest_path, sbom_path, manifest, lock, None, None, None, None)


def _lock(
    staging: Path,
    options: BuildOptions,
    events: BuildEvents,
    interpreters: _InterpreterSearch,
    head_start: HeadStart,
    matcher: RuleMatcher,
    zip_children: ZipChildSlot,
) -> tuple[Lock, Path]:
    destination = options.out_dir / f"{options.stem}.lock.json"
    recipe = options.recipe
    previous = _previous_lock(destination, options) if options.lock_path is None else None
    current = (
        previous if previous is not None and not options.refresh and _answers(previous, options) else None
    )
    if current is not None:
        let_go(if_unused=True)
        lock = current
        events.note(f"{destination.name} already pins these requirements: reused (--refresh resolves again)")
    elif options.lock_path is not None:
        let_go(if_unused=True)
        lock = read_lock(options.lock_path)
        if (lock.runtime, lock.arch) != (options.target.runtime, options.target.arch):
            raise LockError(
                f"{options.lock_path} pins wheels for {lock.runtime}-{lock.arch}, not {options.target.label}",
                hint=f"build with --runtime {lock.runtime} --arch {lock.arch}, or re-lock for this target",
            )
        pinned = sorted({p.name for p in lock.packages} & set(recipe.excluded(options.target)))
        if pinned:
            raise LockError(
                f"{options.lock_path} pins {', '.join(pinned)}, which this build leaves out",
                hint="lock again with the same exclusions (`layerforge lock RECIPE`, with "
                "--exclude-runtime-provided if the build has it), or build without --lock",
            )
        events.note(f"building exactly the lock {options.lock_path} ({len(lock.packages)} packages)")
    else:
        events.stage("resolve")
        interpreters.start()
        if previous is not None:
            _begin_head_start(head_start, previous, options, interpreters, matcher, zip_children.get())
        excluded = recipe.excluded(options.target)
        lock = _sources(options, events, staging).resolve(recipe.name, recipe.requirements, exclude=excluded)
        let_go()
        for note in lock.notes:
            events.note(note.reason)
    if options.lock_path is None or options.lock_path.resolve() != destination.resolve():
        lock.write(destination)
    return lock, destination


def _sources(options: BuildOptions, events: BuildEvents, staging: Path) -> SourceBuilder:
    # Only an explicit --docker builds from source (in the image): an engine that merely answers does not.
    return SourceBuilder(
        options.target,
        options.index_url,
        WheelCache(options.cache_dir),
        options.docker is True,
        options.docker_client,
        events.note,
        image_override=options.build_image,
        host_builds=options.host_builds,
        prefetch_wheels=True,
        scratch_in=staging,
    )


def _previous_lock(path: Path, options: BuildOptions) -> Lock | None:
    """The lock a previous build of this recipe wrote for this target, if any."""
    if not path.is_file():
        return None
    try:
        lock = read_lock(path)
    except LockError:
        return None
    return lock if (lock.runtime, lock.arch) == (options.target.runtime, options.target.arch) else None


def _answers(lock: Lock, options: BuildOptions) -> bool:
    """Whether `lock` was resolved from exactly this recipe's inputs."""
    recipe = options.recipe
    excluded = recipe.excluded(options.target)
    return lock.answers(recipe.requirements, excluded, options.target, options.index_url)


def _begin_head_start(
    head_start: HeadStart,
    previous: Lock,
    options: BuildOptions,
    interpreters: _InterpreterSearch,
    matcher: RuleMatcher,
    zip_child: ZipChild,
) -> None:
    """While pip resolves, check out the pieces of the previous lock's wheels that are cached, and have the
    zip child prove the cached streams of their large files (pip leaves most of a core idle meanwhile)."""
    cache = WheelCache(options.cache_dir)

    def wheels() -> list[WheelFile]:
        found = []
        for package in previous.packages:
            path = cache.lookup(package.sha256, package.wheel)
            if path is not None:
                found.append(WheelFile(path, package.sha256))
        return found

    head_start.begin(
        wheels,
        matcher,
        lambda: _piece_settings(options, interpreters.result()[1]),
        found=lambda files: zip_child.prove(options.cache_dir, large_members(files)),
    )


def _piece_settings(options: BuildOptions, compiler: Interpreter | None) -> PieceSettings:
    config = options.recipe.strip
    return piece_settings(
        options.target.runtime,
        options.target.arch,
        config.bytecode,
        debug_ranges=_debug_ranges(config),
        strip_level=_strip_level(config) if config.binaries else None,
        compiler=compiler,
    )


@dataclass(frozen=True)
class _Slimmed:
    """A layer tree after slimming, stripping and bytecode: final, but for the audit and verification."""

    tree: LayerTree
    unpacked_bytes: dict[str, int]
    slim: SlimReport
    bytecode: BytecodeReport
    interpreter: Interpreter | None
    binaries: StripReport | None  # None when the recipe leaves shared objects as they are
    # Wheel names: those whose piece came from the processed-wheel cache, and those processed here.
    pieces: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Run:
    """A build once its lock is known: its staging folder, what it builds, and the helpers its stages
    share."""

    staging: Path
    options: BuildOptions
    lock: Lock
    events: BuildEvents
    interpreters: _InterpreterSearch
    head_start: HeadStart
    matcher: RuleMatcher  # the head start's, whose answers it remembers (it ran before, in its thread)
    zip_child: ZipChild  # started ahead, waiting for the tree


def _build_in(run: _Run, lock_path: Path, key: str) -> BuildResult:
    staging, options, lock, events = run.staging, run.options, run.lock, run.events
    prepared = _prepare_tree(run)
    tree, slim, bytecode = prepared.tree, prepared.slim, prepared.bytecode
    interpreter = prepared.interpreter
    # The tree is final: the license check, the audit, the zip and the verifier all read it at once. The zip
    # is written inside staging and moved into the output folder only once the layer passed. The audit's
    # verdict still comes first: a layer whose binaries cannot load on Lambda (opencv-python's libGL)
    # needs another package, which no slimming for size and no import error would say.
    cancelled = threading.Event()
    provided = _runtime_stand_ins(staging, options, lock)
    # Opened before the audit and the zip start reading the tree and closed after they end, so that the
    # watch can tell their opens from the checks' (verify/opens.py); passing checks are filed on close.
    # Only a local interpreter's checks are filed: a Docker verification (--docker, or no interpreter of
    # the target here) has no use for it.
    watched = [tree.root, *([provided.python_dir] if provided is not None else [])]
    load_order = _before_the_readers(options, tree, slim)
    with (
        sealed(tree.root) if options.verify else nullcontext(),
        OpenWatch(watched)
        if options.verify and interpreter is not None and not options.docker
        else nullcontext(None) as watch,
        ThreadPoolExecutor(max_workers=5) as background,
    ):
        # Beside the rest, not before it (0.3 to 0.5 s of every build); a license the recipe's policy
        # refuses still fails the build before any other finding is raised.
        licensing = background.submit(_inventory, lock, tree)
        # Wanted only once the checks have run, to tell an optional import's failure from a real one.
        checking = (
            _Checking(
                load_order,
                background.submit(
                    optional_policy,
                    tree,
                    options.target,
                    mandatory=options.recipe.verify.imports,
                    removed=slim.rule_for_path(),
                ),
                provided,
                watch,
            )
            if load_order is not None
            else None
        )
        auditing = _PendingAudit(
            background.submit(
                audit_tree,
                tree.root,
                options.target,
                tree.origins(),
                provided=options.recipe.audit.system_libraries,
                cache_dir=options.cache_dir,
            ),
            events,
        )
        try:
            checks = _limit_checks(options, tree.total_bytes(), None)
            if any(check.exceeded for check in checks):
                _check_licenses(options, licensing.result(), events)
                auditing.verdict()
            _enforce(checks, tree, options)
            # In a process of its own: in this one the zip's Python fought the audit and the checks
            # for the GIL (tree/zip_apart.py).
            zipping = background.submit(
                write_zip_apart,
                tree.root,
                staging / "layer.zip",
                jobs=options.jobs,
                progress=_unless(cancelled),
                cache_dir=options.cache_dir,
                counted=watched if watch is not None else (),
                child=run.zip_child,
            )
            # Made beside the checks once the zip's digest is known (before they end, when a requirement
            # was added), written only once the layer has passed.
            sbom = background.submit(_sbom_text, licensing, zipping, f"{options.stem}.zip")
            events.stage("verify")
            verify = (
                _verify(options, tree, slim, interpreter, events, checking)
                if checking is not None
                else not_run(options.target, "verification was turned off (--no-verify)")
            )
            _check_licenses(options, licensing.result(), events)
            audit = auditing.verdict()
            if not verify.ran:
                events.warn(verify.not_run_reason)
            verify.raise_for_failures()
        except BaseException:
            cancelled.set()
            auditing.cancel()
            raise
        events.stage("zip")
        staged, zip_opens = zipping.result()
        if watch is not None:
            watch.note_processes(zip_opens)
    events.note(f"zip: {staged.cached_members:,} of {staged.entries:,} members copied from the member cache")
    zip_path = options.out_dir / f"{options.stem}.zip"
    os.replace(staged.path, zip_path)
    result = dataclasses.replace(staged, path=zip_path)
    checks = _limit_checks(options, result.unzipped_bytes, result.zipped_bytes)
    _warn_soft_limits(checks, result, events)
    manifest = _manifest(
        options, lock, lock_path, tree, prepared.unpacked_bytes, slim, bytecode, audit, verify, result, checks
    )
    sbom_path = options.out_dir / f"{options.stem}{SBOM_SUFFIX}"
    atomic_write_text(sbom_path, sbom.result())
    manifest |= {
        "build_key": key,
        "binaries": _binaries_summary(prepared.binaries),
        "processed_wheels": prepared.pieces,
        "runtime_provided": _runtime_provided_summary(options, lock, provided, verify),
        "sbom": sbom_path.name,
    }
    manifest_path = options.out_dir / f"{options.stem}.manifest.json"
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return BuildResult(
        zip_path, lock_path, manifest_path, sbom_path, manifest, lock, audit, verify, slim, bytecode
    )


def _warn_soft_limits(checks: list[LimitCheck], result: ZipResult, events: BuildEvents) -> None:
    for check in checks:
        if check.exceeded and not check.hard:
            events.warn(
                f"{result.zipped_bytes:,} bytes zipped is over the {check.limit:,}-byte direct-upload limit: "
                "publish it through S3 (`layerforge publish` does)"
            )


def _sbom_text(
    licensing: Future[Inventory], zipping: Future[tuple[ZipResult, Counter[str]]], zip_name: str
) -> str:
    # Imported here: cyclonedx takes 55 ms to import, a seventh of a build that reuses its output.
    from .sbom.document import build_document  # noqa: PLC0415

    staged, _opens = zipping.result()
    return build_document(licensing.result(), name=zip_name, zip_sha256=staged.sha256)


def _inventory(lock: Lock, tree: LayerTree) -> Inventory:
    """What the layer ships, for its SBOM and the license policy."""
    return read_inventory(
        tree.root,
        tree.files,
        owners={path: f.distribution for path, f in tree.files.items()},
        locked=lock.packages,
    )


def _check_licenses(options: BuildOptions, inventory: Inventory, events: BuildEvents) -> None:
    """A license the recipe's policy refuses fails the build; the others may warn."""
    for warning in enforce(inventory.licenses(), options.recipe.policy, strict=options.strict_licenses):
        events.warn(warning)


def _prepare_tree(run: _Run) -> _Slimmed:
    """Download, unpack, slim, strip and compile: everything up to the audit and verification."""
    options, events = run.options, run.events
    config = options.recipe.strip
    # Without a resolution to overlap, finding the interpreters overlaps the download.
    run.interpreters.start()
    tree, unpacked_bytes, slim, assembled, interpreter, compiler = _unpack_and_slim(run)
    events.stage("bytecode")
    bytecode, stripped = finish(
        assembled,
        slim,
        config.bytecode,
        compiler,
        debug_ranges=_debug_ranges(config),
        jobs=options.jobs,
    )
    binaries = stripped if config.binaries else None
    if bytecode.skipped_reason and config.bytecode != "none":
        events.warn(
            f"bytecode not compiled ({bytecode.skipped_reason}): every cold start on Lambda's read-only "
            "/opt will compile from source"
        )

    pieces = {"from_cache": sorted(assembled.from_cache), "processed": sorted(assembled.processed)}
    return _Slimmed(tree, unpacked_bytes, slim, bytecode, interpreter, binaries, pieces)


class _PendingAudit:
    """The audit, running beside the size check and verification; its warnings are shown once, and its
    errors raised whenever its verdict is asked for."""

    def __init__(self, future: Future[AuditReport], events: BuildEvents) -> None:
        self._future = future
        self._events = events
        self._report: AuditReport | None = None

    def verdict(self) -> AuditReport:
        if self._report is None:
            self._report = self._future.result()
            for finding in self._report.warnings:
                self._events.warn(finding.message)
        self._report.raise_for_errors()
        return self._report

    def cancel(self) -> None:
        self._future.cancel()


def _binaries_summary(report: StripReport | None) -> dict[str, Any] | None:
    """What stripping saved; the per-file list stays out of the manifest, the reasons for skips do not."""
    if report is None:
        return None
    return {
        "bytes_saved": report.bytes_saved,
        "stripped": len(report.stripped),
        "skipped": dict(report.skipped),
    }


def _unpack_and_slim(
    run: _Run,
) -> tuple[LayerTree, dict[str, int], SlimReport, Assembled, Interpreter | None, Interpreter | None]:
    staging, options, lock, events = run.staging, run.options, run.lock, run.events
    # Wheels built from source are never downloaded: in the cache by their sha256, or built again here
    # (only now, so that an up-to-date zip is reused without them).
    _sources(options, events, staging).provide(lock)
    events.stage("download")
    fetched = fetch_all(
        lock.packages,
        WheelCache(options.cache_dir),
        jobs=8,
        progress=lambda _name, amount, _total: events.advance(amount),
        index_url=options.index_url,
    )
    wheels = _check_out(fetched, WheelCache(options.cache_dir), staging / "wheels", options.index_url)
    interpreter, compiler = run.interpreters.result()
    events.stage("unpack", total=len(fetched))
    config = options.recipe.strip
    matcher = run.matcher
    # Each wheel by itself (unpacked, stripped, compiled) from the processed-wheel cache, or made and
    # filed there; what a rule would remove stays out of the tree until the import guard has spoken.
    settings = _piece_settings(options, compiler)
    ready = run.head_start.stop()
    if ready:
        events.note(f"{len(ready)} pieces were checked out from the cache while pip resolved")
    assembled = assemble(
        [WheelFile(path, wheel.package.sha256) for path, wheel in zip(wheels, fetched, strict=True)],
        staging / "layer",
        staging / "pieces",
        PieceCache(options.cache_dir),
        matcher,
        settings,
        compiler,
        jobs=options.jobs,
        ready=ready,
    )
    tree = assembled.tree
    run.zip_child.prepare(options.cache_dir, tree)
    events.note(
        f"processed wheels: {len(assembled.from_cache)} of {len(wheels)} from the cache"
        + (f"; processed {', '.join(assembled.processed)}" if assembled.processed else "")
    )
    for conflict in tree.conflicts:
        events.warn(f"two wheels ship the same file: {conflict}")
    unpacked_bytes = tree.bytes_by_distribution()

    events.stage("slim")
    slim = plan(tree, config, matcher)
    apply(tree, slim)
    declare_top_level(tree)
    for spared in slim.spared:
        events.note(
            f"kept {spared.path}: `{spared.rule}` would remove it, but {spared.imported_by} imports it"
        )
    for copy in slim.shared:
        events.note(f"left out {copy.dropped}: {copy.kept} is the same library, and is loaded first")
    return tree, unpacked_bytes, slim, assembled, interpreter, compiler


def _debug_ranges(config: StripConfig) -> bool:
    # The aggressive profile leaves out the column tables: ~7% of every pyc, only ^^^ in tracebacks.
    return config.profile != "aggressive"


def _check_out(fetched: list[FetchedWheel], cache: WheelCache, folder: Path, index_url: str) -> list[Path]:
    """The build's own links to its wheels, so that `cache prune` cannot remove one mid-read; a wheel a
    prune removed between its fetch and here is fetched again, and linked under its entry's lock."""
    paths = []
    for wheel in fetched:
        path = cache.checkout(wheel.path, folder)
        if path is None:
            path = fetch_into(wheel.package, cache, folder, index_url=index_url)
        paths.append(path)
    return paths


def _strip_level(config: StripConfig) -> StripLevel:
    # Cutting out .symtab saves 13.8 MB on the sklearn stack, at the cost of nameless native frames.
    return "unneeded" if config.profile == "aggressive" else "debug"


class _Cancelled(Exception):
    """Stops a background zip whose build has already failed."""


def _unless(cancelled: threading.Event) -> Callable[[int], None]:
    def check(_amount: int) -> None:
        if cancelled.is_set():
            raise _Cancelled

    return check


def _find_interpreters(options: BuildOptions) -> tuple[Interpreter | None, Interpreter | None]:
    """The target's interpreter (it verifies and compiles), and the one that compiles bytecode."""
    interpreter = find_interpreter(options.target, explicit=options.python)
    return interpreter, interpreter or _bytecode_compiler(options.target)


def _bytecode_compiler(target: Target) -> Interpreter | None:
    """Bytecode depends on the Python version only: a host-arch interpreter compiles it for an arm64 layer."""
    host_arch = "arm64" if host_machine() == "aarch64" else "x86_64"
    if host_arch == target.arch:
        return None
    return find_interpreter(Target(target.runtime, host_arch))


def _before_the_readers(options: BuildOptions, tree: LayerTree, slim: SlimReport) -> LoadProof | None:
    """The import order the checks need before they start, made before the audit's, the license
    inventory's and the zip's threads start: it reads every shared object's headers, and waits for the
    GIL those threads hold after each read (0.1 s alone, 0.6 s beside them). None when nothing is
    verified. Making the tree read-only (`sealed`, entered next) is done then for the same reason."""
    return load_proof(tree, slim.shared) if options.verify else None


@dataclass(frozen=True)
class _Checking:
    """What verification takes from the stages around it."""

    load_order: LoadProof
    optional: Future[OptionalPolicy]
    provided: LayerTree | None  # the runtime's own packages, stood in by the lock's pins
    watch: OpenWatch | None


def _verify(
    options: BuildOptions,
    tree: LayerTree,
    slim: SlimReport,
    interpreter: Interpreter | None,
    events: BuildEvents,
    checking: _Checking,
) -> VerifyReport:
    recipe = options.recipe.verify
    provided, watch = checking.provided, checking.watch
    # Every extension module that needs a library the layer shares must load with nothing imported before
    # it: that proves the copy kept is loaded first, as the recipe declares. The first such group opens
    # the main check; any further group gets a fresh interpreter of its own.
    wanted, others = checking.load_order.order(modules_to_verify(tree, recipe))
    # A local interpreter of the target's version first, then the Lambda image in Docker, else say plainly
    # that only the static audit ran.
    verifier = choose_verifier(
        options.target,
        python=options.python,
        docker=options.docker,
        image=options.image,
        find_interpreter=already_found(interpreter),
        docker_client_factory=options.docker_client or docker_from_env,
    )
    events.note(verifier.reason)
    removed = slim.rule_for_path()
    # What the runtime provides and the layer leaves out, after the layer on sys.path as on Lambda (a
    # local interpreter only: a container has the image's own).
    runtime_paths = [provided.python_dir] if provided is not None else []
    if provided is not None and verifier.kind == "local":
        events.note(
            f"{', '.join(provided.distributions())} are left out for the {options.target.runtime} runtime to "
            "provide: the check imports the lock's pins of them after the layer, where Lambda has its own"
        )
    libraries = options.recipe.audit.system_libraries
    proofs = ProofStore(options.cache_dir)
    for group in others:
        alone = verifier.verify(
            tree.root,
            modules=group,
            distributions=(),
            smoke=None,
            removed=removed,
            in_place=True,
            sealed=True,
            runtime_paths=runtime_paths,
            system_libraries=libraries,
            proofs=proofs,
            watch=watch,
        )
        alone.skipping_optional(checking.optional.result()).raise_for_failures()
    report = verifier.verify(
        tree.root,
        modules=wanted,
        distributions=tree.distributions(),
        smoke=recipe.smoke,
        removed=removed,
        note=events.note,
        # The tree is the build's own and finished: checked in place, no copy.
        in_place=True,
        sealed=True,
        runtime_paths=runtime_paths,
        system_libraries=libraries,
        proofs=proofs,
        watch=watch,
    ).skipping_optional(checking.optional.result())
    if report.reused:
        events.note(
            f"verification: not run again, since nothing they read has changed: {'; '.join(report.reused)}"
        )
    for check in report.run_again:
        events.note(f"verification: ran again, since what an earlier run read has changed: {check}")
    for skipped in report.optional_modules:
        events.warn(skipped.message)
    _warn_memory(report, events)
    return report


def _warn_memory(report: VerifyReport, events: BuildEvents) -> None:
    peak = report.peak_rss_bytes
    if peak is None or not over_default_memory(peak):
        return
    events.warn(
        f"{memory_advice(peak)}: a function left at the default is killed during init, with a message "
        "that does not name the layer"
    )


def _limit_checks(options: BuildOptions, unzipped: int, zipped: int | None) -> list[LimitCheck]:
    checks = [unzipped_check(unzipped)]
    if options.recipe.limits.unzipped_bytes is not None:
        checks.append(budget_check(unzipped, options.recipe.limits.unzipped_bytes))
    if zipped is not None:
        checks.append(direct_upload_check(zipped))
    return checks


def _enforce(checks: list[LimitCheck], tree: LayerTree, options: BuildOptions) -> None:
    exceeded = [c for c in checks if c.hard and c.exceeded]
    if exceeded:
        raise size_limit_error(exceeded[0], tree, options.recipe, options.target)


def _runtime_stand_ins(staging: Path, options: BuildOptions, lock: Lock) -> LayerTree | None:
    """The distributions the layer leaves out because the runtime provides them, unpacked beside the
    layer for verification only: pinned by the lock, they stand in for the runtime's own copies."""
    wanted = [p for p in lock.left_out if p.name in options.target.runtime_provided]
    if not wanted or not options.verify:
        return None
    cache = WheelCache(options.cache_dir)
    fetched = fetch_all(wanted, cache, jobs=4, index_url=options.index_url)
    wheels = _check_out(fetched, cache, staging / "runtime-wheels", options.index_url)
    return unpack_all(wheels, staging / "runtime", jobs=options.jobs)


def _runtime_provided_summary(
    options: BuildOptions, lock: Lock, provided: LayerTree | None, verify: VerifyReport
) -> dict[str, Any] | None:
    """For the manifest: what was left out because the runtime provides it, and how the check saw it."""
    left_out = [p for p in lock.left_out if p.name in options.target.runtime_provided]
    if not left_out:
        return None
    stood_in = provided is not None and verify.interpreter is not None and not verify.interpreter.container
    return {
        "excluded": [{"name": p.name, "version": p.version} for p in left_out],
        "provided_by": f"the {options.target.runtime} runtime",
        "note": "left out of the layer because the runtime provides them: their versions then come from "
        "the runtime, on AWS's schedule",
        # The lock's pins, after the layer on the check's sys.path; a container check has the image's own.
        "verified_with": ([f"{p.name} {p.version}" for p in left_out] if stood_in else []),
    }


def _manifest(
    options: BuildOptions,
    lock: Lock,
    lock_path: Path,
    tree: LayerTree,
    unpacked: dict[str, int],
    slim: SlimReport,
    bytecode: BytecodeReport,
    audit: AuditReport,
    verify: VerifyReport,
    result: ZipResult,
    checks: list[LimitCheck],
) -> dict[str, Any]:
    sizes, counts = tree.bytes_by_distribution(), tree.files_by_distribution()
    removed_by_package = slim.by_package()
    licenses = _licenses(tree)
    packages = [
        {
            "name": p.name,
            "version": p.version,
            "wheel": p.wheel,
            "sha256": p.sha256,
            "unzipped_bytes": sizes.get(p.name, 0),
            "files": counts.get(p.name, 0),
            "wheel_unpacked_bytes": unpacked.get(p.name, 0),
            "removed_bytes": removed_by_package.get(p.name, 0),
            "license": licenses.get(p.name),
        }
        for p in lock.packages
    ]
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "kind": "layer",
        "layerforge_version": __version__,
        "recipe": options.recipe.name,
        "description": options.recipe.description,
        "runtime": options.target.runtime,
        "arch": options.target.arch,
        "compatible_runtimes": [options.target.runtime],
        "compatible_architectures": [options.target.arch],
        "zip": result.path.name,
        "sha256": result.sha256,
        "zipped_bytes": result.zipped_bytes,
        "unzipped_bytes": result.unzipped_bytes,
        "entries": result.entries,
        "lock": lock_path.name,
        "lock_hash": lock.lock_hash,
        "index_url": lock.index_url,
        "license": _license_summary(licenses),
        "packages": packages,
        "removed_bytes": slim.removed_bytes,
        "removed": slim.as_dict(),
        "duplicates": [list(group) for group in slim.duplicates],
        "bytecode": {
            "mode": bytecode.mode,
            "compiled": bytecode.compiled,
            "added_bytes": bytecode.added_bytes,
            "interpreter": bytecode.interpreter,
            "failed": list(bytecode.failed),
            "skipped_reason": bytecode.skipped_reason,
            "debug_ranges": bytecode.debug_ranges,
        },
        "audit": {
            "shared_objects": audit.shared_objects,
            "machines": dict(audit.machines),
            "max_glibc": ".".join(map(str, audit.max_glibc)) if audit.max_glibc else None,
            "findings": [f.as_dict() for f in audit.findings],
        },
        "verified": verify.verified,
        "verification": verify.as_dict(),
        "resolution_notes": [n.as_dict() for n in lock.notes],
        "limits": [c.as_dict() for c in checks],
    }


def _licenses(tree: LayerTree) -> dict[str, str]:
    """Each distribution's license expression (or License field) from its METADATA."""
    found: dict[str, str] = {}
    for path, layer_file in tree.files.items():
        if not path.endswith(".dist-info/METADATA"):
            continue
        headers = HeaderParser().parsestr((tree.root / path).read_text("utf-8", "replace"))
        value = headers.get("License-Expression") or headers.get("License") or ""
        value = value.strip().splitlines()[0] if value.strip() else ""
        if not value or len(value) > 60:
            classifiers = [
                c.rsplit("::", 1)[-1].strip()
                for c in headers.get_all("Classifier") or []
                if c.startswith("License ::")
            ]
            value = classifiers[0] if classifiers else (value[:60] if value else "")
        if value:
            found[layer_file.distribution] = value
    return found


def _license_summary(licenses: dict[str, str], limit: int = 512) -> str:
    text = "; ".join(f"{name}: {value}" for name, value in sorted(licenses.items()))
    return text if len(text) <= limit else text[: limit - 3] + "..."
