"""A pure-Python sdist built into a wheel on this machine: nothing to compile, so nothing host-specific.

pip, SAM and AWS's own procedure build such sdists anywhere; requiring Docker for them would leave a
laptop without an engine stuck. What makes a host build safe for Lambda is the result, not the sdist's
promise: the wheel is taken only when it is tagged `py3-none-any` (or `py2.py3-none-any`) and no member
is native code (by name or by magic bytes). Anything else is refused, and the requirement needs the
build image (--docker).

The sdist is code: its build backend runs here, as the user, during the build. pip runs as the lock
runs it, isolated from the host's pip configuration, with build isolation (the backend's requirements
come from the configured index alone, as wheels), a scratch HOME and TMPDIR, a fixed umask and a fixed
SOURCE_DATE_EPOCH, so a rebuild can give the same bytes. `--no-host-builds` refuses all of this.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ..binaries.binfmt import sniff_stream
from ..errors import BuildError
from .lock import pip_environment

PURE_TAGS = frozenset({Tag("py3", "none", "any"), Tag("py2", "none", "any")})
# Native code by its name, whatever its bytes; the bytes are sniffed as well, since names lie.
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll", ".exe")
HOST_BUILD_TIMEOUT = 900.0


class NotPurePython(BuildError):
    """The sdist did not give a pure-Python wheel on this machine: it needs the build image."""


def build_pure_wheel(
    name: str,
    version: str,
    sdist_sha256: str,
    *,
    index_url: str,
    dest: Path,
    source_date_epoch: int,
    timeout: float = HOST_BUILD_TIMEOUT,
    scratch_in: Path | None = None,
) -> Path:
    """Build `name==version` from the sdist with that sha256 into dest; NotPurePython unless it is pure.
    Its scratch folder (the build's HOME and TMPDIR among them) is made in `scratch_in`, else the
    system's temporary folder."""
    with tempfile.TemporaryDirectory(prefix="host-build-", dir=scratch_in) as scratch:
        work = Path(scratch)
        for sub in ("out", "home", "tmp"):
            (work / sub).mkdir()
        # Only the sdist with this hash is built, whatever else the index lists for the release.
        (work / "requirement.txt").write_text(f"{name}=={version} --hash=sha256:{sdist_sha256}\n")
        try:
            completed = subprocess.run(
                host_build_command(name, work),
                env=host_build_environment(work, source_date_epoch, index_url),
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                umask=0o022,  # a wheel records its members' modes: the same on every machine
            )
        except subprocess.TimeoutExpired:
            raise NotPurePython(f"its build did not finish within {timeout:.0f} s") from None
        wheels = sorted((work / "out").glob("*.whl"))
        if completed.returncode != 0 or len(wheels) != 1:
            tail = "\n".join(completed.stderr.strip().splitlines()[-8:])
            raise NotPurePython(f"its build failed on this machine:\n{tail}")
        problem = native_content(wheels[0])
        if problem is not None:
            raise NotPurePython(problem)
        dest.mkdir(parents=True, exist_ok=True)
        built = dest / wheels[0].name
        shutil.copyfile(wheels[0], built)
        return built


def host_build_command(name: str, work: Path) -> list[str]:
    """pip wheel for the one pinned sdist. `--only-binary=:all:` also reaches the isolated build
    environment (pip passes its format control on), so no build requirement is itself built from source:
    the only code of the index that runs here is the sdist's own backend."""
    return [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-input",
        "--no-cache-dir",
        "--use-pep517",
        # The target's Python chose this release (pick_sdist); the host's may be another.
        "--ignore-requires-python",
        "--only-binary=:all:",
        "--no-binary",
        name,
        "--wheel-dir",
        str(work / "out"),
        "--require-hashes",
        "-r",
        str(work / "requirement.txt"),
    ]


def host_build_environment(work: Path, source_date_epoch: int, index_url: str) -> dict[str, str]:
    """The lock's pip environment, plus a scratch HOME (no ~/.pydistutils.cfg, no user config of any
    backend), a scratch TMPDIR and the build time every backend of note honours."""
    env = pip_environment(index_url)
    env.update(
        HOME=str(work / "home"),
        TMPDIR=str(work / "tmp"),
        SOURCE_DATE_EPOCH=str(int(source_date_epoch)),
        PYTHONHASHSEED="0",
        PIP_NO_INPUT="1",
    )
    env.pop("PYTHONPATH", None)
    return env


def native_content(wheel: Path) -> str | None:
    """Why the wheel is not pure Python (its tags, or its first native member), or None when it is."""
    try:
        tags = parse_wheel_filename(wheel.name)[3]
    except (InvalidWheelFilename, ValueError):
        return f"it gave {wheel.name!r}, which is not a wheel's name"
    if not tags <= PURE_TAGS or Tag("py3", "none", "any") not in tags:
        return f"it gave {wheel.name}, which is not a pure-Python (py3-none-any) wheel"
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                if member.is_dir():
                    continue
                if member.filename.lower().endswith(NATIVE_SUFFIXES):
                    return f"{wheel.name} holds {member.filename}, native code"
                with archive.open(member) as stream:
                    kind = sniff_stream(stream).kind
                if kind != "other":
                    return f"{wheel.name} holds {member.filename}, native code ({kind.upper()})"
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        return f"{wheel.name} is not a readable wheel ({error})"
    return None
