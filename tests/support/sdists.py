# ruff: noqa: E501 - the backend below is the text of a file that runs inside the container
"""Source distributions buildable offline by real pip: one with a C extension, one of pure Python.

Each sdist carries its own PEP 517 backend (`backend-path`), so pip's isolated build needs nothing from
an index: it imports the backend from the unpacked sdist. The C one compiles its extension with gcc
against the Python headers of wherever it is built (the container, or the host when a test wants the
host build refused) and writes the wheel. Entries and timestamps are fixed (SOURCE_DATE_EPOCH), so the
same environment builds the same bytes.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping, Sequence
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
    return write_wheel(wheel_directory, "%s-%s-%s.whl" % (NAME, VERSION, _tag()), files, dist_info, stamp)
"""

# Appended to each backend: RECORD, then every entry sorted, with one time stamp and one mode.
_WRITE_WHEEL = r"""

def write_wheel(wheel_directory, wheel_name, files, dist_info, stamp):
    import base64, hashlib, os, zipfile

    record = []
    for path, data in sorted(files.items()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    record.append(dist_info + "/RECORD,,")
    files[dist_info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, stamp)
            info.external_attr = 0o644 << 16
            wheel.writestr(info, files[path])
    return wheel_name
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
    return _sdist(
        directory,
        name,
        version,
        {
            "backend.py": _BACKEND.format(name=name, version=version) + _WRITE_WHEEL,
            f"{name}.c": _SOURCE.format(name=name, answer=answer),
        },
    )


# A backend as hatchling or flit writes a pure wheel: the files as they are, SOURCE_DATE_EPOCH (else now)
# on every entry. `stamp_now` puts the build's time into a module (a build that is not reproducible);
# `record_env` writes what the build saw of its environment into the wheel, for the tests to read.
_PURE_BACKEND = r"""
import json, os, time

CONFIG = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json")))


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version = CONFIG["name"], CONFIG["version"]
    if CONFIG["sentinel"]:
        open(CONFIG["sentinel"], "a").write("built %s %s\n" % (name, version))
    stamp = time.gmtime(max(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())), 315532800))[:6]
    files = {path: text.encode() for path, text in CONFIG["files"].items()}
    if CONFIG["stamp_now"]:
        files[name + "/_stamp.py"] = ("BUILT_AT = %d\n" % time.time_ns()).encode()
    if CONFIG["record_env"]:
        seen = {"HOME": os.environ.get("HOME"), "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH"),
                "PIP": sorted(k for k in os.environ if k.startswith("PIP_") and k != "PIP_NO_INPUT"),
                "umask": os.umask(0o022)}
        files[name + "/_build_env.json"] = json.dumps(seen).encode()
    dist_info = "%s-%s.dist-info" % (name, version)
    metadata = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
    metadata += "".join("Requires-Dist: %s\n" % r for r in CONFIG["requires"])
    files[dist_info + "/METADATA"] = metadata.encode()
    files[dist_info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: in-tree\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return write_wheel(wheel_directory, "%s-%s-py3-none-any.whl" % (name, version), files, dist_info, stamp)
"""


def pure_python_sdist(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, str],
    *,
    requires: Sequence[str] = (),
    stamp_now: bool = False,
    record_env: bool = False,
    build_requires: Sequence[str] = (),
    sentinel: Path | None = None,
) -> Path:
    """`<name>-<version>.tar.gz` in directory, of pure Python: its wheel holds `files`, as they are.

    `build_requires` go into pyproject.toml's build-system table (pip installs them before the build);
    `sentinel` is a file the build appends to, so a test can tell whether the build ran.
    """
    config = {
        "sentinel": str(sentinel) if sentinel else None,
        "name": name,
        "version": version,
        "files": dict(files),
        "requires": list(requires),
        "stamp_now": stamp_now,
        "record_env": record_env,
    }
    return _sdist(
        directory,
        name,
        version,
        {"backend.py": _PURE_BACKEND + _WRITE_WHEEL, "config.json": json.dumps(config)},
        build_requires,
    )


def _sdist(
    directory: Path, name: str, version: str, sources: Mapping[str, str], build_requires: Sequence[str] = ()
) -> Path:
    root = f"{name}-{version}"
    members = {
        f"{root}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{root}/pyproject.toml": (
            f'[build-system]\nrequires = {json.dumps(list(build_requires))}\nbuild-backend = "backend"\n'
            'backend-path = ["."]\n'
        ),
        **{f"{root}/{path}": text for path, text in sources.items()},
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
