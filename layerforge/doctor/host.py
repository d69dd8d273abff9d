"""The machine against the target: OS, architecture, a CPython for the import check, pip, uv and Docker."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..errors import InputError
from ..runners.docker import IMAGE_ARCHITECTURES, DockerClient, DockerError, engine_problem
from ..runners.emulation import Emulation, emulation_for, enable_hint
from ..runners.interpreters import Interpreter, install_hint
from ..target import Target, host_machine, machine_name
from .findings import Finding, Severity

# pyproject pins pip>=25.1: older pip mis-applies Requires-Python with --python-version.
MIN_PIP = Version("25.1")
_TOOL_TIMEOUT = 10.0

Finder = Callable[..., Interpreter | None]


# ---------------------------------------------------------------------------------------------------
# The machine


def check_host(
    target: Target,
    *,
    system: str | None = None,
    machine: str | None = None,
    python: tuple[int, int] | None = None,
) -> list[Finding]:
    """The host against the target. Building works anywhere; only the import check needs a match."""
    system = system or platform.system()
    machine = machine_name(machine) if machine else host_machine()
    python = python or (sys.version_info[0], sys.version_info[1])
    host = f"{system} on {machine} with Python {python[0]}.{python[1]}"
    glibc = ".".join(map(str, target.glibc))
    lambda_side = f"{target.runtime} on {target.machine} ({target.facts.os}, glibc {glibc})"
    if system != "Linux":
        also = " (or run layerforge inside WSL)" if system == "Windows" else ""
        return [
            Finding(
                "host",
                "info",
                f"this machine runs {host}; Lambda runs {lambda_side}",
                f"nothing to do for building: layerforge always picks Linux (manylinux) wheels for the "
                f"target, never {system} ones. The import check needs a Linux interpreter: start Docker "
                f"and layerforge runs it in the Lambda image{also}",
            )
        ]
    if machine != target.machine:
        return [
            Finding(
                "host",
                "info",
                f"this machine runs {host}; the target is {lambda_side}",
                f"nothing to do for building: layerforge picks {target.machine} wheels on any machine. "
                f"To import-check the layer it needs Docker (with {target.machine} emulation) or an "
                f"{target.machine} machine"
                + (" such as an AWS Graviton instance" if target.arch == "arm64" else ""),
            )
        ]
    return [Finding("host", "ok", f"this machine runs {host}; the target is {lambda_side}")]


def check_interpreter(target: Target, python: Path | None, find: Finder) -> tuple[Finding, bool]:
    """(the finding, whether a local interpreter can verify the target)."""
    try:
        found = find(target, explicit=python)
    except InputError as error:
        return Finding("interpreter", "error", error.message, error.hint or ""), False
    if found is not None:
        return (
            Finding(
                "interpreter",
                "ok",
                f"layers for {target.label} are import-checked with {found.describe()}",
            ),
            True,
        )
    return (
        Finding(
            "interpreter",
            "warning",
            f"no CPython {target.python_dotted} for {target.machine} on this machine, so builds cannot "
            "import-check the layer here",
            f"{install_hint(target)}. Without one, builds verify in Docker when an engine answers, "
            "else only the static audit runs (and the build says so)",
        ),
        False,
    )


def check_tools(
    *, pip_version: Callable[[], str] | None = None, which: Callable[[str], str | None] = shutil.which
) -> list[Finding]:
    return [_check_pip(pip_version or (lambda: importlib.metadata.version("pip"))), _check_uv(which)]


def _check_pip(pip_version: Callable[[], str]) -> Finding:
    upgrade = f"`{sys.executable} -m pip install --upgrade 'pip>={MIN_PIP}'`"
    try:
        text = pip_version()
    except importlib.metadata.PackageNotFoundError:
        return Finding(
            "pip",
            "error",
            f"pip is not installed in layerforge's environment ({sys.executable}); it resolves every lock",
            f"`{sys.executable} -m ensurepip --upgrade`, then {upgrade}",
        )
    try:
        version = Version(text)
    except InvalidVersion:
        return Finding("pip", "warning", f"pip reports an unreadable version {text!r}", upgrade)
    if version < MIN_PIP:
        return Finding(
            "pip",
            "warning",
            f"pip {version} is older than {MIN_PIP}: it mis-applies Requires-Python when resolving for "
            "another Python version, so a lock may pick releases the runtime cannot install",
            upgrade,
        )
    return Finding("pip", "ok", f"pip {version} resolves locks (in {sys.executable})")


def _check_uv(which: Callable[[str], str | None]) -> Finding:
    path = which("uv")
    if path is None:
        return Finding(
            "uv",
            "info",
            "uv is not installed (optional)",
            "nothing needed; uv is one quick way to get an interpreter for the import check "
            "(`uv python install 3.11`): https://docs.astral.sh/uv/",
        )
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False
        )
        version = done.stdout.strip() or done.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        return Finding("uv", "warning", f"uv at {path} does not run: {error}", "reinstall uv, or remove it")
    return Finding("uv", "ok", f"{version or 'uv'} at {path}; its managed interpreters are searched too")


def check_docker(target: Target, factory: Callable[[], DockerClient], *, have_local: bool) -> Finding:
    try:
        client = factory()
        facts = client.version()
    except DockerError as error:
        return _no_docker(target, error.message, have_local)
    except Exception as error:  # the SDK raises requests' and socket errors as well as its own
        return _no_docker(target, f"no Docker engine answered: {engine_problem(error)}", have_local)
    version = facts.get("Version", "?")
    engine_arch = str(facts.get("Arch", ""))
    summary = f"Docker Engine {version} answers ({facts.get('Os', '?')}/{engine_arch or '?'})"
    if engine_arch and engine_arch != IMAGE_ARCHITECTURES[target.arch]:
        return Finding(
            "docker",
            "info",
            summary + f"; the {target.arch} Lambda image runs on it under emulation, more slowly",
            "if verification fails with 'exec format error', install the emulator once: "
            + enable_hint(target.machine),
        )
    return Finding("docker", "ok", summary)


def _no_docker(target: Target, problem: str, have_local: bool) -> Finding:
    if have_local:
        return Finding(
            "docker",
            "info",
            problem,
            "nothing needed now: builds verify with the local interpreter. Docker is needed for targets "
            "this machine cannot run (another architecture or Python) and to build packages that have "
            "no wheel from source",
        )
    return Finding(
        "docker",
        "warning",
        f"{problem}; with no local interpreter either, builds for {target.label} check nothing beyond "
        "the static audit",
        "start Docker (Docker Desktop, or `sudo systemctl start docker` on Linux; check DOCKER_HOST if "
        f"the engine is elsewhere), or {install_hint(target)}",
    )


def check_emulation(target: Target, *, probe: Callable[[str], Emulation] = emulation_for) -> Finding:
    """Whether the other architecture's images run here: how arm64 layers are import-checked on x86_64."""
    other = "aarch64" if host_machine() == "x86_64" else "x86_64"
    machine = target.machine if target.machine != host_machine() else other
    found = probe(machine)
    if found.available:
        return Finding("emulation", "ok", f"{found.detail}: {machine} layers can be verified in Docker")
    # Only a target of the other architecture needs it; for this machine's own it is a note.
    severity: Severity = "warning" if target.machine == machine else "info"
    return Finding(
        "emulation",
        severity,
        f"{found.detail}: {machine} layers cannot be import-checked in Docker here",
        found.fix,
    )
