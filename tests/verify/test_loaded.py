"""The dynamic check: a library the verifying process loads from this machine, and Lambda lacks, fails.

Real interpreters import real layers; the host libraries are real files (one compiled by gcc into a
folder outside the layer, one of this Debian host's when it has it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from layerforge.errors import VerificationError
from layerforge.runners.interpreters import Interpreter, probe
from layerforge.system_libraries import runtime_libraries
from layerforge.target import Target
from layerforge.verify.local import verify_layer
from tests.support.elf import compile_linked_object

PY = Target(f"python{sys.version_info[0]}.{sys.version_info[1]}", "x86_64")
X11 = Path("/usr/lib/x86_64-linux-gnu/libX11.so.6")

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the objects are built for x86_64")


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    found = probe(Path(sys.executable))
    assert found is not None
    return found


def _layer(root: Path, init: str, files: dict[str, bytes] | None = None) -> Path:
    package = root / "python/hostload"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(init)
    for relative, data in (files or {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def test_a_ctypes_load_of_a_host_library_at_import_fails_naming_it(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    host = compile_linked_object(tmp_path / "host/libhostonly.so.1.2", (), soname="libhostonly.so.1")
    layer = _layer(tmp_path / "layer", f"import ctypes\nctypes.CDLL({str(host)!r})\n")
    report = verify_layer(
        layer, PY, modules=["hostload"], distributions=[], interpreter=interpreter, timeout=120
    )
    assert report.imported == ("hostload",)  # the import itself worked: only this machine has the library
    [failure] = report.failures
    assert failure.stage == "library" and failure.module == "libhostonly.so.1"
    assert failure.message.startswith(f"libhostonly.so.1 was loaded from this machine ({host})")
    assert "is needed by the layer's code (ctypes or dlopen" in failure.message
    assert f"the {PY.runtime} runtime (Amazon Linux" in failure.message
    assert '"libhostonly.so.1: cannot open shared object file"' in failure.message
    assert "[audit] system_libraries" in failure.message
    assert not report.ok and report.verified is False
    with pytest.raises(VerificationError, match=r"libhostonly\.so\.1"):
        report.raise_for_failures()
    # Declared as provided by another layer, it passes.
    provided = verify_layer(
        layer,
        PY,
        modules=["hostload"],
        distributions=[],
        interpreter=interpreter,
        timeout=120,
        system_libraries=["libhostonly.so.1"],
    )
    assert provided.ok


@pytest.mark.skipif(not X11.is_file(), reason=f"this host has no {X11}")
def test_a_host_library_that_lambda_lacks_loaded_by_the_smoke_code_fails(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    assert "libX11.so.6" not in runtime_libraries(PY)
    layer = _layer(tmp_path, "")
    report = verify_layer(
        layer,
        PY,
        modules=["hostload"],
        distributions=[],
        smoke="import ctypes\nctypes.CDLL('libX11.so.6')\n",
        interpreter=interpreter,
        timeout=120,
    )
    assert report.smoke_ok is True
    assert [failure.module for failure in report.failures] == ["libX11.so.6"]


def test_a_layer_object_that_links_a_host_library_is_named_as_the_one_that_needs_it(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    host = compile_linked_object(tmp_path / "host/libhostonly.so.1", (), soname="libhostonly.so.1")
    extension = compile_linked_object(tmp_path / "ext.so", ("libhostonly.so.1",))
    layer = _layer(
        tmp_path / "layer",
        f"import ctypes, os\nctypes.CDLL({str(host)!r})\n"
        "ctypes.CDLL(os.path.join(os.path.dirname(__file__), '_ext.so'))\n",
        {"python/hostload/_ext.so": extension.read_bytes()},
    )
    report = verify_layer(
        layer, PY, modules=["hostload"], distributions=[], interpreter=interpreter, timeout=120
    )
    [failure] = report.failures
    assert "libhostonly.so.1 is needed by python/hostload/_ext.so," in failure.message


def test_the_interpreters_own_libraries_are_not_the_layers_problem(
    tmp_path: Path, interpreter: Interpreter
) -> None:
    # _ssl, _sqlite3, _lzma and _ctypes load this machine's libssl, libsqlite3, liblzma and libffi,
    # which Amazon Linux 2 lacks by these names: Lambda's Python brings its own.
    layer = _layer(tmp_path, "import ssl, sqlite3, lzma, ctypes, hashlib, zlib, bz2, decimal\n")
    report = verify_layer(
        layer,
        Target("python3.11", "x86_64") if PY.runtime == "python3.11" else PY,
        modules=["hostload"],
        distributions=[],
        smoke="import ssl, sqlite3, ctypes\nssl.create_default_context()\nsqlite3.connect(':memory:')\n",
        interpreter=interpreter,
        timeout=120,
    )
    assert report.failures == () and report.ok, [f.message for f in report.failures]
