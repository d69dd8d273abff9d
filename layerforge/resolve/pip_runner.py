"""pip's command line, run by a process forked from one that has already imported pip.

`pip install` spends about 0.65 s of CPU importing itself before it reads anything (pip 26, this
machine: `python -m pip install --help` takes 0.65 s of user time), two thirds of a small recipe's
resolution. A project resolves once per (recipe, runtime, arch), from one process: with a fork server
that imported pip once, only the first resolution pays for the import. Each resolution is still a
process of its own, forked from a server that has done nothing but import, so no run's state (pip's
logging set-up, its options, the environment) reaches another: the isolation of `python -m pip`,
without its start-up.

The fork server is the standard library's (multiprocessing's "forkserver"), on Linux only: macOS
forbids some system frameworks after fork (truststore uses Security.framework there) and Windows has no
fork. Elsewhere, or with LAYERFORGE_PIP_FORKSERVER=0, pip runs as `python -m pip` exactly as before.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path

# What `pip install --dry-run --report` imports on its way (measured with sys.modules after a run): the
# fork server imports it all once.
PRELOAD = (
    "pip._internal.cli.main",
    "pip._internal.cli.main_parser",
    "pip._internal.cli.autocompletion",
    "pip._internal.commands.install",
    "pip._internal.metadata.importlib",
    "pip._internal.resolution.resolvelib.resolver",
    "pip._internal.utils.wheel",
    "pip._vendor.distro",
    "pip._vendor.truststore",
)

_STARTED = threading.Lock()
# The one fork server of this process, once started (a dict, so that no function rebinds a global).
_SERVER: dict[str, multiprocessing.context.ForkServerContext] = {}


@dataclass(frozen=True)
class PipRun:
    returncode: int
    stdout: str
    stderr: str


def forkserver_enabled() -> bool:
    if os.environ.get("LAYERFORGE_PIP_FORKSERVER", "1") == "0":
        return False
    # Before 3.10.9 the server listened on an abstract socket any local user could reach (CVE-2022-42919);
    # since, on a socket file in a folder only this user can open.
    return (
        sys.platform == "linux"
        and sys.version_info >= (3, 10, 9)
        and "forkserver" in multiprocessing.get_all_start_methods()
    )


def warm_up() -> None:
    """Start the fork server now, so that pip imports while the caller does other work."""
    if forkserver_enabled():
        _forkserver()


def run_pip(args: Sequence[str], env: Mapping[str, str]) -> PipRun:
    """`python -m pip ARGS` with exactly `env` as its environment, in this interpreter's pip."""
    if not forkserver_enabled():
        return _run_as_process(args, env)
    with tempfile.TemporaryDirectory(prefix="layerforge-pip-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        process = _forkserver().Process(
            target=_pip_main, args=(list(args), dict(env), os.getcwd(), str(out), str(err)), daemon=True
        )
        process.start()
        try:
            process.join()
        except BaseException:
            process.kill()
            process.join()
            raise
        stdout = out.read_text(errors="replace") if out.exists() else ""
        stderr = err.read_text(errors="replace") if err.exists() else ""
        code = process.exitcode
        if code is None or code < 0:
            # Killed by a signal (the OOM killer, a crash in a C extension): say so, as a shell would.
            stderr += f"\npip was killed by signal {-(code or 0)}"
            code = 1
        return PipRun(code, stdout, stderr)


def _run_as_process(args: Sequence[str], env: Mapping[str, str]) -> PipRun:
    completed = subprocess.run(
        [sys.executable, "-m", "pip", *args], env=dict(env), capture_output=True, text=True, check=False
    )
    return PipRun(completed.returncode, completed.stdout, completed.stderr)


def _forkserver() -> multiprocessing.context.ForkServerContext:
    with _STARTED:
        if "context" not in _SERVER:
            context = multiprocessing.get_context("forkserver")
            # The process-wide fork server is shared with any other forkserver user of this process;
            # layerforge has none, and a preload only adds imports.
            context.set_forkserver_preload([__name__, *PRELOAD])
            forkserver.ensure_running()
            atexit.register(_stop)
            _SERVER["context"] = context
        return _SERVER["context"]


def _stop() -> None:
    """Stop the fork server and wait for it, so that no process outlives layerforge and its CPU time
    counts as this process's children's (`getrusage`, `time`). The method is private in 3.11 to 3.13:
    without it the server still ends on its own once this process has gone."""
    stop = getattr(forkserver._forkserver, "_stop", None)
    if callable(stop):
        with contextlib.suppress(OSError, ChildProcessError):
            stop()


def _pip_main(args: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str) -> None:
    """The forked child: pip's own entry point, as `python -m pip` would call it, with its own streams."""
    for fd, path in ((1, stdout), (2, stderr)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [os.path.join(os.path.dirname(sys.executable), "pip"), *args]
    # Imported by the fork server already (PRELOAD); never by layerforge's own process.
    main = importlib.import_module("pip._internal.cli.main").main
    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
