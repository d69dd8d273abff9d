"""The offline test index, the wheel factory and the ELF helpers do what they claim.

The resolver runs for real: pip, against a PEP 503 index on 127.0.0.1, isolated from the
host's pip configuration.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import importlib.metadata
import json
import os
import stat
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from packaging.version import Version

from tests.support import elf
from tests.support.index import LocalIndex, offline_pip_env
from tests.support.wheelfactory import RawEntry, build_wheel, expand_tag, symlink

# glibc 2.26 (the Lambda python3.11 runtime's): manylinux_2_26 down to manylinux_2_17 and its alias.
GLIBC_226_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(26, 16, -1)] + [
    "manylinux2014_x86_64"
]
GLIBC_228_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", *GLIBC_226_PLATFORMS]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def _pip_resolve(
    index_url: str,
    platforms: Sequence[str],
    requirements: Sequence[str],
    work: Path,
    *,
    check: bool = True,
    extra_args: Sequence[str] = ("--disable-pip-version-check",),
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """pip as layerforge runs it: dry run, a report, binary wheels for the target, this index only."""
    report = work / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        *extra_args,
        "--report",
        str(report),
        "--target",
        str(work / "target"),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        "3.11",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for platform in platforms:
        cmd += ["--platform", platform]
    cmd += ["--index-url", index_url, *requirements]
    proc = subprocess.run(cmd, env=offline_pip_env(), capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text()) if report.exists() else {}
    return proc, data


def _picked(report: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """name -> (version, url, sha256) of each distribution pip chose."""
    return {
        item["metadata"]["name"]: (
            item["metadata"]["version"],
            item["download_info"]["url"],
            item["download_info"]["archive_info"]["hashes"]["sha256"],
        )
        for item in report["install"]
    }


@pytest.fixture()
def fastlib_index(local_index: LocalIndex) -> LocalIndex:
    local_index.add_wheel("demo", "1.0")
    local_index.add_wheel("fastlib", "1.0", "cp311-cp311-manylinux2014_x86_64")
    local_index.add_wheel("fastlib", "2.0", "cp311-cp311-manylinux_2_28_x86_64")
    return local_index


# -- the real resolver against the index ---------------------------------------------------------


@pytest.mark.parametrize(
    ("platforms", "fastlib_version", "fastlib_file"),
    [
        (GLIBC_226_PLATFORMS, "1.0", "fastlib-1.0-cp311-cp311-manylinux2014_x86_64.whl"),
        (GLIBC_228_PLATFORMS, "2.0", "fastlib-2.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
    ],
    ids=["glibc-2.26", "glibc-2.28"],
)
def test_pip_picks_the_newest_wheel_the_glibc_allows(
    fastlib_index: LocalIndex,
    tmp_path: Path,
    platforms: list[str],
    fastlib_version: str,
    fastlib_file: str,
) -> None:
    _, report = _pip_resolve(fastlib_index.url, platforms, ["fastlib", "demo"], tmp_path)

    picked = _picked(report)
    assert picked == {
        "fastlib": (
            fastlib_version,
            fastlib_index.file_url(fastlib_file),
            fastlib_index.sha256(fastlib_file),
        ),
        "demo": (
            "1.0",
            fastlib_index.file_url("demo-1.0-py3-none-any.whl"),
            fastlib_index.sha256("demo-1.0-py3-none-any.whl"),
        ),
    }
    # Exactly what the resolver needed, from this index and nothing else (no host find-links).
    assert fastlib_index.hits("/simple/fastlib/") == 1
    assert fastlib_index.hits("/simple/demo/") == 1
    assert sorted(fastlib_index.downloads()) == sorted([fastlib_file, "demo-1.0-py3-none-any.whl"])
    assert fastlib_index.bytes_served(fastlib_file) == (fastlib_index.wheel_dir / fastlib_file).stat().st_size
    assert {r.path for r in fastlib_index.requests} == {
        "/simple/fastlib/",
        "/simple/demo/",
        f"/files/{fastlib_file}",
        "/files/demo-1.0-py3-none-any.whl",
    }
    assert not (tmp_path / "target").exists(), "a dry run installs nothing"


def test_pip_without_version_check_flag_asks_the_index_about_pip(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    # offline_pip_env drops PIP_DISABLE_PIP_VERSION_CHECK with the rest of PIP_*: a resolver that
    # must touch only the user's packages has to pass --disable-pip-version-check itself.
    local_index.add_wheel("demo", "1.0")
    # A cache of its own: pip asks at most once a week per environment, and remembers it in its cache.
    fresh_cache = ("--cache-dir", str(tmp_path / "pip-cache"))
    _pip_resolve(local_index.url, GLIBC_226_PLATFORMS, ["demo"], tmp_path, extra_args=fresh_cache)
    assert local_index.hits("/simple/pip/") == 1


def test_pip_dry_run_reads_pep658_metadata_instead_of_wheels(
    fastlib_index: LocalIndex, tmp_path: Path
) -> None:
    if Version(importlib.metadata.version("pip")) < Version("24"):
        pytest.skip("this pip downloads whole wheels in a dry run even when metadata is served")
    fastlib_index.serve_metadata = True
    _, report = _pip_resolve(fastlib_index.url, GLIBC_226_PLATFORMS, ["fastlib", "demo"], tmp_path)
    assert {name: v[0] for name, v in _picked(report).items()} == {"fastlib": "1.0", "demo": "1.0"}
    assert fastlib_index.downloads() == [
        "fastlib-1.0-cp311-cp311-manylinux2014_x86_64.whl.metadata",
        "demo-1.0-py3-none-any.whl.metadata",
    ]


def test_pip_honours_requires_python_from_the_index(local_index: LocalIndex, tmp_path: Path) -> None:
    local_index.add_wheel("modern", "1.0", requires_python=">=3.8")
    local_index.add_wheel("modern", "2.0", requires_python=">=3.12")

    status, body, _ = _get(local_index.project_url("modern"))
    assert status == 200
    assert b'data-requires-python="&gt;=3.12"' in body
    assert b'data-requires-python="&gt;=3.8"' in body

    _, report = _pip_resolve(local_index.url, GLIBC_226_PLATFORMS, ["modern"], tmp_path)
    assert _picked(report)["modern"][0] == "1.0"
    assert local_index.downloads() == ["modern-1.0-py3-none-any.whl"]


def test_pip_fails_on_a_truncated_download(fastlib_index: LocalIndex, tmp_path: Path) -> None:
    fastlib_index.truncate("demo-1.0-py3-none-any.whl", 100)
    proc, _ = _pip_resolve(fastlib_index.url, GLIBC_226_PLATFORMS, ["demo"], tmp_path, check=False)
    assert proc.returncode != 0
    sent = [r.bytes_sent for r in fastlib_index.requests if r.path == "/files/demo-1.0-py3-none-any.whl"]
    assert sent and all(n == 100 for n in sent)


def test_pip_rejects_a_wheel_whose_advertised_hash_lies(fastlib_index: LocalIndex, tmp_path: Path) -> None:
    fastlib_index.fake_hash("demo-1.0-py3-none-any.whl", "0" * 64)
    proc, _ = _pip_resolve(fastlib_index.url, GLIBC_226_PLATFORMS, ["demo"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "HASHES" in proc.stderr.upper() or "hash" in proc.stderr


def test_offline_pip_env_drops_the_hosts_pip_settings() -> None:
    env = offline_pip_env(
        {"PIP_FIND_LINKS": "/opt/wheels", "pip_index_url": "http://mirror", "HOME": "/h", "NO_PROXY": "x"}
    )
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert [k for k in env if k.upper().startswith("PIP_")] == ["PIP_CONFIG_FILE"]
    assert env["HOME"] == "/h"
    assert env["NO_PROXY"].split(",") == ["x", "127.0.0.1", "localhost"]


# -- the server itself ---------------------------------------------------------------------------


def test_root_and_project_pages(fastlib_index: LocalIndex) -> None:
    status, body, headers = _get(fastlib_index.url)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'<a href="demo/">demo</a>' in body
    assert b'<a href="fastlib/">fastlib</a>' in body

    status, body, _ = _get(fastlib_index.project_url("fastlib"))
    assert status == 200
    for filename in (
        "fastlib-1.0-cp311-cp311-manylinux2014_x86_64.whl",
        "fastlib-2.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    ):
        link = f'href="../../files/{filename}#sha256={fastlib_index.sha256(filename)}"'
        assert link.encode() in body
    assert b"demo-1.0" not in body
    assert b"data-requires-python" not in body

    assert _get(fastlib_index.project_url("nothing"))[0] == 404
    assert fastlib_index.hits("/simple/nothing/") == 1


def test_non_normalized_project_names_redirect(local_index: LocalIndex) -> None:
    local_index.add_wheel("Foo.Bar_baz", "1.0")
    assert (local_index.wheel_dir / "foo_bar_baz-1.0-py3-none-any.whl").is_file()
    status, body, _ = _get(f"{local_index.url}Foo.Bar_baz")
    assert status == 200
    assert b"foo_bar_baz-1.0-py3-none-any.whl" in body
    assert [(r.path, r.status) for r in local_index.requests] == [
        ("/simple/Foo.Bar_baz", 301),
        ("/simple/foo-bar-baz/", 200),
    ]


def test_files_full_head_and_ranges(local_index: LocalIndex) -> None:
    wheel = local_index.add_wheel("demo", "1.0")
    data = wheel.read_bytes()
    url = local_index.file_url(wheel.name)

    status, body, headers = _get(url)
    assert (status, body, headers["Accept-Ranges"]) == (200, data, "bytes")

    status, body, headers = _get(url, method="HEAD")
    assert (status, body, int(headers["Content-Length"])) == (200, b"", len(data))

    status, body, headers = _get(url, {"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"

    status, body, _ = _get(url, {"Range": "bytes=-22"})  # the end of central directory
    assert (status, body) == (206, data[-22:])

    status, body, _ = _get(url, {"Range": f"bytes={len(data) - 5}-"})
    assert (status, body) == (206, data[-5:])

    status, _, headers = _get(url, {"Range": f"bytes={len(data)}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(data)}"

    assert local_index.hits(wheel.name) == 6
    assert local_index.bytes_served(wheel.name) == len(data) + 10 + 22 + 5
    assert [r.range for r in local_index.requests][2] == "bytes=10-19"


def test_files_cannot_escape_the_folder(local_index: LocalIndex) -> None:
    (local_index.wheel_dir.parent / "secret.whl").write_bytes(b"secret")
    for path in ("/files/..%2Fsecret.whl", "/files/../secret.whl", "/files/", "/files/%2e%2e", "/etc/passwd"):
        status, body, _ = _get(local_index.base_url + path)
        assert status == 404, path
        assert b"secret" not in body


def test_fail_switch_with_a_count(local_index: LocalIndex) -> None:
    local_index.add_wheel("demo", "1.0")
    local_index.fail("/simple/demo/", 503, times=2)
    statuses = [_get(local_index.project_url("demo"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]

    local_index.fail("demo-1.0-py3-none-any.whl")  # a bare file name means /files/<name>
    assert _get(local_index.file_url("demo-1.0-py3-none-any.whl"))[0] == 404
    local_index.clear_faults()
    assert _get(local_index.file_url("demo-1.0-py3-none-any.whl"))[0] == 200


def test_truncate_switch_cuts_the_connection(local_index: LocalIndex) -> None:
    wheel = local_index.add_wheel("demo", "1.0")
    local_index.truncate(wheel.name, 50, times=1)
    with pytest.raises(http.client.IncompleteRead) as info:
        _get(local_index.file_url(wheel.name))
    assert info.value.partial == wheel.read_bytes()[:50]
    assert _get(local_index.file_url(wheel.name))[1] == wheel.read_bytes()  # only once
    assert [r.bytes_sent for r in local_index.requests] == [50, wheel.stat().st_size]


def test_latency_switch(local_index: LocalIndex) -> None:
    local_index.add_wheel("demo", "1.0")
    local_index.latency(0.3, "/simple/demo/")
    started = time.monotonic()
    assert _get(local_index.url)[0] == 200
    fast = time.monotonic() - started
    started = time.monotonic()
    assert _get(local_index.project_url("demo"))[0] == 200
    slow = time.monotonic() - started
    assert slow >= 0.3
    assert fast < 0.3


def test_redirect_switch_sends_a_file_to_another_host(
    local_index: LocalIndex, make_local_index: Callable[[], LocalIndex]
) -> None:
    wheel = local_index.add_wheel("demo", "1.0")
    other = make_local_index()
    other.add_file(wheel)
    assert other.base_url != local_index.base_url
    local_index.redirect(wheel.name, other.file_url(wheel.name))

    status, body, _ = _get(local_index.file_url(wheel.name))
    assert (status, body) == (200, wheel.read_bytes())
    assert [(r.path, r.status, r.bytes_sent) for r in local_index.requests] == [
        (f"/files/{wheel.name}", 302, 0)
    ]
    assert other.downloads() == [wheel.name]


def test_metadata_files_when_switched_on(local_index: LocalIndex) -> None:
    wheel = local_index.add_wheel("demo", "1.0", requires=["fastlib>=1"])
    assert b"data-core-metadata" not in _get(local_index.project_url("demo"))[1]
    assert _get(local_index.file_url(wheel.name) + ".metadata")[0] == 404

    local_index.serve_metadata = True
    status, metadata, _ = _get(local_index.file_url(wheel.name) + ".metadata")
    assert status == 200
    assert b"Requires-Dist: fastlib>=1" in metadata
    digest = hashlib.sha256(metadata).hexdigest()
    assert f'data-core-metadata="sha256={digest}"'.encode() in _get(local_index.project_url("demo"))[1]


def test_server_stops(tmp_path: Path) -> None:
    with LocalIndex(tmp_path) as index:
        url = index.url
        assert _get(url)[0] == 200
    with pytest.raises(urllib.error.URLError):
        _get(url)


# -- the wheel factory ---------------------------------------------------------------------------


def _record_rows(zf: zipfile.ZipFile, dist_info: str) -> list[list[str]]:
    return [line.split(",") for line in zf.read(f"{dist_info}/RECORD").decode().splitlines()]


def test_build_wheel_writes_a_valid_wheel(tmp_path: Path) -> None:
    tag = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
    path = build_wheel(
        tmp_path,
        "My.Fast-Lib",
        "1.0.0-RC1",
        tag,
        files={"my_fast_lib/__init__.py": "x = 1\n", "my_fast_lib/_core.so": b"\x7fELF"},
        requires=["demo>=1", 'typing-extensions; python_version < "3.12"'],
        extra_dist_info={"top_level.txt": "my_fast_lib\n"},
    )
    assert path.name == f"my_fast_lib-1.0.0rc1-{tag}.whl"
    dist_info = "my_fast_lib-1.0.0rc1.dist-info"
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        assert metadata.splitlines()[:3] == [
            "Metadata-Version: 2.1",
            "Name: My.Fast-Lib",
            "Version: 1.0.0-RC1",
        ]
        assert "Requires-Dist: demo>=1\n" in metadata
        assert 'Requires-Dist: typing-extensions; python_version < "3.12"\n' in metadata
        wheel_lines = zf.read(f"{dist_info}/WHEEL").decode().splitlines()
        assert "Wheel-Version: 1.0" in wheel_lines
        assert "Root-Is-Purelib: false" in wheel_lines
        assert [line for line in wheel_lines if line.startswith("Tag:")] == [
            "Tag: cp311-cp311-manylinux_2_17_x86_64",
            "Tag: cp311-cp311-manylinux2014_x86_64",
        ]
        rows = _record_rows(zf, dist_info)
        assert sorted(r[0] for r in rows) == sorted(zf.namelist())
        for name, digest, size in rows:
            if name == f"{dist_info}/RECORD":
                assert (digest, size) == ("", "")
                continue
            data = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data))
    assert expand_tag("py2.py3-none-any") == ["py2-none-any", "py3-none-any"]
    with pytest.raises(ValueError, match="tag"):
        build_wheel(tmp_path, "x", "1.0", "py3-none")


def test_build_wheel_is_deterministic_and_has_a_default_package(tmp_path: Path) -> None:
    first = build_wheel(tmp_path / "a", "demo", "1.0")
    second = build_wheel(tmp_path / "b", "demo", "1.0")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        assert zf.read("demo/__init__.py") == b'__version__ = "1.0"\n'
        assert "Root-Is-Purelib: true" in zf.read("demo-1.0.dist-info/WHEEL").decode()


def test_pip_installs_a_factory_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "Demo.Pkg", "2.5", files={"demo_pkg/__init__.py": "VALUE = 42\n"})
    target = tmp_path / "target"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-index",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        env=offline_pip_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "demo_pkg-2.5.dist-info" / "RECORD").is_file()
    out = subprocess.run(
        [sys.executable, "-c", "import demo_pkg; print(demo_pkg.VALUE)"],
        env={**offline_pip_env(), "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"


def test_build_wheel_crafts_hostile_wheels(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path,
        "evil",
        "1.0",
        raw_entries=[
            RawEntry("../evil.py", "boom"),
            RawEntry("/abs.py", b"boom"),
            RawEntry("C:/x.py", b"boom", in_record=True),
            symlink("evil/link", "/etc/passwd"),
            RawEntry("evil/__init__.py", b"second copy"),
            RawEntry("evil/setuid", b"", mode=stat.S_IFREG | 0o4755),
        ],
        record=lambda text: text.replace("sha256=", "sha256=AAAA", 1),
    )
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for name in ("../evil.py", "/abs.py", "C:/x.py", "evil/link"):
            assert name in names
        assert names.count("evil/__init__.py") == 2
        infos = {i.filename: i for i in zf.infolist()}
        link = infos["evil/link"]
        assert stat.S_ISLNK(link.external_attr >> 16)
        assert zf.read(link) == b"/etc/passwd"
        assert (infos["evil/setuid"].external_attr >> 16) & stat.S_ISUID
        assert stat.S_ISREG(infos["evil/__init__.py"].external_attr >> 16)

        rows = {r[0]: r[1] for r in _record_rows(zf, "evil-1.0.dist-info")}
        assert "../evil.py" not in rows
        assert "C:/x.py" in rows
        lied = rows["evil/__init__.py"]
        assert lied.startswith("sha256=AAAA")
        true = base64.urlsafe_b64encode(hashlib.sha256(b'__version__ = "1.0"\n').digest()).rstrip(b"=")
        assert lied != f"sha256={true.decode()}"

    verbatim = build_wheel(tmp_path / "v", "evil", "1.0", record="not,a,record\n")
    with zipfile.ZipFile(verbatim) as zf:
        assert zf.read("evil-1.0.dist-info/RECORD") == b"not,a,record\n"


# -- native binaries -----------------------------------------------------------------------------


def _elf_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        elffile = ELFFile(f)
        sections = {s.name for s in elffile.iter_sections()}
        dynsym = elffile.get_section_by_name(".dynsym")
        assert isinstance(dynsym, SymbolTableSection)
        symbols = {s.name for s in dynsym.iter_symbols()}
        return {
            "machine": elffile["e_machine"],
            "class": elffile.elfclass,
            "sections": sections,
            "symbols": symbols,
        }


def _glibc_versions(path: Path) -> list[tuple[int, ...]]:
    return [
        tuple(int(n) for n in v.removeprefix("GLIBC_").split("."))
        for v in elf.required_symbol_versions(path)
        if v.startswith("GLIBC_")
    ]


def test_compiled_object_without_pthread_needs_only_old_glibc(tmp_path: Path) -> None:
    so = elf.compile_shared_object(tmp_path / "pkg" / "_plain.so")
    header = _elf_header(so)
    assert (header["machine"], header["class"]) == ("EM_X86_64", 64)
    assert "GLIBC_2.2.5" in elf.required_symbol_versions(so)
    assert max(_glibc_versions(so)) <= (2, 17)
    assert "pthread_create" not in header["symbols"]
    assert ".debug_info" in header["sections"]


def test_compiled_object_with_pthread_create_needs_glibc_2_34(tmp_path: Path) -> None:
    so = elf.compile_shared_object(tmp_path / "_threads.so", uses_pthread_create=True, debug=False)
    header = _elf_header(so)
    assert "GLIBC_2.34" in elf.required_symbol_versions(so)
    assert max(_glibc_versions(so)) > (2, 26)
    assert "pthread_create" in header["symbols"]
    assert ".debug_info" not in header["sections"]
    assert ".symtab" not in header["sections"]


def test_compiled_objects_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = elf.compile_shared_object(tmp_path / "a.so")

    def no_gcc(*args: object, **kwargs: object) -> None:
        raise AssertionError("gcc ran again")

    monkeypatch.setattr(subprocess, "run", no_gcc)  # elf.py calls subprocess.run
    second = elf.compile_shared_object(tmp_path / "b.so")
    assert first.read_bytes() == second.read_bytes()
    assert os.access(second, os.X_OK)


def test_with_machine_fakes_an_aarch64_object(tmp_path: Path) -> None:
    so = elf.compile_shared_object(tmp_path / "x86.so")
    arm = elf.with_machine(so, tmp_path / "arm.so", "aarch64")
    assert _elf_header(arm)["machine"] == "EM_AARCH64"
    original, changed = so.read_bytes(), arm.read_bytes()
    assert struct.unpack_from("<H", changed, 18) == (elf.EM_AARCH64,)
    assert original[:18] == changed[:18]
    assert original[20:] == changed[20:]
    assert _elf_header(elf.with_machine(arm, tmp_path / "back.so", "x86_64"))["machine"] == "EM_X86_64"
    with pytest.raises(ValueError, match="not an ELF"):
        elf.with_machine(elf.fake_pe(tmp_path / "x.dll"), tmp_path / "y.so", "aarch64")


def test_fake_pe(tmp_path: Path) -> None:
    data = elf.fake_pe(tmp_path / "_speedups.cp311-win_amd64.pyd").read_bytes()
    assert data[:2] == b"MZ"
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    assert data[e_lfanew : e_lfanew + 4] == b"PE\0\0"
    assert struct.unpack_from("<H", data, e_lfanew + 4) == (0x8664,)
    arm = elf.fake_pe(tmp_path / "arm.dll", "aarch64").read_bytes()
    assert struct.unpack_from("<H", arm, e_lfanew + 4) == (0xAA64,)


def test_fake_macho(tmp_path: Path) -> None:
    thin = elf.fake_macho(tmp_path / "_speedups.cpython-311-darwin.so").read_bytes()
    assert thin[:4] == b"\xcf\xfa\xed\xfe"
    assert struct.unpack_from("<I", thin, 0) == (elf.MACHO_MAGIC_64,)
    assert struct.unpack_from("<I", thin, 4) == (0x0100000C,)  # CPU_TYPE_ARM64

    fat = elf.fake_macho(tmp_path / "libfoo.dylib", universal=True).read_bytes()
    assert struct.unpack_from(">II", fat, 0) == (elf.MACHO_FAT_MAGIC, 2)
    for n in range(2):
        cputype, _, offset, size, _ = struct.unpack_from(">IIIII", fat, 8 + 20 * n)
        assert struct.unpack_from("<II", fat, offset) == (elf.MACHO_MAGIC_64, cputype)
        assert offset + size <= len(fat)
