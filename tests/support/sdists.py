# ruff: noqa: E501 - the backend below is the text of a file that runs inside the container
"""Source distributions with a C extension, buildable offline by real pip in a real container.

The sdist carries its own PEP 517 backend (`backend-path`), so pip's isolated build needs nothing from an
index: it imports the backend from the unpacked sdist, and the backend compiles the extension with the
container's gcc against the container's Python headers and writes the wheel. Entries and timestamps are
fixed (SOURCE_DATE_EPOCH), so the same image builds the same bytes.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

_BACKEND = r"""
import base64, hashlib, os, subprocess, sys, sysconfig, tempfile, zipfile

NAME, VERSION = "{name}", "{version}"


def _tag():
    impl = "cp%d%d" % sys.version_info[:2]
    return "%s-%s-%s" % (impl, impl, sysconfig.get_platform().replace("-", "_").replace(".", "_"))


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    stamp = __import__("time").gmtime(max(epoch, 315532800))[:6]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    with tempfile.TemporaryDirectory() as work:
        built = os.path.join(work, NAME + suffix)
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-g0", "-I", sysconfig.get_paths()["include"],
             "-o", built, os.path.join(os.path.dirname(__file__), NAME + ".c")],
            check=True,
        )
        dist_info = "%s-%s.dist-info" % (NAME, VERSION)
        files = {{
            NAME + suffix: open(built, "rb").read(),
            dist_info + "/METADATA": ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (NAME, VERSION)).encode(),
            dist_info + "/WHEEL": ("Wheel-Version: 1.0\nGenerator: in-tree\nRoot-Is-Purelib: false\nTag: %s\n" % _tag()).encode(),
        }}
        record = []
        for path, data in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
        record.append(dist_info + "/RECORD,,")
        files[dist_info + "/RECORD"] = ("\n".join(record) + "\n").encode()
        name = "%s-%s-%s.whl" % (NAME, VERSION, _tag())
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as wheel:
            for path in sorted(files):
                info = zipfile.ZipInfo(path, stamp)
                info.external_attr = 0o644 << 16
                wheel.writestr(info, files[path])
    return name
"""

_SOURCE = r"""
#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *args) {{ return PyLong_FromLong({answer}); }}
static PyMethodDef methods[] = {{{{"answer", answer, METH_NOARGS, NULL}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, methods}};
PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&module); }}
"""


def c_extension_sdist(directory: Path, name: str, version: str, *, answer: int = 42) -> Path:
    """`<name>-<version>.tar.gz` in directory: one C extension module `name` whose answer() is `answer`."""
    root = f"{name}-{version}"
    members = {
        f"{root}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{root}/pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        ),
        f"{root}/backend.py": _BACKEND.format(name=name, version=version),
        f"{root}/{name}.c": _SOURCE.format(name=name, answer=answer),
    }
    path = directory / f"{root}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member, text in sorted(members.items()):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), 315532800, 0o644
            archive.addfile(info, io.BytesIO(data))
    directory.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path
