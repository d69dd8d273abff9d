"""Import-check a built layer in a clean interpreter that sees only the layer, as Lambda would load it.

The check runs `python -I -S -B` (no user site, no PYTHONPATH, no site-packages, no bytecode writes) on a
read-only copy of the layer, with `python/` on sys.path as /opt/python is on Lambda. Read-only matters
twice: Lambda's /opt is read-only, so a package that writes beside itself at import works here only if
it works there, and no .pyc written during the check can make a layer that ships without bytecode look
fast. The program that runs inside is `_bootstrap.py`; this module prepares its world and turns
its answers into a report whose every failure names the module, the error and, when a strip rule
removed the missing file, the rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import InputError, VerificationError
from ..limits import recommended_memory_mb
from ..runners.interpreters import Interpreter, install_hint, packaged_script, search_summary
from ..target import RUNTIME_PROVIDED, Target
from . import opens as opens_module
from . import proofs as proofs_module
from ._bootstrap import MARKER
from .loaded import HostLibrary, host_libraries
from .opens import OpenWatch
from .optional import OptionalModule, OptionalPolicy
from .proofs import ProofSession, ProofStore, Ran, Roots

# What the smoke output keeps: enough for a traceback and the lines before it.
_OUTPUT_LIMIT = 8000
# A RAM-backed folder for the read-only copy, and what must stay free there for everyone else.
_MEMORY_SCRATCH = Path("/dev/shm")  # noqa: S108 - only ever used through mkdtemp: a fresh 0700 folder
_MEMORY_HEADROOM = 256 * 1024 * 1024
# A killed process whose grandchildren still hold its pipes must not hang the build.
_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class ModuleFailure:
    """One thing that did not work: an import, a metadata lookup or the smoke code."""

    module: str  # the module imported, the distribution looked up, or "<smoke>"
    error: str  # "ModuleNotFoundError: No module named 'pandas._testing'"
    missing_path: str | None  # layer-relative posix path of what was missing, when known ("python/x/")
    removed_by: str | None  # the strip rule that removed it, when known
    stage: str = "import"  # import | metadata | smoke | setup | library
    detail: str = ""  # the end of the traceback
    hint: str = ""  # what else is known, when no strip rule explains it
    not_found: str | None = None  # the module whose absence made the import fail, when one did

    @property
    def message(self) -> str:
        what = {
            "import": f"import {self.module} failed",
            "metadata": f"importlib.metadata.version({self.module!r}) failed",
            "smoke": "the smoke code failed",
            "setup": "the check could not start",
            "library": f"{self.module} was loaded from this machine ({self.detail})",
        }[self.stage]
        return f"{what}: {self.error}{self._because()}"

    def _because(self) -> str:
        if self.removed_by and self.missing_path:
            keep = _keep_pattern(self.missing_path)
            return (
                f" — {self.missing_path} was removed by strip rule `{self.removed_by}`; "
                f'add it to keep (e.g. "{keep}") or drop the rule'
            )
        if self.missing_path:
            return f" — {self.missing_path} is not in the layer"
        if self.hint:
            return f" — {self.hint}"
        if "No module named '" not in self.error:
            return ""
        top = self.error.split("'")[1].split(".")[0]
        if top in RUNTIME_PROVIDED:
            return (
                f" — {top} is not in the layer; the Lambda runtime has one (its version varies by region) "
                f"that this check cannot see: add {top} to the requirements to pin it"
            )
        return " — nothing in the layer provides it; add the distribution that does to the requirements"

    def as_dict(self) -> dict[str, object]:
        return {
            "module": self.module,
            "stage": self.stage,
            "error": self.error,
            "missing_path": self.missing_path,
            "removed_by": self.removed_by,
            "message": self.message,
        }


@dataclass(frozen=True)
class MemoryUse:
    """Peak resident memory of the two checking processes, each measured from inside (VmHWM).

    Each figure counts the interpreter itself (`baseline_rss_bytes` is that alone, before the layer is
    touched), every module imported and the resident pages of its shared libraries, and what the smoke
    code allocated; not Lambda's runtime client, nor any process the smoke code started. Under QEMU
    emulation they count the emulator too (a bare interpreter: about 40 MB against 11 MB here), so
    they are kept but give no advice.
    """

    baseline_rss_bytes: int | None
    imports_peak_rss_bytes: int | None
    smoke_peak_rss_bytes: int | None
    emulated: bool = False

    @property
    def measured_peak_rss_bytes(self) -> int | None:
        figures = [f for f in (self.imports_peak_rss_bytes, self.smoke_peak_rss_bytes) if f is not None]
        return max(figures) if figures else None

    @property
    def peak_rss_bytes(self) -> int | None:
        """The peak as Lambda would see it from the layer; None when only an emulator's figure exists."""
        return None if self.emulated else self.measured_peak_rss_bytes

    @property
    def recommended_memory_mb(self) -> int | None:
        peak = self.peak_rss_bytes
        return recommended_memory_mb(peak) if peak is not None else None

    def as_dict(self) -> dict[str, object]:
        return {
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "imports_peak_rss_bytes": self.imports_peak_rss_bytes,
            "smoke_peak_rss_bytes": self.smoke_peak_rss_bytes,
            "emulated": self.emulated,
            "recommended_memory_mb": self.recommended_memory_mb,
        }


def _memory(imports: dict[str, Any], smoke: BootstrapRun | None, *, emulated: bool) -> MemoryUse | None:
    """What the bootstrap processes said of their memory; None when neither could say."""

    def figure(result: dict[str, Any] | None, key: str) -> int | None:
        value = ((result or {}).get("memory") or {}).get(key)
        # Parsed from a process that ran the layer's code: a number or nothing.
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    smoke_result = smoke.result if smoke is not None else None
    use = MemoryUse(
        baseline_rss_bytes=figure(imports, "baseline_rss_bytes"),
        imports_peak_rss_bytes=figure(imports, "peak_rss_bytes"),
        smoke_peak_rss_bytes=figure(smoke_result, "peak_rss_bytes"),
        emulated=emulated,
    )
    return use if use.measured_peak_rss_bytes is not None else None


@dataclass(frozen=True)
class VerifyReport:
    """What the clean interpreter saw. `interpreter` None: nothing ran, only the static audit did."""

    interpreter: Interpreter | None
    imported: tuple[str, ...]
    failures: tuple[ModuleFailure, ...]
    metadata_versions: Mapping[str, str]
    metadata_failures: tuple[str, ...]  # distribution names; the why is in metadata_problems
    smoke_ok: bool | None  # None: no smoke code, or nothing ran
    smoke_output: str
    compiled_from_source: tuple[str, ...]
    cold_import_seconds: float | None
    metadata_problems: tuple[ModuleFailure, ...] = ()
    smoke_failure: ModuleFailure | None = None
    layer_read_only: bool | None = None  # was the copy really read-only to the check (root included)?
    copy_seconds: float | None = None  # the cost of the read-only copy
    not_run_reason: str = ""
    optional_modules: tuple[OptionalModule, ...] = ()  # failed, but only for want of an optional dependency
    memory: MemoryUse | None = None
    # Checks not run again because an earlier build's passing run read exactly these files (proofs.py).
    reused: tuple[str, ...] = ()
    # Checks that ran although an earlier build filed a proof for them: the first thing that changed.
    run_again: tuple[str, ...] = ()

    @property
    def ran(self) -> bool:
        return self.interpreter is not None

    @property
    def ok(self) -> bool:
        """Nothing failed. True when nothing ran either: use `verified` to tell the two apart."""
        return not self.failures and not self.metadata_failures and self.smoke_ok is not False

    @property
    def verified(self) -> bool | None:
        """The manifest's `verified`: true, false, or null when no interpreter ran the check."""
        return self.ok if self.ran else None

    @property
    def problems(self) -> tuple[ModuleFailure, ...]:
        smoke = (self.smoke_failure,) if self.smoke_failure else ()
        return self.failures + self.metadata_problems + smoke

    @property
    def peak_rss_bytes(self) -> int | None:
        return self.memory.peak_rss_bytes if self.memory else None

    def skipping_optional(self, policy: OptionalPolicy) -> VerifyReport:
        """This report with the failures that `policy` finds optional moved to `optional_modules`."""
        kept: list[ModuleFailure] = []
        skipped: list[OptionalModule] = []
        for failure in self.failures:
            found = (
                policy.classify(failure.module, failure.not_found, failure.removed_by, failure.error)
                if failure.stage == "import"
                else None
            )
            if found is None:
                kept.append(failure)
            else:
                skipped.append(found)
        return dataclasses.replace(
            self, failures=tuple(kept), optional_modules=self.optional_modules + tuple(skipped)
        )

    def raise_for_failures(self) -> None:
        if self.ok:
            return
        assert self.interpreter is not None  # a report that did not run has no failures
        lines = "\n".join(f"  {problem.message}" for problem in self.problems)
        raise VerificationError(
            f"the layer failed verification in {self.interpreter.describe()}:\n{lines}",
            hint="fix the first failure first: later ones often follow from it",
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "verified": self.verified,
            "interpreter": self.interpreter.as_dict() if self.interpreter else None,
            "not_run_reason": self.not_run_reason or None,
            "imported": list(self.imported),
            "failures": [failure.as_dict() for failure in self.problems],
            "metadata_versions": dict(self.metadata_versions),
            "smoke_ok": self.smoke_ok,
            "compiled_from_source": list(self.compiled_from_source),
            "cold_import_seconds": self.cold_import_seconds,
            "layer_read_only": self.layer_read_only,
            "copy_seconds": self.copy_seconds,
            "optional_modules": [module.as_dict() for module in self.optional_modules],
            "peak_rss_bytes": self.peak_rss_bytes,
            "memory": self.memory.as_dict() if self.memory else None,
            "reused": list(self.reused),
            "run_again": list(self.run_again),
        }


def not_run(target: Target, reason: str | None = None) -> VerifyReport:
    """The report for a machine with no fitting interpreter: said plainly, never passed off as a pass."""
    reason = reason or (
        f"only the static audit ran: {search_summary(target)} and found none. To verify, "
        f"{install_hint(target)}"
    )
    return VerifyReport(
        interpreter=None,
        imported=(),
        failures=(),
        metadata_versions={},
        metadata_failures=(),
        smoke_ok=None,
        smoke_output="",
        compiled_from_source=(),
        cold_import_seconds=None,
        not_run_reason=reason,
    )


def verify_layer(
    layer_root: Path,
    target: Target,
    *,
    modules: Sequence[str],
    distributions: Sequence[str],
    smoke: str | None = None,
    interpreter: Interpreter | None,
    removed: Mapping[str, str] | None = None,
    timeout: float = 300,
    in_place: bool = False,
    sealed: bool = False,
    runtime_paths: Sequence[Path] = (),
    system_libraries: Iterable[str] = (),
    proofs: ProofStore | None = None,
    watch: OpenWatch | None = None,
) -> VerifyReport:
    """Import `modules`, read the version of each of `distributions` and run `smoke` against the layer.

    `layer_root` holds `python/` (the layer as unpacked at /opt). `removed` maps layer-relative posix
    paths to the strip rule that removed them, so a failure can name the rule. `timeout` bounds the
    whole check, both processes together. `in_place` checks `layer_root` itself, made read-only in place,
    instead of a copy: its files stay read-only afterwards (see read_only_in_place), so it is for a
    build's own finished tree only. `sealed`: the caller holds the tree read-only already (`sealed`), and
    no mode is changed here.
    `runtime_paths` stand in for the runtime's own site folders (boto3 and its kin): they come after the
    layer on sys.path, as on Lambda, so a layer's own copy still wins.
    A library the check loads from this machine that the target's runtime lacks is a failure
    (`loaded.py`), unless `system_libraries` names it (another layer's lib/, `[audit] system_libraries`).
    With `proofs`, a run that passed before is not run again while nothing it read changed (proofs.py);
    `watch`, when the caller reads the tree meanwhile, is one it opened before it started reading and
    closes after (opens.py), and the runs that pass are filed when it closes.
    """
    if interpreter is None:
        return not_run(target)
    reason = interpreter.mismatch(target)
    if reason:
        raise InputError(reason, hint=install_hint(target))
    check_inputs(layer_root, modules)
    deadline = time.monotonic() + timeout
    removed = removed or {}
    started = time.perf_counter()
    with read_only_in_place(layer_root, sealed=sealed) if in_place else read_only_copy(layer_root) as sandbox:
        copy_seconds = time.perf_counter() - started
        roots = layer_roots(sandbox.layer, target)
        config = {
            "layer_paths": [str(sandbox.layer / root) for root in roots],
            # Absolute: the check runs in a folder of its own.
            "runtime_paths": [str(path.resolve()) for path in runtime_paths],
            "modules": list(modules),
            "distributions": list(distributions),
        }
        session = (
            ProofSession(
                proofs,
                _proof_context(interpreter, target, roots, runtime_paths, smoke),
                Roots.of(sandbox.layer, runtime_paths),
                modules,
                smoke is not None,
            )
            if proofs is not None
            else None
        )
        imports, smoke_run = _run_checks(interpreter, sandbox, config, smoke, deadline, session, watch)
        context = FailureContext(sandbox.layer, roots, removed)
        report = build_report(
            interpreter,
            imports=imports,
            smoke=smoke_run,
            context=context,
            modules=list(modules),
            copy_seconds=copy_seconds,
        )
        if session is not None:
            report = dataclasses.replace(report, reused=session.reused(), run_again=session.run_again())
        runs = [run.result.get("loaded_objects") for run in (imports, smoke_run) if run and run.result]
        host = host_libraries(
            runs,
            layer=sandbox.layer,
            target=target,
            provided=system_libraries,
            runtime_paths=[str(path.resolve()) for path in runtime_paths],
        )
    return dataclasses.replace(report, failures=report.failures + tuple(map(_from_host, host)))


def _run_checks(
    interpreter: Interpreter,
    sandbox: Sandbox,
    config: dict[str, Any],
    smoke: str | None,
    deadline: float,
    session: ProofSession | None,
    watch: OpenWatch | None,
) -> tuple[BootstrapRun, BootstrapRun | None]:
    """The imports run and the smoke run, less what proofs cover; the runs that pass are filed when the
    watch closes (the caller's, which spans the build's own reads of the tree, or one of its own)."""
    if session is None:
        return _side_by_side(interpreter, sandbox, config, smoke, deadline)
    roots = session.roots.paths()
    wanted = list(config["modules"])
    config = dict(config, modules=session.modules_to_run, watch_roots=[str(p) for p in roots])
    with nullcontext(watch) if watch is not None else OpenWatch(roots) as active:
        imports, smoke_run = _side_by_side(
            interpreter, sandbox, config, smoke if session.smoke_proof is None else None, deadline
        )
        session.file(
            active,
            Ran(imports.result, not imports.failed and imports.result is not None),
            Ran(smoke_run.result, _smoke_passed(smoke_run), smoke_run.output)
            if smoke_run is not None
            else None,
        )
    if imports.result is not None:
        imports.imported = session.merge_imports(imports.result, imports.imported, wanted)
    if session.smoke_proof is not None:
        smoke_run = BootstrapRun(
            result=session.smoke_result(imports.result or {}),
            output=session.smoke_proof.outcome.get("output", ""),
        )
    return imports, smoke_run


def _smoke_passed(run: BootstrapRun) -> bool:
    return run.result is not None and not run.result.get("smoke_error") and bool(run.result.get("smoke_ok"))


def _side_by_side(
    interpreter: Interpreter, sandbox: Sandbox, config: dict[str, Any], smoke: str | None, deadline: float
) -> tuple[BootstrapRun, BootstrapRun | None]:
    # Two fresh interpreters, side by side: neither sees what the other imported, and the second
    # core is not left idle while the zip (written meanwhile) finishes before the first.
    with ThreadPoolExecutor(max_workers=1) as beside:
        smoking = (
            beside.submit(_run, interpreter, sandbox, dict(config, mode="smoke", smoke=smoke), deadline)
            if smoke
            else None
        )
        imports = _run(interpreter, sandbox, dict(config, mode="imports"), deadline)
        return imports, smoking.result() if smoking is not None else None


def _proof_context(
    interpreter: Interpreter,
    target: Target,
    roots: list[str],
    runtime_paths: Sequence[Path],
    smoke: str | None,
) -> dict[str, Any]:
    """What decides a run's outcome besides the files it reads and the modules it imports."""
    executable = Path(interpreter.path).resolve()
    status = executable.stat()
    return {
        "interpreter": [str(executable), status.st_size, status.st_mtime_ns, interpreter.as_dict()],
        "target": target.label,
        "layer_paths": roots,
        "runtime_paths": len(runtime_paths),
        "smoke": smoke,
        "code": _proof_code(),
    }


@cache
def _proof_code() -> str:
    """The programs that decide what a run checks and what its record holds."""
    digest = hashlib.sha256(bootstrap_source().encode())
    for module in (proofs_module.__file__, opens_module.__file__, __file__):
        digest.update(Path(str(module)).read_bytes())
    return digest.hexdigest()


def _from_host(library: HostLibrary) -> ModuleFailure:
    return ModuleFailure(
        library.name, library.message, None, None, stage="library", detail=library.path, hint=library.fix
    )


def check_inputs(layer_root: Path, modules: Sequence[str]) -> None:
    """What every verifier refuses before it starts: a name that is not a module, a layer without python/."""
    check_module_names(modules)
    if not (layer_root / "python").is_dir():
        raise VerificationError(
            f"{layer_root} has no python/ folder, so Lambda would put nothing of it on sys.path",
            hint="a Python layer keeps its packages under python/ (or python/lib/pythonX.Y/site-packages/)",
        )


def check_module_names(modules: Sequence[str]) -> None:
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise InputError(
                f"cannot import {module!r}: not a dotted module name",
                hint="list importable names under [verify] imports, e.g. sklearn or pandas.io",
            )


def layer_roots(layer: Path, target: Target) -> list[str]:
    """Layer-relative sys.path entries, in Lambda's order: site-packages under python/ first, then python/."""
    site = target.site_packages
    return [site, "python"] if (layer / site).is_dir() else ["python"]


# ---------------------------------------------------------------------------------------------------
# The read-only copy


@dataclass(frozen=True)
class Sandbox:
    """The folders one check runs in: the layer (read-only), a task folder (cwd), and a writable tmp."""

    layer: Path
    task: Path
    tmp: Path


@contextmanager
def read_only_copy(layer_root: Path, *, scratch: Path | None = None) -> Iterator[Sandbox]:
    """A copy of the layer with files 0444 (0555 if executable) and folders 0555, removed afterwards.

    The copy goes to `scratch` when given, else to /dev/shm when that is a tmpfs with room to spare
    (copying there costs a tenth of copying to disk: 0.7 s against 2 to 10 s for 250 MB here), else to
    the temp folder. The folders' write bits come back before removal, because deleting an entry needs
    write access to its folder.
    """
    top = _scratch(layer_root, scratch=scratch)
    sandbox = Sandbox(layer=top / "opt", task=top / "task", tmp=top / "tmp")
    try:
        # copy2 keeps mtimes: timestamp .pyc stay valid
        shutil.copytree(layer_root, sandbox.layer, symlinks=True, copy_function=shutil.copy2)
        sandbox.task.mkdir()
        sandbox.tmp.mkdir()
        _set_modes(sandbox.layer, read_only=True)
        sandbox.task.chmod(0o555)  # /var/task is read-only on Lambda too; only /tmp is writable
        yield sandbox
    finally:
        _set_modes(top, read_only=False)
        shutil.rmtree(top, ignore_errors=True)


@contextmanager
def sealed(layer_root: Path) -> Iterator[None]:
    """A finished tree made read-only, files and folders, for the length of the block, for checks in place
    (`verify_layer(in_place=True, sealed=True)`) that then change no mode. For a caller whose own threads
    read the tree meanwhile: the walk stats every file, and each stat waits for the GIL those threads hold
    (0.3 s of the sklearn build's critical path beside them, some 0.03 s before they start). The folders
    get their write bits back however the block ends; the files stay read-only, as after
    read_only_in_place."""
    try:
        _set_modes(layer_root, read_only=True)
        yield
    finally:
        _set_modes(layer_root, read_only=False)


@contextmanager
def read_only_in_place(layer_root: Path, *, sealed: bool = False) -> Iterator[Sandbox]:
    """The layer itself made read-only, as read_only_copy makes its copy; its folders get their write bits
    back afterwards, its files stay read-only.

    For a tree the caller owns and has finished writing (a build's, which is then only read: the zip and
    the audit read it meanwhile, and the zip takes no mode from disk but the executable bit, which stays).
    Hard-linking the sklearn stack's 2,400 files into fresh folders and removing them afterwards cost
    every build that much work for no difference in what the check proves. The task and tmp folders go
    beside the layer and are removed afterwards.
    """
    layer = layer_root.resolve()  # absolute: the check runs in a folder of its own
    top = Path(tempfile.mkdtemp(prefix=".layerforge-verify-", dir=layer.parent))
    sandbox = Sandbox(layer=layer, task=top / "task", tmp=top / "tmp")
    try:
        sandbox.task.mkdir()
        sandbox.tmp.mkdir()
        if not sealed:
            _set_modes(layer, read_only=True)
        sandbox.task.chmod(0o555)
        yield sandbox
    finally:
        if not sealed:
            _set_modes(layer, read_only=False)  # the folders only: the files stay read-only
        _set_modes(top, read_only=False)
        shutil.rmtree(top, ignore_errors=True)


def _scratch(layer_root: Path, *, scratch: Path | None) -> Path:
    if scratch is None:
        scratch = _memory_scratch(_tree_bytes(layer_root))
    return Path(tempfile.mkdtemp(prefix="layerforge-verify-", dir=scratch))


def _memory_scratch(size: int) -> Path | None:
    """The RAM-backed folder, when the copy fits with room to spare and shared objects may load from it.

    Docker gives containers a 64 MB /dev/shm, and some systems mount it noexec, where dlopen fails and
    every C extension would look broken: both fall back to the temp folder on disk.
    """
    try:
        stats = os.statvfs(_MEMORY_SCRATCH)
    except OSError:
        return None
    if stats.f_flag & (os.ST_NOEXEC | os.ST_RDONLY) or not os.access(_MEMORY_SCRATCH, os.W_OK | os.X_OK):
        return None
    free = stats.f_bavail * stats.f_frsize
    return _MEMORY_SCRATCH if free >= 2 * size + _MEMORY_HEADROOM else None


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _set_modes(top: Path, *, read_only: bool) -> None:
    if not top.exists():
        return
    # Bottom-up, in one walk: a folder changes after what is inside it, and 0555 keeps folders
    # traversable, so their files stay reachable by path. Unlocking needs only the folders writable
    # again: rmtree unlinks read-only files fine.
    # A file already without write bits is left alone: a build's tree is mostly hard links to read-only
    # cache entries, and one lstat costs a third of lstat, stat and chmod (0.4 s of a warm build).
    for folder, _, names in os.walk(top, topdown=False):
        if read_only:
            for name in names:
                path = os.path.join(folder, name)
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):  # chmod follows links; the target gets its own turn
                    continue
                wanted = (mode & 0o555) | 0o444
                if stat.S_IMODE(mode) != wanted:
                    os.chmod(path, wanted)
        os.chmod(folder, 0o555 if read_only else 0o755)


# ---------------------------------------------------------------------------------------------------
# Running the bootstrap


@dataclass
class BootstrapRun:
    """One bootstrap process: its markers, its result (None when it died first) and its other output."""

    result: dict[str, Any] | None
    imported: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    importing: str | None = None
    output: str = ""
    returncode: int | None = None
    timed_out: bool = False


def bootstrap_source() -> str:
    return packaged_script("verify/_bootstrap.py")


def _environment(sandbox: Sandbox) -> dict[str, str]:
    """The child's whole environment: nothing of the host's (credentials, LD_PRELOAD, PYTHON*) leaks in.

    Lambda puts /opt/bin on PATH and /opt/lib on LD_LIBRARY_PATH; HOME and TMPDIR point at the one
    writable folder, as /tmp is the only writable place on Lambda.
    """
    env = {
        "PATH": os.pathsep.join([str(sandbox.layer / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "HOME": str(sandbox.tmp),
        "TMPDIR": str(sandbox.tmp),
        # -B already stops bytecode writes here; the variable reaches subprocesses the smoke code starts.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if (sandbox.layer / "lib").is_dir():
        env["LD_LIBRARY_PATH"] = str(sandbox.layer / "lib")
    return env


def _run(interpreter: Interpreter, sandbox: Sandbox, config: dict[str, Any], deadline: float) -> BootstrapRun:
    command = [str(interpreter.path), "-I", "-S", "-B", "-c", bootstrap_source()]
    # A session of its own, so a timeout kills the whole group, including anything the smoke code started.
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=sandbox.task,
        env=_environment(sandbox),
        start_new_session=True,
    )
    timed_out = False
    payload = json.dumps(config).encode()
    try:
        out, err = process.communicate(payload, timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        timed_out = True
        out, err = _kill(process)
    run = parse_bootstrap_output(out.decode(errors="replace"))
    run.output = join_output(run.output, err.decode(errors="replace"))
    run.returncode = process.returncode
    run.timed_out = timed_out
    return run


def _kill(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        return process.communicate(timeout=_DRAIN_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return b"", b""


def parse_bootstrap_output(stdout: str) -> BootstrapRun:
    run = BootstrapRun(result=None)
    noise = []
    for line in stdout.splitlines():
        # The marker can follow partial output a package printed without a newline.
        head, marker, body = line.partition(MARKER)
        if head:
            noise.append(head)
        if not marker:
            continue
        try:
            message = json.loads(body)
        except ValueError:  # a line cut short by a kill: what came before it still counts
            continue
        if "importing" in message:
            run.importing = message["importing"]
        elif "imported" in message:
            run.imported.append(message["imported"])
            run.importing = None
        elif "failed" in message:
            run.failed.append(message["failed"])
            run.importing = None
        elif "result" in message:
            run.result = message["result"]
    run.output = "\n".join(noise)
    return run


def join_output(stdout: str, stderr: str) -> str:
    text = "\n".join(part for part in (stdout.strip(), stderr.strip()) if part)
    return text[-_OUTPUT_LIMIT:]


def _death(run: BootstrapRun) -> str:
    """Why a bootstrap process gave no result."""
    if run.timed_out:
        return "TimeoutError: the check was stopped after the timeout"
    code = run.returncode if run.returncode is not None else 0
    if code < 0:
        return f"the interpreter was killed by {signal.Signals(-code).name}"
    last = (run.output.strip().splitlines() or ["no output"])[-1]
    return f"the interpreter exited with status {code}: {last}"


# ---------------------------------------------------------------------------------------------------
# From the bootstrap's answers to a report


@dataclass(frozen=True)
class FailureContext:
    """What is needed to map a missing name or file back to the strip rule that removed it."""

    layer: Path  # the copy, as the child saw it
    roots: list[str]  # layer-relative sys.path entries
    removed: Mapping[str, str]


def build_report(
    interpreter: Interpreter,
    *,
    imports: BootstrapRun,
    smoke: BootstrapRun | None,
    context: FailureContext,
    modules: list[str],
    copy_seconds: float,
) -> VerifyReport:
    failures = [_failure(record, record["module"], "import", context) for record in imports.failed]
    result = imports.result or {}
    if imports.result is None:
        failures.append(_died(imports, modules))
    _check_isolation(result)
    problems = [
        _failure(record, record["distribution"], "metadata", context)
        for record in result.get("metadata_failures", [])
    ]
    smoke_ok, smoke_output, smoke_failure = _smoke_outcome(smoke, context)
    seconds = result.get("cold_import_seconds")
    return VerifyReport(
        interpreter=interpreter,
        imported=tuple(imports.imported),
        failures=tuple(failures),
        metadata_versions=dict(result.get("metadata_versions", {})),
        metadata_failures=tuple(problem.module for problem in problems),
        smoke_ok=smoke_ok,
        smoke_output=smoke_output,
        compiled_from_source=_compiled(result, context),
        cold_import_seconds=float(seconds) if seconds is not None else None,
        metadata_problems=tuple(problems),
        smoke_failure=smoke_failure,
        layer_read_only=result.get("read_only"),
        copy_seconds=copy_seconds,
        memory=_memory(result, smoke, emulated=interpreter.emulated),
    )


def _check_isolation(result: dict[str, Any]) -> None:
    """The bootstrap's own account of its isolation; anything else is a layerforge bug, said loudly."""
    flags = result.get("flags")
    if flags and not (flags["isolated"] and flags["no_site"] and flags["dont_write_bytecode"]):
        raise VerificationError(f"the verification interpreter was not isolated: {flags}")


def _died(run: BootstrapRun, modules: list[str]) -> ModuleFailure:
    culprit = run.importing
    done = set(run.imported) | {record["module"] for record in run.failed}
    unchecked = [module for module in modules if module not in done and module != culprit]
    note = f"; not checked: {', '.join(unchecked)}" if unchecked else ""
    return ModuleFailure(
        module=culprit or "<setup>",
        error=_death(run) + note,
        missing_path=None,
        removed_by=None,
        stage="import" if culprit else "setup",
        detail=run.output[-2000:],
    )


def _smoke_outcome(
    smoke: BootstrapRun | None, context: FailureContext
) -> tuple[bool | None, str, ModuleFailure | None]:
    if smoke is None:
        return None, "", None
    if smoke.result is None:
        failure = ModuleFailure("<smoke>", _death(smoke), None, None, "smoke", smoke.output)
        return False, smoke.output, failure
    error = smoke.result.get("smoke_error")
    if not error:
        return True, smoke.output, None
    traceback = "\n".join(error.get("traceback", []))
    output = join_output(smoke.output, traceback)
    return False, output, _failure(error, "<smoke>", "smoke", context)


def _failure(record: dict[str, Any], module: str, stage: str, context: FailureContext) -> ModuleFailure:
    if stage == "metadata":
        missing, rule = _removed_dist_info(module, context)
    else:
        missing, rule = _explain(record, context)

    # The temporary copy's path means nothing to the user: show it where Lambda puts the layer.
    def opt(text: str) -> str:
        return text.replace(str(context.layer), "/opt")

    return ModuleFailure(
        module=module,
        error=opt(f"{record['type']}: {record['message']}"),
        missing_path=missing,
        removed_by=rule,
        stage=stage,
        detail=opt("\n".join(record.get("traceback", []))),
        hint=_denied(record, context) or _network(record),
        not_found=record["not_found"] if isinstance(record.get("not_found"), str) else None,
    )


def _network(record: dict[str, Any]) -> str:
    """A connection was tried at import and had no network: the container check runs with none."""
    if not record.get("network"):
        return ""
    return (
        f"it opens a network connection while it is imported ({record['network']}), and the check runs "
        "with no network: on Lambda that connection is made at every cold start, inside the init timeout, "
        "and fails in a VPC without a route out; make the connection when it is first needed, not at import"
    )


def _denied(record: dict[str, Any], context: FailureContext) -> str:
    """A write into the layer was refused: it would be on Lambda too, where /opt is read-only."""
    denied = record.get("denied_file")
    if not denied or not Path(denied).is_relative_to(context.layer):
        return ""
    relative = Path(denied).relative_to(context.layer).as_posix()
    return (
        f"it writes {relative} inside the layer, which is read-only at /opt on Lambda, so it fails there "
        "too; make it write under /tmp"
    )


def _compiled(result: dict[str, Any], context: FailureContext) -> tuple[str, ...]:
    """Modules of the layer compiled from source; the stdlib's own misses are not the layer's fault."""
    layer = str(context.layer) + os.sep
    names = {name for name, path in result.get("compiled", []) if str(path).startswith(layer)}
    return tuple(sorted(names))


# ---------------------------------------------------------------------------------------------------
# Mapping what was missing to the rule that removed it


def _explain(record: dict[str, Any], context: FailureContext) -> tuple[str | None, str | None]:
    """(layer-relative path of what was missing, the rule that removed it), as far as is known."""
    if record.get("missing_file"):
        found = _removed_file(record["missing_file"], context)
        if found[0]:
            return found
    if record.get("missing_library"):
        found = _removed_library(record["missing_library"], context)
        if found[0]:
            return found
    if record.get("missing_module"):
        return _removed_module(record["missing_module"], context)
    return None, None


def _rules(paths: Sequence[str], removed: Mapping[str, str]) -> str:
    return " and ".join(dict.fromkeys(f"{removed[path]}" for path in paths))


def _under(prefix: str, removed: Mapping[str, str]) -> list[str]:
    return sorted(path for path in removed if path.startswith(prefix))


def _removed_module(module: str, context: FailureContext) -> tuple[str | None, str | None]:
    """A module is gone when its folder, its file (x.py, x.pyc, x.*.so) or a parent's __init__ is."""
    parts = module.split(".")
    for root in context.roots:
        base = "/".join([root, *parts])
        folder = _under(base + "/", context.removed)
        if folder:
            return base + "/", _rules(folder, context.removed)
        parent, leaf = base.rsplit("/", 1)
        files = sorted(
            path
            for path in context.removed
            if path.rsplit("/", 1)[0] == parent and path.rsplit("/", 1)[1].split(".")[0] == leaf
        )
        if files:
            return files[0], _rules(files, context.removed)
        for depth in range(len(parts) - 1, 0, -1):
            init = "/".join([root, *parts[:depth], "__init__.py"])
            if init in context.removed:
                return init, context.removed[init]
    return None, None


def _removed_file(filename: str, context: FailureContext) -> tuple[str | None, str | None]:
    path = Path(filename)
    if not path.is_relative_to(context.layer):
        return None, None
    relative = path.relative_to(context.layer).as_posix()
    if relative in context.removed:
        return relative, context.removed[relative]
    inside = _under(relative + "/", context.removed)
    if inside:
        return relative + "/", _rules(inside, context.removed)
    return relative, None


def _removed_library(library: str, context: FailureContext) -> tuple[str | None, str | None]:
    hits = sorted(path for path in context.removed if path.rsplit("/", 1)[-1] == library)
    return (hits[0], _rules(hits, context.removed)) if hits else (None, None)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _removed_dist_info(distribution: str, context: FailureContext) -> tuple[str | None, str | None]:
    """importlib.metadata finds nothing when the distribution's *.dist-info folder was removed."""
    wanted = _canonical(distribution)
    for root in context.roots:
        hits: dict[str, list[str]] = {}
        for path in _under(root + "/", context.removed):
            folder = path[len(root) + 1 :].split("/", 1)[0]
            if (
                folder.endswith(".dist-info")
                and _canonical(folder[: -len(".dist-info")].split("-")[0]) == wanted
            ):
                hits.setdefault(f"{root}/{folder}/", []).append(path)
        for folder, paths in sorted(hits.items()):
            return folder, _rules(paths, context.removed)
    return None, None


def _keep_pattern(missing: str) -> str:
    """The recipe's keep pattern for a layer path: relative to the folder that is on sys.path."""
    relative = re.sub(r"^python/(lib/python3\.\d+/site-packages/)?", "", missing)
    return relative + "**" if relative.endswith("/") else relative
