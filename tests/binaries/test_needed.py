"""The audit finds every library an ELF object needs, as Lambda's loader would, or says it will not.

The objects are compiled by gcc and linked against stub libraries of the names asked for, so their
DT_NEEDED, RUNPATH and SONAME are what a real wheel's would be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerforge.binaries import needed
from layerforge.binaries.audit import audit_tree
from layerforge.binaries.needed import library_names
from layerforge.errors import AuditError
from layerforge.system_libraries import runtime_libraries
from layerforge.target import Target
from tests.support.elf import compile_linked_object

PY311 = Target("python3.11", "x86_64")
PY312 = Target("python3.12", "x86_64")
EXTENSION = "python/pkg/_native.abi3.so"
WHEEL = "pkg-1.0-cp311-abi3-manylinux2014_x86_64.whl"


def _layer(root: Path, needs: tuple[str, ...], **link: str) -> Path:
    compile_linked_object(root / EXTENSION, needs, **link)
    return root


def _errors(root: Path, target: Target, **kwargs: object) -> list[tuple[str, str]]:
    report = audit_tree(root, target, {EXTENSION: WHEEL}, **kwargs)  # type: ignore[arg-type]
    return [(f.code, f.message) for f in report.errors]


def test_a_library_neither_bundled_nor_in_the_runtime_fails_naming_library_object_and_distribution(
    tmp_path: Path,
) -> None:
    root = _layer(tmp_path, ("libmadeup.so.3", "libz.so.1", "libstdc++.so.6"))
    report = audit_tree(root, PY311, {EXTENSION: WHEEL})
    [finding] = report.errors
    assert finding.code == "system-library" and finding.path == EXTENSION and finding.origin == WHEEL
    assert finding.message.startswith(f"libmadeup.so.3 is needed by {EXTENSION} (from pkg)")
    assert '"libmadeup.so.3: cannot open shared object file"' in finding.message
    assert "python3.11 runtime (Amazon Linux 2, x86_64)" in finding.message
    assert "lib/ folder" in finding.fix and "[audit] system_libraries" in finding.fix
    with pytest.raises(AuditError) as raised:
        report.raise_for_errors()
    assert raised.value.exit_code == 1 and "libmadeup.so.3" in str(raised.value)


def test_found_in_the_layer_by_runpath_by_lib_folder_or_by_a_soname_the_layer_answers_to(
    tmp_path: Path,
) -> None:
    by_runpath = _layer(tmp_path / "a", ("libmadeup.so.3",), runpath="$ORIGIN/../pkg.libs")
    compile_linked_object(by_runpath / "python/pkg.libs/libmadeup.so.3", ())
    assert _errors(by_runpath, PY311) == []

    in_lib = _layer(tmp_path / "b", ("libmadeup.so.3",))
    compile_linked_object(in_lib / "lib/libmadeup.so.3", ())  # /opt/lib is on LD_LIBRARY_PATH
    assert _errors(in_lib, PY311) == []

    # numpy.libs' copy answers to the name that scipy's RUNPATH folder no longer has (shared copies).
    by_soname = _layer(tmp_path / "c", ("libmadeup.so.3",), runpath="$ORIGIN/../pkg.libs")
    compile_linked_object(by_soname / "python/other.libs/libmadeup-1a2b.so", (), soname="libmadeup.so.3")
    assert _errors(by_soname, PY311) == []


def test_a_file_the_loader_never_looks_at_does_not_count(tmp_path: Path) -> None:
    # Same file name, but neither on the object's RUNPATH nor in lib/, and with another SONAME.
    root = _layer(tmp_path, ("libmadeup.so.3",), runpath="$ORIGIN/../pkg.libs")
    compile_linked_object(root / "python/elsewhere/libmadeup.so.3", (), soname="libother.so.1")
    assert [code for code, _ in _errors(root, PY311)] == ["system-library"]
    # A RUNPATH of the machine that built the wheel is not a folder on Lambda.
    absolute = _layer(tmp_path / "abs", ("libmadeup.so.3",), runpath=str(tmp_path / "abs/python/pkg.libs"))
    compile_linked_object(absolute / "python/pkg.libs/libmadeup.so.3", (), soname="libother.so.1")
    assert [code for code, _ in _errors(absolute, PY311)] == ["system-library"]


def test_another_layer_or_a_declaration_provides_it(tmp_path: Path) -> None:
    root = _layer(tmp_path / "layer", ("libmadeup.so.3",))
    other = tmp_path / "other"
    compile_linked_object(other / "lib/libmadeup-9.so", (), soname="libmadeup.so.3")
    assert library_names(other) == {"libmadeup-9.so", "libmadeup.so.3"}
    assert _errors(root, PY311, provided=library_names(other)) == []
    assert _errors(root, PY311, provided=["libmadeup.so.3"]) == []
    assert len(_errors(root, PY311, provided=["libmadeup.so.2"])) == 1


def test_the_table_is_per_runtime_family(tmp_path: Path) -> None:
    # glib is in the python3.12 image (AL2023) and not in Amazon Linux 2's Lambda environment;
    # libGL is in neither.
    root = _layer(tmp_path, ("libglib-2.0.so.0",))
    assert [code for code, _ in _errors(root, PY311)] == ["system-library"]
    assert _errors(root, PY312) == []
    assert "libGL.so.1" not in runtime_libraries(PY312) | runtime_libraries(PY311)
    for target in (PY311, PY312, Target("python3.12", "arm64"), Target("python3.9", "arm64")):
        assert {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1"} <= (
            runtime_libraries(target)
        )
    assert "ld-linux-aarch64.so.1" in runtime_libraries(Target("python3.12", "arm64"))
    assert "ld-linux-aarch64.so.1" not in runtime_libraries(PY312)


def test_opencv_python_is_told_to_use_the_headless_wheel(tmp_path: Path) -> None:
    compile_linked_object(tmp_path / "python/cv2/cv2.abi3.so", ("libGL.so.1",))
    wheel = "opencv_python-4.10.0.84-cp37-abi3-manylinux_2_17_x86_64.whl"
    report = audit_tree(tmp_path, PY312, {"python/cv2/cv2.abi3.so": wheel})
    [finding] = report.errors
    assert "libGL.so.1 is needed by python/cv2/cv2.abi3.so (from opencv-python)" in finding.message
    assert finding.fix.startswith("use opencv-python-headless instead of opencv-python")


def test_one_finding_per_object_names_all_it_misses(tmp_path: Path) -> None:
    root = _layer(tmp_path, ("libGL.so.1", "libz.so.1", "libX11.so.6", "libxcb.so.1"))
    [finding] = audit_tree(root, PY311, {EXTENSION: WHEEL}).errors
    assert finding.message.startswith(
        f"libGL.so.1, libX11.so.6 and libxcb.so.1 are needed by {EXTENSION} (from pkg), but neither the "
        "layer nor the python3.11 runtime (Amazon Linux 2, x86_64) has them: on Lambda the import fails "
        'with "libGL.so.1: cannot open shared object file"'
    )
    assert finding.fix.startswith("ship them (and what they need) in a layer's lib/ folder")


def test_a_dynamic_section_read_once_is_remembered_until_the_file_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build reads each shared object's dynamic section for its load proof and again for the
    verification cache: the second read of the same file is remembered, and a file put in its place (as
    a rewrite by rename does) is read anew."""
    path = compile_linked_object(tmp_path / "libone.so", ("libfirst.so.1",), soname="libone.so")
    first = needed.read_dynamic(path)
    assert first is not None and first.needed[0] == "libfirst.so.1"
    reads: list[object] = []
    real = needed.mapped_file
    monkeypatch.setattr(needed, "mapped_file", lambda p: reads.append(p) or real(p))
    assert needed.read_dynamic(path) is first
    assert reads == []
    other = compile_linked_object(tmp_path / "other.so", ("libsecond.so.2",), soname="libone.so")
    os.replace(other, path)
    assert needed.read_dynamic(path).needed[0] == "libsecond.so.2"  # type: ignore[union-attr]
    assert reads == [path]
