"""Find a CPython interpreter on this machine that can import-check a layer for a target.

A layer for python3.12 on arm64 can only be verified by CPython 3.12 running as aarch64: another minor
version has another ABI (its C extensions would not load, or worse, load a different wheel's code), and an
x86_64 interpreter cannot load aarch64 shared objects. Each candidate is therefore probed, not guessed from
its file name: a `python3.12` on PATH may be a pyenv shim for another version, or not run at all.

Where we look, in order: an explicit `--python`, `python3.X` on PATH, pyenv's versions, uv's managed
interpreters, and finally the interpreter running layerforge.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..target import Target, host_machine

# Long enough for a pyenv shim (a bash script that runs `pyenv exec`) on a slow disk, short enough that a
# hung binary does not stall a build.
PROBE_TIMEOUT_SECONDS = 20.0

# Runs under -I -S on anything from 2.7 up, so it sticks to syntax every version accepts. Free-threaded
# builds (3.13t) have their own ABI (cp313t) and cannot load the layer's cp313 extensions.
_PROBE_CODE = (
    "import json, platform, sys, sysconfig\n"
    "print(json.dumps({'version': list(sys.version_info[:2]), 'machine': platform.machine(),"
    " 'implementation': sys.implementation.name, 'executable': sys.executable,"
    " 'gil_disabled': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),"
    " 'platform': sys.platform, 'libc': platform.libc_ver()[0]}))\n"
)


@dataclass(frozen=True)
class Interpreter:
    """One probed interpreter: what it really is, not what its file name says."""

    path: Path
    version: tuple[int, int]
    machine: str  # platform.machine() of that interpreter: x86_64 / aarch64
    implementation: str  # sys.implementation.name: "cpython", "pypy", ...
    source: str  # where it was found: "--python", "PATH", "pyenv", "uv", "current"
    free_threaded: bool = False
    # Lambda is Linux with glibc: a macOS or musl (Alpine) CPython of the right version cannot load its .so.
    platform: str = "linux"
    libc: str = "glibc"
    # Set when the interpreter runs in a container: the image, and whether the kernel emulates its machine.
    container: str = ""
    emulated: bool = False

    @property
    def dotted(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def describe(self) -> str:
        if self.container:
            emulated = ", emulated" if self.emulated else ""
            return f"{self.implementation} {self.dotted} in {self.container} ({self.machine}{emulated})"
        return f"{self.implementation} {self.dotted} on {self.machine} at {self.path} (from {self.source})"

    def mismatch(self, target: Target) -> str | None:
        """Why this interpreter cannot verify a layer for `target`, or None when it can."""
        reasons = []
        if self.implementation != "cpython":
            reasons.append(f"it is {self.implementation}, not CPython")
        if self.version != target.python_version:
            reasons.append(f"it is Python {self.dotted}, not {target.python_dotted}")
        if self.machine != target.machine:
            reasons.append(f"it runs on {self.machine}, not {target.machine}")
        if self.platform != "linux" or self.libc != "glibc":
            reasons.append(f"it runs on {self.platform} with {self.libc or 'no'} libc, not Linux with glibc")
        if self.free_threaded:
            reasons.append("it is a free-threaded build, whose extension ABI differs from the runtime's")
        if not reasons:
            return None
        return f"{self.path} cannot verify a {target.label} layer: " + "; ".join(reasons)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "version": self.dotted,
            "machine": self.machine,
            "implementation": self.implementation,
            "source": self.source,
            **({"container": self.container, "emulated": self.emulated} if self.container else {}),
        }


@functools.cache
def packaged_script(name: str) -> str:
    """A script shipped in this package (a path below layerforge/), for `python -c` in an interpreter that
    has no layerforge."""
    return resources.files("layerforge").joinpath(name).read_text(encoding="utf-8")


def last_json_line(stdout: str) -> Any:
    """What a script run in another interpreter answered: JSON on its last line of output. Raises
    ValueError (IndexError when it printed nothing): whatever it printed before is the packages' own."""
    return json.loads(stdout.strip().splitlines()[-1])


def stderr_tail(stderr: str, default: str) -> str:
    """The last line a failed interpreter wrote: usually the error that ended it."""
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else default


def probe(path: Path, *, source: str = "probe") -> Interpreter | None:
    """Run `path` once and report what it is; None when it does not run or does not answer sensibly."""
    found = _probe(path, source)
    return found if isinstance(found, Interpreter) else None


def _probe(path: Path, source: str) -> Interpreter | str:
    """The interpreter, or a one-line reason why probing failed (for the `--python` error message)."""
    try:
        done = subprocess.run(
            [str(path), "-I", "-S", "-c", _PROBE_CODE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"it did not answer within {PROBE_TIMEOUT_SECONDS:.0f} s"
    except OSError as error:
        return f"it could not be started: {error.strerror or error}"
    if done.returncode != 0:
        return f"it exited with status {done.returncode}: {stderr_tail(done.stderr, 'no output')}"
    try:
        facts = last_json_line(done.stdout)
        major, minor = (int(part) for part in facts["version"])
        # A pyenv shim reports the real binary here: use it, so later runs skip the shim and cannot be
        # redirected to another version by a .python-version file in the working directory.
        executable = Path(facts["executable"]) if facts.get("executable") else path
        return Interpreter(
            path=executable if executable.is_file() else path,
            version=(major, minor),
            machine=str(facts["machine"]),
            implementation=str(facts["implementation"]),
            source=source,
            free_threaded=bool(facts.get("gil_disabled")),
            platform=str(facts.get("platform", "")),
            libc=str(facts.get("libc", "")),
        )
    except (IndexError, KeyError, TypeError, ValueError):
        return "it did not print what a CPython 3 interpreter prints"


def candidates(
    target: Target,
    *,
    explicit: Path | None = None,
    search_path: str | None = None,
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
    include_current: bool = True,
) -> list[Path]:
    """Every place an interpreter for `target` may be, best first, without running any of them.

    `search_path` (default: $PATH), `home` (default: the user's home), `environ` (default: os.environ,
    read for PYENV_ROOT, UV_PYTHON_INSTALL_DIR and XDG_DATA_HOME) and `include_current` let a caller, a
    test above all, say exactly where to look: all four empty means "no interpreter at all".
    """
    found = _sourced_candidates(
        target,
        explicit=explicit,
        search_path=search_path,
        home=home,
        environ=environ,
        current=include_current,
    )
    return [path for path, _ in found]


def _sourced_candidates(
    target: Target,
    *,
    explicit: Path | None,
    search_path: str | None,
    home: Path | None,
    environ: Mapping[str, str] | None,
    current: bool,
) -> list[tuple[Path, str]]:
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    found: list[tuple[Path, str]] = []
    if explicit is not None:
        found.append((explicit, "--python"))
    path_var = env.get("PATH", "") if search_path is None else search_path
    found += [(path, "PATH") for path in _on_path(target, path_var)]
    found += [(path, "pyenv") for path in _pyenv(target, env, home)]
    found += [(path, "uv") for path in _uv(target, env, home)]
    if current and sys.executable:
        found.append((Path(sys.executable), "current"))
    unique: dict[Path, str] = {}
    for path, source in found:
        unique.setdefault(path, source)
    return list(unique.items())


def _executable_name(target: Target) -> str:
    return f"python{target.python_dotted}"


def _on_path(target: Target, path_var: str) -> list[Path]:
    name = _executable_name(target)
    hits = []
    for folder in path_var.split(os.pathsep):
        if folder:
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                hits.append(candidate)
    return hits


def _version_key(name: str) -> tuple[int, ...]:
    """Sort key for folder names like "3.12.1" or "cpython-3.12.1-linux-x86_64-gnu": newest patch first."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", name)
    if not match:
        return ()
    return tuple(int(part) for part in match.groups(default="0"))


def _newest_first(paths: list[Path]) -> list[Path]:
    """Order `<version folder>/bin/python3.X` paths by the version in the folder's name, newest first."""
    return sorted(paths, key=lambda path: (_version_key(path.parents[1].name), str(path)), reverse=True)


def _pyenv(target: Target, env: Mapping[str, str], home: Path) -> list[Path]:
    root = Path(env["PYENV_ROOT"]) if env.get("PYENV_ROOT") else home / ".pyenv"
    name = _executable_name(target)
    return _newest_first(list((root / "versions").glob(f"*/bin/{name}")))


def _uv(target: Target, env: Mapping[str, str], home: Path) -> list[Path]:
    if env.get("UV_PYTHON_INSTALL_DIR"):
        root = Path(env["UV_PYTHON_INSTALL_DIR"])
    elif env.get("XDG_DATA_HOME"):
        root = Path(env["XDG_DATA_HOME"]) / "uv" / "python"
    else:
        root = home / ".local" / "share" / "uv" / "python"
    name = _executable_name(target)
    # uv names its folders cpython-3.12.1-linux-x86_64-gnu; the musl builds cannot load manylinux wheels.
    pattern = f"cpython-{target.python_dotted}.*-linux-{target.machine}-gnu/bin/{name}"
    return _newest_first(list(root.glob(pattern)))


def find_interpreter(
    target: Target,
    *,
    explicit: Path | None = None,
    search_path: str | None = None,
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
    include_current: bool = True,
) -> Interpreter | None:
    """The first CPython that can verify a `target` layer, or None when this machine has none.

    An `explicit` interpreter (`--python`) is the user's choice: when it does not fit, that is an
    InputError saying why, never a silent fall back to another one.
    """
    if explicit is not None:
        return _explicit(target, explicit)
    seen: set[Path] = set()
    found_paths = _sourced_candidates(
        target, explicit=None, search_path=search_path, home=home, environ=environ, current=include_current
    )
    for path, source in found_paths:
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        found = probe(path, source=source)
        if found is not None and found.mismatch(target) is None:
            return found
    return None


def _explicit(target: Target, explicit: Path) -> Interpreter:
    # `--python python3.12` names a command rather than a file: look it up as a shell would.
    path = explicit
    if not path.exists() and os.sep not in str(explicit):
        located = shutil.which(str(explicit))
        path = Path(located) if located else explicit
    if not path.exists():
        raise InputError(
            f"--python {explicit}: no such file",
            hint=f"pass the path of a CPython {target.python_dotted} interpreter, or leave --python out",
        )
    found = _probe(path, "--python")
    if isinstance(found, str):
        raise InputError(
            f"--python {explicit} cannot be used: {found}",
            hint=f"pass the path of a working CPython {target.python_dotted} interpreter",
        )
    reason = found.mismatch(target)
    if reason:
        raise InputError(
            f"--python {explicit}: {reason}",
            hint=f"pass a CPython {target.python_dotted} for {target.machine}, or choose --runtime to match",
        )
    return found


def search_summary(
    target: Target, *, home: Path | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Where find_interpreter looked, for the message that says the import check did not run."""
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    pyenv = Path(env["PYENV_ROOT"]) if env.get("PYENV_ROOT") else home / ".pyenv"
    name = _executable_name(target)
    return (
        f"looked for CPython {target.python_dotted} on {target.machine}: {name} on PATH, "
        f"{pyenv}/versions/*/bin/{name}, uv's managed interpreters, and the current interpreter"
    )


def install_hint(target: Target) -> str:
    """How to get an interpreter that can import-check a `target` layer on this machine."""
    if target.machine != host_machine():
        # No interpreter installed here runs the other architecture's extension modules: pyenv cannot help.
        return (
            f"run the check in Docker, where an {target.machine} image runs under emulation (`layerforge "
            f"doctor` says whether this machine has it, and how to enable it), or build on an "
            f"{target.machine} machine with CPython {target.python_dotted}"
        )
    return (
        f"install CPython {target.python_dotted} (`pyenv install {target.python_dotted}` or "
        f"`uv python install {target.python_dotted}`) or pass --python PATH, or start Docker"
    )
