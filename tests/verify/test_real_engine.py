"""The Docker path against a real engine, with stand-in images built here from Debian packages.

A stand-in (tests/support/standin_images.py) proves the engine path, Lambda's lockdown (read-only /opt,
no network, a non-root user, a read-only root), the architecture (arm64 runs under QEMU emulation) and
that the layer imports. It does not prove Lambda's glibc 2.26 or its exact Python: Debian's CPython 3.11
and glibc 2.36 are not Amazon Linux's; the static audit checks the glibc symbol versions.

Where no engine answers these skip, except under LAYERFORGE_REQUIRE_DOCKER=1, which CI sets.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from layerforge.build import BuildOptions, build
from layerforge.errors import VerificationError
from layerforge.resolve.lock import read_lock
from layerforge.target import Target, host_machine
from layerforge.verify.container import verify_in_docker
from tests.support.docker_engine import engine_or_skip, standin
from tests.support.index import LocalIndex
from tests.support.sdists import c_extension_sdist
from tests.test_build import options
from tests.tree import test_sharing
from tests.tree.test_sharing import LIBRARY, SHARED, _publish
from tests.verify.test_container import GOOD, make_layer

pytestmark = pytest.mark.docker
native = test_sharing.native  # the fixture that compiles the extension modules and the shared library

NATIVE_ARCH = "arm64" if host_machine() == "aarch64" else "x86_64"
FOREIGN_ARCH = "x86_64" if NATIVE_ARCH == "arm64" else "arm64"


@pytest.fixture(scope="module")
def client() -> object:
    return engine_or_skip()


def verify(layer: Path, arch: str, client: object, **kwargs: object) -> object:
    return verify_in_docker(
        layer,
        Target("python3.11", arch),
        distributions=[],
        smoke=None,
        removed={},
        client=client,
        image=standin(f"runtime-{arch}"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_layer_verifies_in_the_native_standin_as_lambdas_user(client: object, tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    report = verify_in_docker(
        layer,
        Target("python3.11", NATIVE_ARCH),
        modules=["good"],
        distributions=["good"],
        smoke="import os, good\nassert good.VALUE == 42 and os.getuid() == 993, os.getuid()",
        removed={},
        client=client,
        image=standin(f"runtime-{NATIVE_ARCH}"),
    )
    assert report.verified is True and report.layer_read_only is True
    assert report.interpreter is not None and report.interpreter.container.startswith("layerforge-test/")
    assert report.interpreter.emulated is False
    # The container's interpreter measures its own memory, the smoke code's process too.
    assert report.memory is not None and report.memory.smoke_peak_rss_bytes is not None
    assert report.memory.imports_peak_rss_bytes is not None
    assert report.memory.baseline_rss_bytes is not None
    assert 0 < report.memory.baseline_rss_bytes <= report.memory.imports_peak_rss_bytes


def test_the_shared_library_load_proof_runs_in_the_container(
    client: object, local_index: LocalIndex, native: dict[str, bytes], tmp_path: Path
) -> None:
    if NATIVE_ARCH != "x86_64":
        pytest.skip("the extension modules are compiled by this machine's gcc for x86_64")
    image = standin("runtime-x86_64")
    _publish(local_index, native, scipyish_init="import numpyish\nfrom scipyish._core import answer\n")
    good = options(local_index, tmp_path, name="sci", requirements=["scipyish"], strip=SHARED, out="good")
    result = build(_in_docker(good, image))
    verification = result.manifest["verification"]
    assert result.manifest["verified"] is True
    assert verification["interpreter"]["container"] == image
    assert {"numpyish._core", "scipyish._core"} <= set(verification["imported"])

    # Loaded in the wrong order, the kept copy is not found: the proof fails in the container too.
    _publish(local_index, native, scipyish_init="from scipyish._core import answer\n")
    wrong = options(local_index, tmp_path, name="sci", requirements=["scipyish"], strip=SHARED, out="wrong")
    with pytest.raises(VerificationError) as raised:
        build(_in_docker(wrong, image, refresh=True))
    assert image in str(raised.value) and LIBRARY in str(raised.value)
    assert not list((tmp_path / "wrong").glob("*.zip"))


def _in_docker(build_options: BuildOptions, image: str, **more: object) -> BuildOptions:
    return dataclasses.replace(build_options, docker=True, image=image, **more)  # type: ignore[arg-type]


def test_an_arm64_layer_is_verified_by_default_in_the_emulated_standin(
    client: object, local_index: LocalIndex, tmp_path: Path
) -> None:
    """No local interpreter can import an aarch64 layer on x86_64: the build verifies in the engine."""
    image = standin(f"runtime-{FOREIGN_ARCH}")
    local_index.add_wheel("puredemo", "1.0", "py3-none-any", files={"puredemo/__init__.py": "VALUE = 7\n"})
    machine = "aarch64" if FOREIGN_ARCH == "arm64" else "x86_64"
    smoke = f"import platform, puredemo\nassert platform.machine() == {machine!r}, platform.machine()\n"
    chosen = options(
        local_index,
        tmp_path,
        arch=FOREIGN_ARCH,
        name="pure",
        requirements=["puredemo"],
        verify={"imports": ["puredemo"], "smoke": smoke},
    )
    result = build(dataclasses.replace(chosen, image=image))  # docker=None: the default choice
    interpreter = result.manifest["verification"]["interpreter"]
    assert result.manifest["verified"] is True and result.manifest["verification"]["smoke_ok"] is True
    assert interpreter["machine"] == machine and interpreter["emulated"] is True
    # QEMU's own memory is in the emulated figures: kept, but no advice is drawn from them.
    verification = result.manifest["verification"]
    assert verification["memory"]["emulated"] is True and verification["memory"]["smoke_peak_rss_bytes"] > 0
    assert verification["peak_rss_bytes"] is None and verification["memory"]["recommended_memory_mb"] is None
    assert interpreter["container"] == image


def test_a_write_beside_itself_under_opt_fails_in_the_container(client: object, tmp_path: Path) -> None:
    writer = "import os\nopen(os.path.join(os.path.dirname(__file__), 'cache.txt'), 'w').write('x')\n"
    layer = make_layer(tmp_path / "layer", {"python/writer/__init__.py": writer})
    report = verify(layer, NATIVE_ARCH, client, modules=["writer"])
    assert report.verified is False
    [failure] = report.failures
    assert "Read-only file system" in failure.error or "Permission denied" in failure.error
    assert "writer/cache.txt inside the layer, which is read-only at /opt on Lambda" in failure.message


def test_a_network_connection_at_import_fails_in_the_container(client: object, tmp_path: Path) -> None:
    caller = "import socket\nsocket.create_connection(('192.0.2.1', 443), timeout=5)\n"  # TEST-NET-1
    layer = make_layer(tmp_path / "layer", {"python/caller/__init__.py": caller})
    report = verify(layer, NATIVE_ARCH, client, modules=["caller"])
    assert report.verified is False
    [failure] = report.failures
    assert "opens a network connection while it is imported" in failure.message
    assert "read-only" not in failure.message  # each cause has its own message


def test_a_c_extension_sdist_is_built_in_the_build_standin_and_rebuilt_byte_for_byte(
    client: object, local_index: LocalIndex, tmp_path: Path
) -> None:
    if NATIVE_ARCH != "x86_64":
        pytest.skip("the build stand-in is made for x86_64")
    image = standin("build-x86_64")
    c_extension_sdist(tmp_path / "sdists", "cext", "1.0", answer=42)
    local_index.add_file(tmp_path / "sdists" / "cext-1.0.tar.gz")
    first = options(
        local_index,
        tmp_path,
        name="cext",
        requirements=["cext"],
        verify={"smoke": "import cext\nassert cext.answer() == 42\n"},
    )
    first = dataclasses.replace(first, docker=True, build_image=image, image=standin("runtime-x86_64"))
    built = build(first)
    lock = read_lock(built.lock_path)
    [package] = lock.packages
    assert package.built_from is not None and package.built_from.image == image
    digest = package.built_from.image_digest
    assert digest is not None and digest.startswith("sha256:")
    assert digest == client.images.get(image).id  # type: ignore[attr-defined]
    assert built.manifest["verified"] is True
    with zipfile.ZipFile(built.zip_path) as archive:
        assert any(n.startswith("python/cext.cpython-311-x86_64-linux-gnu") for n in archive.namelist())

    # From the lock, with an empty wheel cache: built again in the pinned image, the same bytes.
    again = dataclasses.replace(
        first, cache_dir=tmp_path / "empty-cache", out_dir=tmp_path / "again", lock_path=built.lock_path
    )
    rebuilt = build(again)
    assert rebuilt.manifest["sha256"] == built.manifest["sha256"]
    assert (
        json.loads(rebuilt.lock_path.read_text())["packages"]
        == json.loads(built.lock_path.read_text())["packages"]
    )


def test_package_function_docker_verifies_its_requirements_in_the_container(
    client: object, local_index: LocalIndex, tmp_path: Path
) -> None:
    from layerforge.function.package import FunctionOptions, package_function
    from tests.function.test_function import write_tree

    image = standin(f"runtime-{NATIVE_ARCH}")
    local_index.add_wheel("tinylib", "1.0", files={"tinylib/__init__.py": "VALUE = 3\n"})
    src = write_tree(
        tmp_path / "fn",
        {
            "handler.py": "import tinylib\n\ndef lambda_handler(event, context):\n    return tinylib.VALUE\n",
            "requirements.txt": "tinylib==1.0\n",
        },
    )
    result = package_function(
        FunctionOptions(
            source=src,
            handler="handler.lambda_handler",
            target=Target("python3.11", NATIVE_ARCH),
            out_dir=tmp_path / "dist",
            cache_dir=tmp_path / "cache",
            index_url=local_index.url,
            docker=True,
            image=image,
        )
    )
    assert result.requirements is not None
    verification = result.requirements.manifest["verification"]
    assert result.requirements.manifest["verified"] is True
    assert verification["interpreter"]["container"] == image and "tinylib" in verification["imported"]


def test_index_credentials_are_nowhere_docker_inspect_shows_of_the_build_container(
    client: Any, local_index: LocalIndex, tmp_path: Path
) -> None:
    """Anyone who can reach the engine can `docker inspect` a container: its command, environment and
    labels must not carry the index's password. The index refuses requests without it, so the build
    succeeding proves pip in the container had it, from the read-only pip.conf."""
    if NATIVE_ARCH != "x86_64":
        pytest.skip("the build stand-in is made for x86_64")
    image = standin("build-x86_64")
    c_extension_sdist(tmp_path / "sdists", "cext", "1.0", answer=7)
    local_index.add_file(tmp_path / "sdists" / "cext-1.0.tar.gz")
    local_index.require_auth("builder", "s3cret-token")
    # The container's pip waits on the index a while: long enough to inspect the running container.
    local_index.latency(2.0, "/simple/cext/")
    secret_url = local_index.url.replace("http://", "http://builder:s3cret-token@")
    inspected: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not inspected:
            for container in client.containers.list(filters={"label": "io.layerforge.role=build"}):
                container.reload()
                inspected.append(container.attrs)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    chosen = options(local_index, tmp_path, name="cext", requirements=["cext"])
    try:
        built = build(
            dataclasses.replace(chosen, index_url=secret_url, docker=True, build_image=image, verify=False)
        )
    finally:
        done.set()
        watcher.join(timeout=10)

    [package] = read_lock(built.lock_path).packages
    assert package.built_from is not None and package.built_from.image == image
    assert inspected, "the build container was never seen running"
    attrs = inspected[0]
    assert "s3cret-token" not in json.dumps(attrs)  # Cmd, Entrypoint, Env, Labels, mounts: all of it
    assert "PIP_CONFIG_FILE=/layerforge-config/pip.conf" in attrs["Config"]["Env"]
    config = next(m for m in attrs["Mounts"] if m["Destination"] == "/layerforge-config")
    assert config["RW"] is False
    assert "s3cret-token" not in built.lock_path.read_text()


def test_a_rebuild_from_the_lock_runs_the_pinned_image_after_its_tag_moved(
    client: Any, local_index: LocalIndex, tmp_path: Path
) -> None:
    """A tag moves (`latest-x86_64` gets a new build every week): the lock's digest is what runs again."""
    if NATIVE_ARCH != "x86_64":
        pytest.skip("the build stand-in is made for x86_64")
    builder = client.images.get(standin("build-x86_64"))
    moved_to = client.images.get(standin("runtime-x86_64"))  # no compiler, no pip: a build there fails
    repository, tag = "layerforge-test/moving-build", f"t{uuid.uuid4().hex[:12]}"
    moving = f"{repository}:{tag}"
    c_extension_sdist(tmp_path / "sdists", "cext", "1.0", answer=5)
    local_index.add_file(tmp_path / "sdists" / "cext-1.0.tar.gz")
    chosen = options(local_index, tmp_path, name="cext", requirements=["cext"])
    chosen = dataclasses.replace(chosen, docker=True, build_image=moving, verify=False)
    builder.tag(repository, tag)
    try:
        built = build(chosen)
        [package] = read_lock(built.lock_path).packages
        assert package.built_from is not None and package.built_from.image_digest == builder.id
        moved_to.tag(repository, tag, force=True)
        assert client.images.get(moving).id == moved_to.id
        again = dataclasses.replace(
            chosen, cache_dir=tmp_path / "empty", out_dir=tmp_path / "again", lock_path=built.lock_path
        )
        rebuilt = build(again)
    finally:
        client.images.remove(moving, noprune=True)
    assert rebuilt.manifest["sha256"] == built.manifest["sha256"]
