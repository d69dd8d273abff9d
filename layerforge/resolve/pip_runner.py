"""pip's command line, run by a process forked from one that has already imported pip.

`pip install` spends about 0.65 s of CPU importing itself before it reads anything (pip 26, this
machine: `python -m pip install --help` takes 0.65 s of user time), two thirds of a small recipe's
resolution. A project resolves once per (recipe, runtime, arch), from one process: with a fork server
that imported pip once, only the first resolution pays for the import. Each resolution is still a
process of its own, forked from a server that has done nothing but import, so no run's state (pip's
logging set-up, its options, the environment) reaches another: the isolation of `python -m pip`,
without its start-up.

The server is `_pip_server.py`, a child of this process on pipes, not multiprocessing's forkserver:
that one re-imports the caller's main module in every child (layerforge's CLI, or a user's script that
then runs again if it has no `if __name__ == "__main__"`). On Linux only: macOS forbids some system
frameworks after fork (truststore uses Security.framework there) and Windows has no fork. Elsewhere,
with LAYERFORGE_PIP_FORKSERVER=0, or when the server cannot start or dies, pip runs as `python -m pip`
exactly as before.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO

from ..runners.interpreters import packaged_script

# What `pip install --dry-run --report` imports on its way (measured with sys.modules after a run): the
# server imports it all once. Not distro nor truststore: pip needs them only for the User-Agent, which the
# server sets, and for a TLS context, which a resolution through the local index does not build (lock.py).
PRELOAD = (
    "pip._internal.cli.main",
    "pip._internal.cli.main_parser",
    "pip._internal.cli.autocompletion",
    "pip._internal.commands.install",
    "pip._internal.metadata.importlib",
    "pip._internal.resolution.resolvelib.resolver",
    "pip._internal.utils.wheel",
)


@dataclass(frozen=True)
class PipRun:
    returncode: int
    stdout: str
    stderr: str


def forkserver_enabled() -> bool:
    if os.environ.get("LAYERFORGE_PIP_FORKSERVER", "1") == "0":
        return False
    return sys.platform == "linux"


def warm_up() -> None:
    """Start the fork server now, so that pip imports while the caller does other work."""
    if forkserver_enabled():
        _Server.shared()


def let_go(*, if_unused: bool = False) -> None:
    """The caller runs no pip for a while (a build past its resolution, or one that reuses its lock): the
    fork server ends now, so that its exit (0.15 s) overlaps the caller's work, not the end of the
    process. A server that has run nothing is killed (it may still be importing pip); one that has is
    told to end, and finishes a run under way. A later run_pip starts another. `if_unused`: leave a
    server that has run pip alone (another caller in this process may be using it)."""
    with _Server._lock:
        server = _Server._instance
        if server is None or (if_unused and server.used):
            return
        _Server._instance = None
    server.end()


@functools.cache
def no_tls_context() -> Mapping[str, str]:
    """The environment that has this interpreter's pip build no TLS context: empty for a pip that has no
    way to. pip 24.2 to 26.3 take `--use-deprecated=legacy-certs`; a later pip may drop that choice, and
    an unknown one would fail every resolution, so it is looked up in pip's own option table (read, not
    imported: importing pip costs 0.2 s)."""
    table = _pip_option_table()
    try:
        known = table is not None and '"legacy-certs"' in table.read_text(encoding="utf-8")
    except (OSError, ValueError):
        known = False
    return MappingProxyType({"PIP_USE_DEPRECATED": "legacy-certs"} if known else {})


def _pip_option_table() -> Path | None:
    """The source of this interpreter's pip's options (`pip/_internal/cli/cmdoptions.py`)."""
    spec = importlib.util.find_spec("pip")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "_internal" / "cli" / "cmdoptions.py"


def run_pip(args: Sequence[str], env: Mapping[str, str], scratch_in: Path | None = None) -> PipRun:
    """`python -m pip ARGS` with exactly `env` as its environment, in this interpreter's pip; the files
    that carry its output are made in `scratch_in` (else the system's temporary folder)."""
    server = _Server.shared() if forkserver_enabled() else None
    if server is None:
        return _run_as_process(args, env)
    with tempfile.TemporaryDirectory(prefix="pip-", dir=scratch_in) as scratch:
        # Absolute: the server opens them from its own folder, not this process's.
        out, err = Path(scratch).absolute() / "stdout", Path(scratch).absolute() / "stderr"
        status = server.run(
            {"args": list(args), "env": dict(env), "cwd": os.getcwd(), "stdout": str(out), "stderr": str(err)}
        )
        if status is None:  # the server died before it answered: run pip the plain way
            return _run_as_process(args, env)
        stdout = out.read_text(errors="replace") if out.exists() else ""
        stderr = err.read_text(errors="replace") if err.exists() else ""
        if status < 0:
            # Killed by a signal (the OOM killer, a crash in a C extension): say so, as a shell would.
            return PipRun(1, stdout, stderr + f"\npip was killed by signal {-status}")
        return PipRun(status, stdout, stderr)


def _run_as_process(args: Sequence[str], env: Mapping[str, str]) -> PipRun:
    completed = subprocess.run(
        [sys.executable, "-m", "pip", *args], env=dict(env), capture_output=True, text=True, check=False
    )
    return PipRun(completed.returncode, completed.stdout, completed.stderr)


class _Server:
    """The one fork server of this process: requests by line on its stdin, answers read by a thread."""

    _lock = threading.Lock()
    _instance: _Server | None = None
    _failed = False

    @classmethod
    def shared(cls) -> _Server | None:
        with cls._lock:
            if cls._instance is None and not cls._failed:
                try:
                    cls._instance = cls()
                except OSError:
                    cls._failed = True
                else:
                    atexit.register(cls._instance.stop)
            return cls._instance

    def __init__(self) -> None:
        # The server's own environment is the one `python -m pip` had: no pip settings, no user site.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PYTHONNOUSERSITE"] = "1"
        self._process = subprocess.Popen(
            [sys.executable, "-s", "-c", packaged_script("resolve/_pip_server.py"), json.dumps(PRELOAD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        self._waiting: dict[int, Future[int | None]] = {}
        self._ids = itertools.count()
        self._sending = threading.Lock()
        self._alive = True
        self.used = False
        threading.Thread(target=self._answers, args=(self._process.stdout,), daemon=True).start()

    def run(self, request: dict[str, object]) -> int | None:
        """The child's exit status (minus the signal that killed it), or None if the server is gone."""
        answer: Future[int | None] = Future()
        with self._sending:
            if not self._alive or self._process.stdin is None:
                return None
            number = next(self._ids)
            self.used = True
            self._waiting[number] = answer
            try:
                self._process.stdin.write((json.dumps({"id": number, **request}) + "\n").encode())
                self._process.stdin.flush()
            except OSError:
                self._waiting.pop(number, None)
                return None
        return answer.result()

    def _answers(self, stream: IO[bytes] | None) -> None:
        if stream is not None:
            for line in stream:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    answer = json.loads(line)
                    with self._sending:
                        waiting = self._waiting.pop(int(answer["id"]), None)
                    if waiting is not None:
                        waiting.set_result(int(answer["status"]))
        with self._sending:
            self._alive = False
            orphans, self._waiting = list(self._waiting.values()), {}
        for waiting in orphans:
            waiting.set_result(None)

    def end(self) -> None:
        """No more requests: the server finishes its children and exits, or is killed if it has had none.
        A request sent after gets None, and runs pip the plain way."""
        with self._sending:
            self._alive = False
            with contextlib.suppress(OSError):
                if self._process.stdin is not None:
                    self._process.stdin.close()
            if not self.used:
                self._process.kill()

    def stop(self) -> None:
        """At exit: `end`, then wait, so that no process outlives layerforge and the server's CPU time
        counts as this process's children's (`time`, getrusage). One that never ran pip (started early by
        a command that then had no resolution to do) is killed, not waited for while it imports."""
        self.end()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
