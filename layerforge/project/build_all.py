"""`build --project`: every cell of a project on this machine, in parallel worker processes.

Cells share one wheel cache (a wheel that two cells need is downloaded once; the cache's per-entry file
locks serialise the two), and each resolves once for its (recipe, runtime, arch). Workers are processes:
the CPU-bound stages (unpack, bytecode, deflate, verify) hold the GIL or are processes themselves, so
cells side by side fill the cores where one build leaves gaps (pip's resolution, downloads, start-ups).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..build import BuildOptions, build
from ..cache import WheelCache
from ..errors import LayerforgeError, LockError
from ..resolve.local_index import SharedListings
from ..resolve.lock import DEFAULT_INDEX_URL, read_lock
from ..resolve.source_build import SourceBuilder
from ..staging import make_staging_dir
from .config import Cell, Project

# Resolutions at once: each is one pip process that mostly waits on the index (9-11 s of wall time
# against about 2 s of CPU for a small recipe from PyPI here).
RESOLVERS = 8
# What one cell's build may hold in memory at its peak (the sklearn stack: about 200 MB in its largest
# process, its bytecode workers beside it), with room to spare.
CELL_MEMORY_BYTES = 1024**3


@dataclass(frozen=True)
class CellJob:
    """One cell's build for a worker process (picklable: no callables, no clients)."""

    cell: str
    options: BuildOptions


@dataclass(frozen=True)
class CellOutcome:
    cell: str
    exit_code: int  # 0 built or reused; otherwise the error's exit code
    seconds: float
    reused: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    stages: dict[str, float] = field(default_factory=dict)  # seconds per build stage, for profiling

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def as_dict(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "cell": self.cell,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "zip": manifest.get("zip"),
            "sha256": manifest.get("sha256"),
            "zipped_bytes": manifest.get("zipped_bytes"),
            "unzipped_bytes": manifest.get("unzipped_bytes"),
            "verified": manifest.get("verified"),
            "error": self.error,
            "warnings": list(self.warnings),
            "stages": {name: round(seconds, 3) for name, seconds in self.stages.items()},
        }


@dataclass(frozen=True)
class ProjectBuildSettings:
    out_dir: Path
    cache_dir: Path
    index_url: str = DEFAULT_INDEX_URL
    verify: bool = True
    python: Path | None = None
    docker: bool | None = None
    refresh: bool = False
    workers: int | None = None  # None: as many as cores and memory allow


class _StageClock:
    """Build events that keep the warnings and time each stage (in the worker; sent back whole)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.stages: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def stage(self, name: str, total: int | None = None) -> None:
        self.close()
        self._current = (name, time.perf_counter())

    def close(self) -> None:
        if self._current is not None:
            name, start = self._current
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - start
            self._current = None

    def advance(self, amount: int) -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def build_cell(job: CellJob) -> CellOutcome:
    """One cell's build; a failure is returned, never raised, so that the other cells go on."""
    clock = _StageClock()
    start = time.perf_counter()
    try:
        result = build(job.options, clock)
    except LayerforgeError as error:
        clock.close()
        return CellOutcome(
            job.cell,
            error.exit_code,
            time.perf_counter() - start,
            error=str(error),
            warnings=tuple(clock.warnings),
            stages=clock.stages,
        )
    except Exception as error:  # a bug in one cell must not hide the other cells' results
        return CellOutcome(
            job.cell, 1, time.perf_counter() - start, error=f"internal error: {type(error).__name__}: {error}"
        )
    clock.close()
    return CellOutcome(
        job.cell,
        0,
        time.perf_counter() - start,
        reused=result.reused,
        manifest=result.manifest,
        warnings=tuple(clock.warnings),
        stages=clock.stages,
    )


def plan_workers(cells: int, requested: int | None = None) -> int:
    """As many workers as cells, cores and available memory allow (or as asked)."""
    if requested is not None:
        return max(1, min(requested, cells))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cells, cores, _available_memory() // CELL_MEMORY_BYTES))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return CELL_MEMORY_BYTES * 64  # not Linux: cores alone decide


def jobs_for(project: Project, cells: Sequence[Cell], settings: ProjectBuildSettings) -> list[CellJob]:
    # Every build may use every core: while several run, the system shares the cores among them; the
    # last cell of a run (or a slow one) then has the machine to itself instead of leaving cores idle.
    inner = os.cpu_count() or 1
    jobs = []
    for cell in cells:
        lock = project.lock_for(cell)
        jobs.append(
            CellJob(
                cell.name,
                BuildOptions(
                    recipe=cell.layer.recipe,
                    target=cell.target,
                    out_dir=settings.out_dir,
                    cache_dir=settings.cache_dir,
                    index_url=settings.index_url,
                    lock_path=lock if lock is not None and lock.is_file() else None,
                    verify=settings.verify,
                    python=settings.python,
                    docker=settings.docker,
                    refresh=settings.refresh,
                    jobs=inner,
                ),
            )
        )
    return jobs


def resolve_cell(job: CellJob, shared: SharedListings | None = None) -> CellOutcome | None:
    """Write the cell's lock where its build looks for it, unless a lock that answers is there already or
    a committed one is to be built; a failure to resolve is the cell's outcome (its build is not tried)."""
    options = job.options
    if options.lock_path is not None:
        return None
    destination = options.out_dir / f"{options.stem}.lock.json"
    recipe, start = options.recipe, time.perf_counter()
    if not options.refresh and destination.is_file():
        try:
            current = read_lock(destination)
        except LockError:
            current = None
        if current is not None and current.answers(
            recipe.requirements, recipe.exclude, options.target, options.index_url
        ):
            return None
    # pip's scratch goes where the cell's build keeps its own: in the output folder, swept if killed.
    staging = make_staging_dir(options.out_dir, options.stem)
    sources = SourceBuilder(
        options.target,
        options.index_url,
        WheelCache(options.cache_dir),
        options.docker is True,
        shared_listings=shared,
        prefetch_wheels=True,
        scratch_in=staging,
    )
    try:
        lock = sources.resolve(recipe.name, recipe.requirements, exclude=recipe.exclude)
        lock.write(destination)
    except LayerforgeError as error:
        return CellOutcome(job.cell, error.exit_code, time.perf_counter() - start, error=str(error))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None


def build_cells(
    project: Project,
    cells: Sequence[Cell],
    settings: ProjectBuildSettings,
    on_done: Callable[[CellOutcome], None] | None = None,
) -> list[CellOutcome]:
    """Every cell, in project order in the result; `on_done` hears of each as it finishes."""
    workers = plan_workers(len(cells), settings.workers)
    jobs = jobs_for(project, cells, settings)
    done: dict[str, CellOutcome] = {}

    def finish(outcome: CellOutcome) -> None:
        done[outcome.cell] = outcome
        if on_done:
            on_done(outcome)

    # Every resolution starts at once (they wait on the index more than they use a core); each cell's
    # build starts as soon as its lock is written, so builds fill the cores while other cells resolve.
    # spawn, not fork: the parent holds threads (the resolutions, their index readers).
    builders: Executor = (
        ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        if workers > 1
        else ThreadPoolExecutor(max_workers=1, thread_name_prefix="cell")
    )
    resolvers = ThreadPoolExecutor(
        max_workers=max(1, min(RESOLVERS, len(jobs))), thread_name_prefix="resolve"
    )
    # The runtimes of one recipe read the same project pages: each is read once for the whole run.
    shared = SharedListings()
    with builders, resolvers, closing(shared):
        if workers > 1:
            # Each worker starts (a fresh interpreter importing the build: about a second) while the cells
            # resolve, not once the first lock is written.
            for _ in range(workers):
                builders.submit(worker_ready)
        pending: dict[Future[CellOutcome | None], tuple[str, CellJob]] = {
            resolvers.submit(resolve_cell, job, shared): ("resolve", job) for job in jobs
        }
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                step, job = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as error:  # a bug, or the worker process itself died (killed, out of memory)
                    outcome = CellOutcome(
                        job.cell, 1, 0.0, error=f"{step} failed: {type(error).__name__}: {error}"
                    )
                if outcome is not None:
                    finish(outcome)
                    continue
                # Resolved: the build finds the lock written and goes straight to the wheels.
                built = CellJob(job.cell, dataclasses.replace(job.options, refresh=False))
                pending[builders.submit(build_cell, built)] = ("build", built)
    return [done[cell.name] for cell in cells]


def worker_ready() -> None:
    """Nothing: a build worker that runs it has imported this module, and with it the whole build."""


def worst_exit_code(outcomes: Sequence[CellOutcome]) -> int:
    """One exit code for the whole run: the highest of the cells' (1 failure, 2 bad input, 3 over a limit)."""
    return max((outcome.exit_code for outcome in outcomes), default=0)
