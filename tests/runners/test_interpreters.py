"""Interpreter discovery against the real CPythons under pyenv, with fake homes and PATHs to hide them."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from layerforge.errors import InputError
from layerforge.runners.interpreters import Interpreter, candidates, find_interpreter, probe
from layerforge.target import ARCHES, Target

PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
HOST_ARCH = {machine: arch for arch, machine in ARCHES.items()}.get(platform.machine(), "x86_64")


def find_only_in(home: Path, target: Target) -> Interpreter | None:
    """Discovery that sees nothing but `home`: no PATH, no environment, not the interpreter running tests."""
    return find_interpreter(target, search_path="", home=home, environ={}, include_current=False)


def real_python(dotted: str) -> Path:
    """A real CPython of that version from pyenv; the test is skipped on a machine without one."""
    found = sorted(PYENV_VERSIONS.glob(f"{dotted}.*/bin/python{dotted}"))
    if not found:
        pytest.skip(f"no CPython {dotted} under {PYENV_VERSIONS}")
    return found[-1]


def link(path: Path, to: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(to)
    return path


def test_probe_reports_what_the_interpreter_is() -> None:
    found = probe(Path(sys.executable))
    assert found is not None
    assert found.version == sys.version_info[:2]
    assert found.machine == platform.machine()
    assert found.implementation == "cpython"
    assert not found.free_threaded


@pytest.mark.parametrize("kind", ["missing", "not-executable", "fails", "prints-nonsense"])
def test_probe_is_none_for_what_does_not_run(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "python3.11"
    if kind == "not-executable":
        path.write_text("#!/bin/sh\n")
    elif kind == "fails":
        path.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
        path.chmod(0o755)
    elif kind == "prints-nonsense":
        path.write_text("#!/bin/sh\necho hello\n")
        path.chmod(0o755)
    assert probe(path) is None


def test_finds_312_in_a_fake_pyenv_home(tmp_path: Path) -> None:
    real = real_python("3.12")
    link(tmp_path / ".pyenv/versions/3.12.1/bin/python3.12", real)
    found = find_only_in(tmp_path, Target("python3.12"))
    assert found is not None
    assert (found.version, found.source, found.machine) == ((3, 12), "pyenv", platform.machine())


def test_no_interpreter_at_all(tmp_path: Path) -> None:
    target = Target("python3.11")
    assert candidates(target, search_path="", home=tmp_path, environ={}, include_current=False) == []
    assert find_only_in(tmp_path, target) is None


def test_candidates_come_in_order_path_pyenv_uv_current(tmp_path: Path) -> None:
    real = real_python("3.12")
    on_path = link(tmp_path / "bin/python3.12", real)
    pyenv_old = link(tmp_path / "home/.pyenv/versions/3.12.0/bin/python3.12", real)
    pyenv_new = link(tmp_path / "home/.pyenv/versions/3.12.1/bin/python3.12", real)
    uv = link(tmp_path / "home/.local/share/uv/python/cpython-3.12.1-linux-x86_64-gnu/bin/python3.12", real)
    # Neither a musl build nor another architecture nor another minor version is a candidate.
    link(tmp_path / "home/.local/share/uv/python/cpython-3.12.1-linux-x86_64-musl/bin/python3.12", real)
    link(tmp_path / "home/.local/share/uv/python/cpython-3.12.1-linux-aarch64-gnu/bin/python3.12", real)
    link(tmp_path / "home/.pyenv/versions/3.11.9/bin/python3.11", real)
    found = candidates(
        Target("python3.12", "x86_64"), search_path=str(tmp_path / "bin"), home=tmp_path / "home", environ={}
    )
    assert found == [on_path, pyenv_new, pyenv_old, uv, Path(sys.executable)]


def test_environment_variables_move_pyenv_and_uv(tmp_path: Path) -> None:
    real = real_python("3.12")
    pyenv = link(tmp_path / "pyenv-root/versions/3.12.1/bin/python3.12", real)
    uv = link(tmp_path / "uv-pythons/cpython-3.12.1-linux-x86_64-gnu/bin/python3.12", real)
    environ = {
        "PYENV_ROOT": str(tmp_path / "pyenv-root"),
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv-pythons"),
    }
    found = candidates(
        Target("python3.12", "x86_64"),
        search_path="",
        home=tmp_path / "empty-home",
        environ=environ,
        include_current=False,
    )
    assert found == [pyenv, uv]


def test_finds_uv_managed_interpreter(tmp_path: Path) -> None:
    real = real_python("3.12")
    machine = platform.machine()
    link(tmp_path / f".local/share/uv/python/cpython-3.12.1-linux-{machine}-gnu/bin/python3.12", real)
    found = find_only_in(tmp_path, Target("python3.12", HOST_ARCH))
    assert found is not None
    assert found.source == "uv"


def test_a_misleading_name_on_path_is_probed_not_trusted(tmp_path: Path) -> None:
    """A `python3.12` on PATH that is really 3.11 (a stale shim, say) is passed over for a real 3.12."""
    link(tmp_path / "bin/python3.12", real_python("3.11"))
    link(tmp_path / "home/.pyenv/versions/3.12.1/bin/python3.12", real_python("3.12"))
    found = find_interpreter(
        Target("python3.12", HOST_ARCH),
        search_path=str(tmp_path / "bin"),
        home=tmp_path / "home",
        environ={},
        include_current=False,
    )
    assert found is not None
    assert (found.version, found.source) == ((3, 12), "pyenv")


def test_an_interpreter_for_another_architecture_is_not_used(tmp_path: Path) -> None:
    other = "arm64" if HOST_ARCH == "x86_64" else "x86_64"
    link(tmp_path / ".pyenv/versions/3.11.7/bin/python3.11", real_python("3.11"))
    assert find_only_in(tmp_path, Target("python3.11", other)) is None


def test_explicit_interpreter_of_the_wrong_version_is_an_input_error() -> None:
    with pytest.raises(InputError) as raised:
        find_interpreter(Target("python3.11"), explicit=real_python("3.12"))
    message = str(raised.value)
    assert "Python 3.12, not 3.11" in message
    assert raised.value.exit_code == 2


def test_explicit_interpreter_that_does_not_exist_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        find_interpreter(Target("python3.11"), explicit=tmp_path / "python3.11")


def test_explicit_interpreter_that_does_not_run_is_an_input_error(tmp_path: Path) -> None:
    broken = tmp_path / "python3.11"
    broken.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 7\n")
    broken.chmod(0o755)
    with pytest.raises(InputError, match="exited with status 7: cannot start"):
        find_interpreter(Target("python3.11"), explicit=broken)


def test_explicit_interpreter_that_fits_is_used_as_given() -> None:
    found = find_interpreter(Target("python3.12", HOST_ARCH), explicit=real_python("3.12"))
    assert isinstance(found, Interpreter)
    assert (found.version, found.source) == ((3, 12), "--python")


def test_mismatch_names_every_reason() -> None:
    pypy = Interpreter(Path("/x/pypy3.10"), (3, 10), "aarch64", "pypy", "PATH")
    reason = pypy.mismatch(Target("python3.11", "x86_64"))
    assert reason is not None
    assert "not CPython" in reason
    assert "not 3.11" in reason
    assert "aarch64, not x86_64" in reason
