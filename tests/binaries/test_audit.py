"""The static audit, on real shared objects compiled here and on hand-made PE and Mach-O headers."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerforge.binaries.audit import AuditReport, Finding, audit_tree
from layerforge.binaries.binfmt import EM_AARCH64, sniff
from layerforge.errors import AuditError
from layerforge.target import Target

PY311 = Target("python3.11", "x86_64")
PY312 = Target("python3.12", "x86_64")
ARM311 = Target("python3.11", "arm64")

SKLEARN_312_LINUX = "scikit_learn-1.5.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
SKLEARN_312_WINDOWS = "scikit_learn-1.5.0-cp312-cp312-win_amd64.whl"
DEMO_WHEEL = "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"

STRLEN_C = "#include <string.h>\nsize_t demo_len(const char *s) { return strlen(s); }\n"
PTHREAD_C = """#include <pthread.h>
static void *run(void *arg) { return arg; }
int demo_thread(void) { pthread_t t; return pthread_create(&t, 0, run, 0); }
"""


@dataclass(frozen=True)
class Objects:
    strlen: bytes  # needs only GLIBC_2.2.5
    pthread: bytes  # pthread_create@GLIBC_2.34 on glibc >= 2.34
    aarch64: bytes  # the strlen object with e_machine rewritten to EM_AARCH64
    pe: bytes
    macho: bytes


def _host_glibc() -> tuple[int, ...]:
    version = (os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0").split()[-1]
    return tuple(int(part) for part in version.split("."))


def _compile(source: str, out: Path) -> bytes:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def _fake_pe() -> bytes:
    # DOS header whose e_lfanew (offset 0x3C) points at "PE\0\0" and an AMD64 COFF header.
    dos = bytearray(b"MZ" + bytes(0x7E))
    struct.pack_into("<I", dos, 0x3C, 0x80)
    return bytes(dos) + b"PE\x00\x00" + struct.pack("<HH", 0x8664, 1) + bytes(16)


def _fake_macho() -> bytes:
    # mach_header_64 of an arm64 MH_BUNDLE, the kind of file a macOS extension module is.
    return struct.pack("<IiiIIII", 0xFEEDFACF, 0x0100000C, 0, 8, 0, 0, 0) + bytes(4)


@pytest.fixture(scope="session")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile the test shared objects")
    if _host_glibc() < (2, 34):
        pytest.skip("pthread_create is versioned GLIBC_2.34 only on glibc 2.34 and newer")
    folder = tmp_path_factory.mktemp("audit-objects")
    strlen = _compile(STRLEN_C, folder / "strlen.so")
    aarch64 = bytearray(strlen)
    struct.pack_into("<H", aarch64, 18, EM_AARCH64)
    return Objects(
        strlen, _compile(PTHREAD_C, folder / "pthread.so"), bytes(aarch64), _fake_pe(), _fake_macho()
    )


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _only(report: AuditReport) -> Finding:
    assert len(report.findings) == 1, [f.describe() for f in report.findings]
    return report.findings[0]


# --- a clean layer --------------------------------------------------------------------------------


def test_clean_cp311_x86_64_tree_passes(objects: Objects, tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "python/demo/__init__.py": b"from ._ext import demo_len\n",
            "python/demo/_ext.cpython-311-x86_64-linux-gnu.so": objects.strlen,
            "python/demo/_limited.abi3.so": objects.strlen,
            "python/demo/plain.so": objects.strlen,
            "python/demo/README.md": b"MZ is just two letters here\n",
            "python/demo-1.0.dist-info/RECORD": b"",
        },
    )
    (root / "python/demo/link.so").symlink_to("plain.so")

    report = audit_tree(root, PY311, {"python/demo/_ext.cpython-311-x86_64-linux-gnu.so": DEMO_WHEEL})

    assert report.findings == ()
    assert report.ok
    assert report.shared_objects == 3  # the symlink is not followed
    assert dict(report.machines) == {"x86_64": 3}
    assert report.max_glibc == (2, 2)  # GLIBC_2.2.5
    report.raise_for_errors()  # does not raise


def test_elf_is_found_by_magic_not_by_name(objects: Objects, tmp_path: Path) -> None:
    root = _tree(tmp_path, {"python/demo/libhelper.bin": objects.aarch64})
    finding = _only(audit_tree(root, PY311))
    assert (finding.code, finding.path) == ("elf-machine", "python/demo/libhelper.bin")


# --- the seed guide's Error 3 and Error 4 ---------------------------------------------------------


def test_guide_error_4_cp312_binary_in_a_cp311_layer(objects: Objects, tmp_path: Path) -> None:
    rel = "python/sklearn/__check_build/_check_build.cpython-312-x86_64-linux-gnu.so"
    root = _tree(tmp_path, {rel: objects.strlen, "python/sklearn/__init__.py": b""})

    report = audit_tree(root, PY311, {rel: SKLEARN_312_LINUX})

    finding = _only(report)
    assert (finding.severity, finding.code, finding.path, finding.origin) == (
        "error",
        "abi-tag",
        rel,
        SKLEARN_312_LINUX,
    )
    assert finding.message.startswith("python3.12 extension in a python3.11 layer")
    assert "No module named" in finding.message
    assert "`layerforge build RECIPE --runtime python3.12`" in finding.fix
    assert "pin a wheel built for cp311" in finding.fix
    with pytest.raises(AuditError) as caught:
        report.raise_for_errors()
    assert caught.value.exit_code == 1
    assert rel in str(caught.value) and SKLEARN_312_LINUX in str(caught.value)
    assert "--runtime python3.12" in str(caught.value)


def test_guide_error_3_windows_pyd_in_the_layer(objects: Objects, tmp_path: Path) -> None:
    rel = "python/sklearn/__check_build/_check_build.cp312-win_amd64.pyd"
    root = _tree(tmp_path, {rel: objects.pe, "python/sklearn/__check_build/__init__.py": b""})

    finding = _only(audit_tree(root, PY311, {rel: SKLEARN_312_WINDOWS}))

    assert (finding.severity, finding.code, finding.path, finding.origin) == (
        "error",
        "windows-binary",
        rel,
        SKLEARN_312_WINDOWS,
    )
    assert "Windows extension module (built for Python 3.12 on win_amd64)" in finding.message
    assert "layerforge build RECIPE --runtime python3.11 --arch x86_64" in finding.fix
    assert "manylinux wheels, never a win_amd64 wheel" in finding.fix


def test_a_pyd_is_windows_even_without_a_pe_header(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"python/pkg/_speedups.pyd": b"not really a binary"})
    finding = _only(audit_tree(root, PY311))
    assert (finding.severity, finding.code, finding.origin) == ("error", "windows-binary", None)


def test_pe_in_a_windows_wheel_is_an_error_in_a_pure_wheel_a_warning(
    objects: Objects, tmp_path: Path
) -> None:
    root = _tree(
        tmp_path,
        {"python/numpy.libs/libopenblas.dll": objects.pe, "python/setuptools/cli-64.exe": objects.pe},
    )
    origins = {
        "python/numpy.libs/libopenblas.dll": "numpy-2.2.6-cp311-cp311-win_amd64.whl",
        "python/setuptools/cli-64.exe": "setuptools-80.0.0-py3-none-any.whl",
    }

    report = audit_tree(root, PY311, origins)

    assert [(f.path, f.severity, f.code) for f in report.findings] == [
        ("python/numpy.libs/libopenblas.dll", "error", "windows-binary"),
        ("python/setuptools/cli-64.exe", "warning", "windows-binary"),
    ]
    assert "remove it with a `[strip] remove` rule" in report.warnings[0].fix


def test_mz_without_a_pe_signature_is_not_windows(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"python/pkg/data.bin": b"MZ" + bytes(200)})
    assert audit_tree(root, PY311).findings == ()


# --- macOS ----------------------------------------------------------------------------------------


def test_macos_extension_module_is_one_error(objects: Objects, tmp_path: Path) -> None:
    rel = "python/markupsafe/_speedups.cpython-311-darwin.so"
    wheel = "markupsafe-3.0.2-cp311-cp311-macosx_11_0_arm64.whl"
    root = _tree(tmp_path, {rel: objects.macho})

    finding = _only(audit_tree(root, PY311, {rel: wheel}))

    assert (finding.severity, finding.code, finding.origin) == ("error", "macos-binary", wheel)
    assert "macOS extension module" in finding.message
    assert "never a macosx wheel" in finding.fix


@pytest.mark.parametrize(
    "magic",
    [
        b"\xfe\xed\xfa\xce",
        b"\xce\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe\x00\x00\x00\x02",
        b"\xbe\xba\xfe\xca\x02\x00\x00\x00",
    ],
)
def test_every_mach_o_magic_is_recognised(magic: bytes, tmp_path: Path) -> None:
    root = _tree(tmp_path, {"python/pkg/_native.so": magic + bytes(28)})
    assert _only(audit_tree(root, PY311)).code == "macos-binary"


def test_a_java_class_file_is_not_a_fat_mach_o(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"python/pkg/Hello.class": b"\xca\xfe\xba\xbe\x00\x00\x00\x41" + bytes(24)})
    assert audit_tree(root, PY311).findings == ()


def test_dylib_from_a_macos_wheel_is_an_error(objects: Objects, tmp_path: Path) -> None:
    rel = "python/pkg/.dylibs/libomp.dylib"
    root = _tree(tmp_path, {rel: objects.macho})
    finding = _only(audit_tree(root, PY311, {rel: "pkg-1.0-cp311-cp311-macosx_12_0_arm64.whl"}))
    assert (finding.severity, finding.code) == ("error", "macos-binary")


# --- architectures --------------------------------------------------------------------------------


def test_arm64_target_flags_x86_64_objects_and_accepts_aarch64(objects: Objects, tmp_path: Path) -> None:
    x86 = "python/demo/_ext.cpython-311-x86_64-linux-gnu.so"
    arm = "python/demo/_other.cpython-311-aarch64-linux-gnu.so"
    root = _tree(tmp_path, {x86: objects.strlen, arm: objects.aarch64})

    report = audit_tree(root, ARM311, {x86: DEMO_WHEEL})

    finding = _only(report)  # one problem, one finding: no second one about the tag's arch
    assert (finding.severity, finding.code, finding.path, finding.origin) == (
        "error",
        "elf-machine",
        x86,
        DEMO_WHEEL,
    )
    assert "built for x86_64, but the layer targets arm64 (aarch64)" in finding.message
    assert "`layerforge build RECIPE --arch arm64`" in finding.fix
    assert dict(report.machines) == {"aarch64": 1, "x86_64": 1}


def test_x86_64_target_flags_aarch64_objects(objects: Objects, tmp_path: Path) -> None:
    rel = "python/demo/_ext.cpython-311-aarch64-linux-gnu.so"
    finding = _only(audit_tree(_tree(tmp_path, {rel: objects.aarch64}), PY311))
    assert (finding.code, finding.path) == ("elf-machine", rel)
    assert "built for aarch64" in finding.message


def test_32_bit_elf_is_rejected(objects: Objects, tmp_path: Path) -> None:
    elf32 = bytearray(objects.strlen)
    elf32[4] = 1  # EI_CLASS = ELFCLASS32
    finding = _only(audit_tree(_tree(tmp_path, {"python/demo/old.so": bytes(elf32)}), PY311))
    assert (finding.severity, finding.code) == ("error", "elf-class")
    assert "32-bit little-endian" in finding.message


# --- ABI tags in file names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target", "words"),
    [
        ("_x.cpython-311-aarch64-linux-gnu.so", PY311, "tagged for aarch64"),
        ("_x.cpython-311-x86_64-linux-musl.so", PY311, "musl"),
        ("_x.cpython-313t-x86_64-linux-gnu.so", Target("python3.13"), "free-threaded"),
        ("_x.cpython-311-x86_64-linux-gnu.so", PY312, "python3.11 extension in a python3.12 layer"),
        ("_x.pypy310-pp73-x86_64-linux-gnu.so", PY311, "PyPy"),
    ],
)
def test_wrong_abi_tags(objects: Objects, tmp_path: Path, name: str, target: Target, words: str) -> None:
    finding = _only(audit_tree(_tree(tmp_path, {f"python/demo/{name}": objects.strlen}), target))
    assert (finding.severity, finding.code) == ("error", "abi-tag")
    assert words in finding.message


def test_an_unavailable_runtime_is_not_suggested(objects: Objects, tmp_path: Path) -> None:
    finding = _only(
        audit_tree(_tree(tmp_path, {"python/x/_x.cpython-38-x86_64-linux-gnu.so": objects.strlen}), PY311)
    )
    assert "--runtime python3.8" not in finding.fix
    assert "--runtime python3.11`, which picks cp311 wheels" in finding.fix


# --- GLIBC symbol versions ------------------------------------------------------------------------


def test_glibc_2_34_object_fits_python312_but_not_python311(objects: Objects, tmp_path: Path) -> None:
    rel = "python/demo/_threads.cpython-312-x86_64-linux-gnu.so"
    wheel = "demo-1.0-cp312-cp312-manylinux_2_34_x86_64.whl"
    root = _tree(tmp_path, {rel: objects.pthread})

    on_312 = audit_tree(root, PY312, {rel: wheel})
    assert on_312.findings == ()
    assert on_312.max_glibc == (2, 34)

    on_311 = audit_tree(root, PY311, {rel: wheel})
    glibc = [f for f in on_311.findings if f.code == "glibc-too-new"]
    assert [f.code for f in on_311.findings] == ["abi-tag", "glibc-too-new"]
    assert "needs GLIBC_2.34 (for pthread_create)" in glibc[0].message
    assert "Amazon Linux 2 with glibc 2.26" in glibc[0].message
    assert "pin an older release of demo" in glibc[0].fix
    assert "python3.12, python3.13, python3.14" in glibc[0].fix


def test_glibc_check_on_a_version_neutral_name(objects: Objects, tmp_path: Path) -> None:
    finding = _only(audit_tree(_tree(tmp_path, {"python/demo/libthreads.so": objects.pthread}), PY311))
    assert (finding.severity, finding.code, finding.origin) == ("error", "glibc-too-new", None)


# --- damaged files --------------------------------------------------------------------------------


def test_truncated_elf_is_a_warning_not_a_crash(objects: Objects, tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {"python/demo/stub.so": b"\x7fELF\x02", "python/demo/cut.so": objects.strlen[:200]},
    )
    report = audit_tree(root, PY311)
    assert [(f.path, f.severity, f.code) for f in report.findings] == [
        ("python/demo/cut.so", "warning", "elf-unreadable"),
        ("python/demo/stub.so", "warning", "elf-unreadable"),
    ]
    report.raise_for_errors()  # warnings never fail a build


# --- reporting ------------------------------------------------------------------------------------


def test_report_serialises_to_json(objects: Objects, tmp_path: Path) -> None:
    rel = "python/sklearn/__check_build/_check_build.cp312-win_amd64.pyd"
    report = audit_tree(
        _tree(tmp_path, {rel: objects.pe, "python/a.so": objects.strlen}), PY311, {rel: SKLEARN_312_WINDOWS}
    )
    data = json.loads(json.dumps(report.as_dict()))
    assert data["ok"] is False
    assert data["machines"] == {"x86_64": 1}
    assert data["max_glibc"] == "2.2"
    assert data["findings"][0] == report.findings[0].as_dict()
    assert set(data["findings"][0]) == {"severity", "code", "path", "origin", "message", "fix"}


def test_findings_are_in_sorted_path_order(objects: Objects, tmp_path: Path) -> None:
    names = ["b/z.pyd", "a/y.pyd", "a/b/x.pyd", "a/a.pyd"]
    report = audit_tree(_tree(tmp_path, dict.fromkeys(names, objects.pe)), PY311)
    assert [f.path for f in report.findings] == ["a/a.pyd", "a/b/x.pyd", "a/y.pyd", "b/z.pyd"]


def test_empty_and_tiny_files_are_not_binaries(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"python/pkg/empty.so": b"", "python/pkg/z.so": b"\x7f", "python/pkg/m": b"MZ"})
    assert sniff(root / "python/pkg/empty.so").kind == "other"
    assert audit_tree(root, PY311).findings == ()
