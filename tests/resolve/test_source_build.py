"""Requirements with no wheel for the target, built from their sdist in the Lambda build image only.

Real where it can be: a PEP 503 index on 127.0.0.1 serves real sdists (whose setup.py would write a
sentinel file if anything ever ran it on the host) and real wheels, and the real pip resolves. There is
no Docker engine on these machines, so the engine is `FakeDockerClient` from verify/test_container.py, the
one mock: its container does what the real `pip wheel` in the SAM build image does, writing a real wheel
tagged linux_x86_64 (with a real gcc-built ELF object) into the mounted out folder, and it records the
container spec it was given. A test marked `docker` builds a real sdist in the real image where an engine
answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

import layerforge.resolve.source_build
from layerforge.build import BuildOptions, build
from layerforge.cache import WheelCache, sha256_of
from layerforge.cli import main
from layerforge.errors import AuditError, BuildError, HashMismatchError, LockError, ResolutionError
from layerforge.recipe import recipe_from_mapping
from layerforge.resolve.container_build import build_image
from layerforge.resolve.index import fetch_project_files
from layerforge.resolve.lock import lock_from_dict, pip_command, read_lock
from layerforge.resolve.locked import LockedPackage
from layerforge.resolve.source_build import SOURCE_DATE_EPOCH, SourceBuilder, pick_sdist
from layerforge.target import Target
from tests.support.elf import compile_shared_object
from tests.support.index import LocalIndex
from tests.support.wheelfactory import build_wheel
from tests.verify.test_container import FakeDockerClient

TARGET = Target("python3.11", "x86_64")
IMAGE = "public.ecr.aws/sam/build-python3.11:latest-x86_64"
IMAGE_ID = "sha256:" + hashlib.sha256(IMAGE.encode()).hexdigest()
LINUX = "cp311-cp311-linux_x86_64"
EXTENSION = "_speed.cpython-311-x86_64-linux-gnu.so"


# --------------------------------------------------------------------------------------------------
# The index: real sdists that must never run here, real wheels for the rest


def make_sdist(folder: Path, name: str, version: str, sentinel: Path) -> Path:
    """A real sdist whose setup.py (and so any build of it) writes `sentinel` first thing."""
    base = f"{name}-{version}"
    members = {
        "setup.py": (
            f"open({str(sentinel)!r}, 'a').write('built {base} on the host\\n')\n"
            f"from setuptools import setup\nsetup(name={name!r}, version={version!r}, packages=[{name!r}])\n"
        ),
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        ),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
    }
    path = folder / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in sorted(members.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{member}")
            info.size, info.mtime = len(data), SOURCE_DATE_EPOCH
            archive.addfile(info, io.BytesIO(data))
    return path


@dataclass
class World:
    index: LocalIndex
    sentinel: Path
    tmp: Path

    def recipe(self, *requirements: str) -> Any:
        raw = {"name": "src", "requirements": list(requirements or ["app"])}
        return recipe_from_mapping(raw, "src.toml", "src")


@pytest.fixture()
def world(local_index: LocalIndex, tmp_path: Path) -> World:
    """app (a wheel) needs srcpkg<2, which has only sdists (1.0, 1.1, 2.0); the wheel built from srcpkg
    needs srcdep (a wheel) and srcleaf (only an sdist)."""
    sentinel = tmp_path / "SENTINEL-a-build-ran-on-the-host"
    local_index.add_wheel("app", "1.0", requires=["srcpkg<2"])
    local_index.add_wheel("srcdep", "1.0")
    for version in ("1.0", "1.1", "2.0"):
        make_sdist(local_index.wheel_dir, "srcpkg", version, sentinel)
    make_sdist(local_index.wheel_dir, "srcleaf", "0.5", sentinel)
    return World(local_index, sentinel, tmp_path)


# --------------------------------------------------------------------------------------------------
# The build container, faked


@dataclass
class BuildContainer:
    """What `pip wheel --require-hashes -r /work/requirement.txt` does in the SAM build image: refuse an
    sdist whose hash is not the pinned one, else write the release's wheel into /work/out.

    `variant` changes the wheel's bytes (a build that is not reproducible); `so` is its ELF object.
    """

    index: LocalIndex
    so: bytes
    requires: dict[str, list[str]] = field(
        default_factory=lambda: {"srcpkg": ["srcdep", "srcleaf"], "srcleaf": []}
    )
    variant: str = ""
    built: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)

    def __call__(self, kwargs: dict[str, Any]) -> tuple[bytes, bytes]:
        mounts = {bind["bind"]: Path(source) for source, bind in kwargs["volumes"].items()}
        work = mounts["/work"]
        self.configs.append((mounts["/layerforge-config"] / "pip.conf").read_text())
        line = (work / "requirement.txt").read_text().strip()
        self.pins.append(line)
        requirement, _, pinned = line.partition(" --hash=sha256:")
        name, version = requirement.split("==")
        if self.index.sha256(f"{name}-{version}.tar.gz") != pinned:
            return b"", b"ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n"
        build_wheel(
            work / "out",
            name,
            version,
            LINUX,
            files={
                f"{name}/__init__.py": f"VERSION = {version!r}{self.variant}\n",
                f"{name}/{EXTENSION}": self.so,
            },
            requires=self.requires.get(name, []),
        )
        self.built.append(requirement)
        return f"Successfully built {name}\n".encode(), b""


def engine(container: BuildContainer) -> FakeDockerClient:
    return FakeDockerClient(execute=Path(sys.executable), on_start=container)


def native(tmp: Path, *, new_glibc: bool = False) -> bytes:
    return compile_shared_object(tmp / "native.so", uses_pthread_create=new_glibc).read_bytes()


def options(
    world: World,
    *,
    client: FakeDockerClient | None = None,
    docker: bool | None = True,
    cache: str = "cache",
    out: str = "out",
    lock: Path | None = None,
    requirements: tuple[str, ...] = (),
) -> BuildOptions:
    # Verification would start a second container (the Lambda image): the fake here plays only the
    # build image, so the import check is off and the layer's content is checked from the zip instead.
    return BuildOptions(
        recipe=world.recipe(*requirements),
        target=TARGET,
        out_dir=world.tmp / out,
        cache_dir=world.tmp / cache,
        index_url=world.index.url,
        lock_path=lock,
        verify=False,
        docker=docker,
        docker_client=(lambda: client) if client is not None else None,
    )


def zip_names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


def sdists_fetched(index: LocalIndex) -> list[str]:
    return [name for name in index.downloads() if name.endswith(".tar.gz")]


# --------------------------------------------------------------------------------------------------
# Locking and building with --docker


def test_build_with_docker_builds_each_missing_sdist_in_the_image_and_the_layer_holds_the_wheels(
    world: World,
) -> None:
    container = BuildContainer(world.index, native(world.tmp))
    client = engine(container)
    result = build(options(world, client=client))

    # srcpkg<2: the newest release with an sdist is 1.1 (not 2.0); then its own sdist-only dependency.
    assert container.built == ["srcpkg==1.1", "srcleaf==0.5"]
    names = zip_names(result.zip_path)
    assert {f"python/srcpkg/{EXTENSION}", "python/srcleaf/__init__.py", "python/srcdep/__init__.py"} <= names
    assert "python/srcpkg-1.1.dist-info/METADATA" in names and "python/app/__init__.py" in names
    # The audit looked at the built objects as at any other.
    assert result.manifest["audit"]["machines"] == {"x86_64": 2}
    assert result.manifest["audit"]["max_glibc"] is not None
    # Nothing was built here: no setup.py ran, and the host never even fetched an sdist.
    assert not world.sentinel.exists()
    assert sdists_fetched(world.index) == []


def test_the_build_container_is_the_sam_image_pinned_to_the_sdist_as_the_host_user(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-must-not-leak")
    container = BuildContainer(world.index, native(world.tmp))
    client = engine(container)
    build(options(world, client=client, requirements=("srcpkg<2",)))

    first = client.containers_made[0].kwargs
    # Run by the digest the lock records, resolved from the SAM image's tag before the build.
    assert first["image"] == IMAGE_ID and build_image(TARGET) == IMAGE
    assert first["platform"] == "linux/amd64"
    assert first["entrypoint"] == ["/var/lang/bin/python3.11"]
    assert first["command"] == [
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-binary",
        "srcpkg",
        "--wheel-dir",
        "/work/out",
        "--require-hashes",
        "-r",
        "/work/requirement.txt",
    ]
    assert container.pins[0] == f"srcpkg==1.1 --hash=sha256:{world.index.sha256('srcpkg-1.1.tar.gz')}"
    uid, gid = os.getuid(), os.getgid()
    assert first["user"] == ("993:990" if uid == 0 else f"{uid}:{gid}")  # never root
    [(work, bind), (config, config_bind)] = first["volumes"].items()
    assert bind == {"bind": "/work", "mode": "rw"} and not Path(work).exists()  # removed afterwards
    assert config_bind == {"bind": "/layerforge-config", "mode": "ro"} and not Path(config).exists()
    assert container.configs[0] == f"[global]\nindex-url = {world.index.url}\n"
    env = first["environment"]
    assert env["PIP_CONFIG_FILE"] == "/layerforge-config/pip.conf"
    assert env["SOURCE_DATE_EPOCH"] == str(SOURCE_DATE_EPOCH)
    assert env["HOME"] == "/work/home" and env["TMPDIR"] == "/work/scratch"
    assert env["PIP_CACHE_DIR"] == "/work/cache" and env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert "host-secret-must-not-leak" not in repr(first)
    # The sdist and its build requirements come from the index, here on loopback: the host's network.
    assert first["network_mode"] == "host"
    assert first["read_only"] and first["auto_remove"] and first["cap_drop"] == ["ALL"]
    assert first["labels"] == {"io.layerforge.role": "build"}
    pull = next(kwargs for name, kwargs in client.calls if name == "images.pull")
    assert pull == {
        "repository": "public.ecr.aws/sam/build-python3.11",
        "tag": "latest-x86_64",
        "platform": "linux/amd64",
    }
    assert [c.kwargs["command"][5] for c in client.containers_made] == ["srcpkg", "srcleaf"]


def test_the_lock_records_the_built_wheel_its_sdist_and_the_image(world: World) -> None:
    container = BuildContainer(world.index, native(world.tmp))
    result = build(options(world, client=engine(container)))

    raw = json.loads(result.lock_path.read_text())
    pins = {p["name"]: p for p in raw["packages"]}
    srcpkg = pins["srcpkg"]
    assert srcpkg["wheel"] == f"srcpkg-1.1-{LINUX}.whl" and srcpkg["version"] == "1.1"
    cached = WheelCache(world.tmp / "cache").lookup(srcpkg["sha256"], srcpkg["wheel"])
    assert cached is not None and sha256_of(cached) == srcpkg["sha256"]
    assert srcpkg["url"] == cached.as_uri()
    assert srcpkg["built_from"] == {
        "sdist": world.index.file_url("srcpkg-1.1.tar.gz"),
        "sdist_sha256": world.index.sha256("srcpkg-1.1.tar.gz"),
        "image": IMAGE,
        "source_date_epoch": SOURCE_DATE_EPOCH,
        # The engine's id of the image at build time (the fake engine derives it from the name).
        "image_digest": IMAGE_ID,
    }
    assert pins["srcleaf"]["built_from"]["sdist"] == world.index.file_url("srcleaf-0.5.tar.gz")
    # Wheels from the index are recorded as before, without the new field.
    assert "built_from" not in pins["srcdep"] and "built_from" not in pins["app"]
    assert pins["srcdep"]["sha256"] == world.index.sha256("srcdep-1.0-py3-none-any.whl")
    notes = " ".join(n["reason"] for n in raw["notes"])
    assert (
        f"srcpkg 1.1 has no wheel for python3.11-x86_64: built from source (srcpkg-1.1.tar.gz) in {IMAGE}"
        in notes
    )
    assert read_lock(result.lock_path) == result.lock


def engine_for_the_cli(world: World, monkeypatch: pytest.MonkeyPatch) -> BuildContainer:
    """The fake engine, where the CLI's Docker client comes from (docker.from_env)."""
    container = BuildContainer(world.index, native(world.tmp))
    client = engine(container)
    monkeypatch.setattr(layerforge.resolve.source_build, "docker_from_env", lambda: client)
    return container


def test_lock_command_with_docker_builds_in_the_image_and_writes_built_from(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = engine_for_the_cli(world, monkeypatch)
    recipe = world.tmp / "src.toml"
    recipe.write_text('name = "src"\nrequirements = ["app"]\n')
    lock_file = world.tmp / "src.lock.json"
    args = ["lock", str(recipe), "--docker", "--index-url", world.index.url, "-o", str(lock_file)]
    completed = CliRunner().invoke(main, [*args, "--cache-dir", str(world.tmp / "c")])
    assert completed.exit_code == 0, completed.output
    assert container.built == ["srcpkg==1.1", "srcleaf==0.5"]
    lock = read_lock(lock_file)
    built = {p.name: p.built_from for p in lock.packages if p.built_from}
    assert set(built) == {"srcpkg", "srcleaf"}
    assert all(WheelCache(world.tmp / "c").lookup(p.sha256, p.wheel) for p in lock.packages if p.built_from)
    assert not world.sentinel.exists()


def test_package_function_with_docker_builds_its_requirements_in_the_image(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = engine_for_the_cli(world, monkeypatch)
    source = world.tmp / "function"
    source.mkdir()
    (source / "handler.py").write_text("import srcpkg\n\n\ndef handler(event, context):\n    return 1\n")
    (source / "requirements.txt").write_text("app\n")
    args = ["package-function", str(source), "--handler", "handler.handler", "--docker", "--no-verify"]
    args += [
        "--index-url",
        world.index.url,
        "--out",
        str(world.tmp / "out"),
        "--cache-dir",
        str(world.tmp / "c"),
    ]
    completed = CliRunner().invoke(main, args)
    assert completed.exit_code == 0, completed.output
    assert container.built == ["srcpkg==1.1", "srcleaf==0.5"]
    with zipfile.ZipFile(world.tmp / "out" / "function-python3.11-x86_64.zip") as archive:
        assert {"srcpkg/__init__.py", "srcleaf/__init__.py", "handler.py"} <= set(archive.namelist())
    assert not world.sentinel.exists()


@pytest.mark.parametrize("command", ["build", "lock"])
def test_without_docker_the_error_names_the_package_and_suggests_docker(world: World, command: str) -> None:
    recipe = world.tmp / "src.toml"
    recipe.write_text('name = "src"\nrequirements = ["app"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "LAYERFORGE_"))}
    env["LAYERFORGE_CACHE_DIR"] = str(world.tmp / "c")
    # Host builds refused: no sdist is even fetched here (test_host_build.py has them allowed).
    completed = subprocess_run(
        [
            command,
            str(recipe),
            "--index-url",
            world.index.url,
            "--out",
            str(world.tmp / "out"),
            "--no-host-builds",
        ],
        world.tmp,
        env,
    )
    # A resolution failure is a build failure (ResolutionError), exit 1, as every other one.
    assert completed.returncode == ResolutionError.exit_code == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "no release of srcpkg has a wheel for python3.11 on x86_64" in completed.stderr
    hint = " ".join(completed.stderr.split())
    assert (
        "rerun with --docker to build srcpkg from source inside the Lambda build image (never on the host)"
        in hint
    )
    assert not world.sentinel.exists() and sdists_fetched(world.index) == []
    assert not list((world.tmp / "out").glob("*.lock.json"))


def test_index_credentials_reach_pip_in_the_container_only_through_the_read_only_config(
    world: World,
) -> None:
    """`docker inspect` shows a container's command, environment and labels to anyone with the socket."""
    secret_url = world.index.url.replace("http://", "http://builder:s3cret-token@")
    container = BuildContainer(world.index, native(world.tmp))
    client = engine(container)
    result = build(dataclasses.replace(options(world, client=client), index_url=secret_url))
    assert container.built == ["srcpkg==1.1", "srcleaf==0.5"]
    assert all("s3cret-token" in config for config in container.configs)
    for made in client.containers_made:
        assert "s3cret-token" not in repr(made.kwargs)
    assert "s3cret-token" not in result.lock_path.read_text()


def subprocess_run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerforge", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_no_hint_to_use_docker_when_there_is_no_sdist_to_build(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    local_index.add_wheel("winonly", "3.0", "cp311-cp311-win_amd64")
    builder = SourceBuilder(TARGET, local_index.url, WheelCache(tmp_path / "c"), enabled=True)
    with pytest.raises(ResolutionError) as raised:
        builder.resolve("w", ["winonly"])
    assert "--docker" not in str(raised.value) and "winonly-3.0-cp311-cp311-win_amd64.whl" in str(
        raised.value
    )


# --------------------------------------------------------------------------------------------------
# Building from a lock


def test_build_from_the_lock_with_an_empty_cache_rebuilds_in_the_image_and_matches(world: World) -> None:
    first = build(options(world, client=engine(BuildContainer(world.index, native(world.tmp)))))
    world.index.reset_log()
    again = BuildContainer(world.index, native(world.tmp))
    client = engine(again)
    second = build(options(world, client=client, cache="empty", out="two", lock=first.lock_path))

    assert sorted(again.built) == ["srcleaf==0.5", "srcpkg==1.1"]
    # The rebuild runs in the image the lock pins by digest, not whatever the tag names today.
    assert all(c.kwargs["image"] == IMAGE_ID for c in client.containers_made)
    assert second.manifest["sha256"] == first.manifest["sha256"]  # the same layer, byte for byte
    cache = WheelCache(world.tmp / "empty")
    assert all(cache.lookup(p.sha256, p.wheel) for p in second.lock.packages)
    # Nothing resolved again, no sdist fetched by the host: only the index's wheels were downloaded.
    assert not any(r.path.startswith("/simple/") for r in world.index.requests)
    assert sorted(world.index.downloads()) == ["app-1.0-py3-none-any.whl", "srcdep-1.0-py3-none-any.whl"]
    assert not world.sentinel.exists()


def test_a_lock_written_before_image_digests_rebuilds_by_tag_and_says_so(world: World) -> None:
    first = build(options(world, client=engine(BuildContainer(world.index, native(world.tmp)))))
    raw = json.loads(first.lock_path.read_text())
    for package in raw["packages"]:
        package.get("built_from", {}).pop("image_digest", None)
    raw.pop("lock_hash")
    notes: list[str] = []
    client = engine(BuildContainer(world.index, native(world.tmp)))
    cache = WheelCache(world.tmp / "empty")
    builder = SourceBuilder(TARGET, world.index.url, cache, True, lambda: client, notes.append)
    builder.provide(lock_from_dict(raw, "old.lock.json"))
    assert [c.kwargs["image"] for c in client.containers_made] == [IMAGE, IMAGE]
    assert sum("pins no digest of " + IMAGE in note for note in notes) == 2
    assert all(cache.lookup(p.sha256, p.wheel) for p in first.lock.packages if p.built_from)


def test_a_rebuild_with_another_hash_fails_saying_the_build_is_not_reproducible(world: World) -> None:
    first = build(options(world, client=engine(BuildContainer(world.index, native(world.tmp)))))
    drifting = BuildContainer(world.index, native(world.tmp), variant="  # built at another time")
    with pytest.raises(BuildError) as raised:
        build(options(world, client=engine(drifting), cache="empty", out="two", lock=first.lock_path))
    message = str(raised.value)
    assert "srcleaf 0.5" in message or "srcpkg 1.1" in message
    assert "not reproducible" in message and "--refresh" in message
    pins = {p.name: p for p in first.lock.packages}
    cache = WheelCache(world.tmp / "empty")
    assert not list((world.tmp / "empty").rglob("srcpkg-*.whl")) and not list(
        (world.tmp / "empty").rglob("srcleaf-*.whl")
    )
    assert cache.lookup(pins["srcpkg"].sha256, pins["srcpkg"].wheel) is None
    assert not list((world.tmp / "two").glob("*.zip"))


def test_a_lock_with_a_built_wheel_not_in_the_cache_needs_docker(world: World) -> None:
    first = build(options(world, client=engine(BuildContainer(world.index, native(world.tmp)))))
    client = FakeDockerClient()
    with pytest.raises(LockError) as raised:
        build(options(world, client=client, docker=None, cache="empty", out="two", lock=first.lock_path))
    assert raised.value.exit_code == 2
    assert (
        "was built from source" in raised.value.message and "not in the wheel cache" in raised.value.message
    )
    assert "srcleaf 0.5" in raised.value.message or "srcpkg 1.1" in raised.value.message
    assert "pass --docker" in str(raised.value.hint) and IMAGE in str(raised.value.hint)
    assert client.calls == []  # no engine was asked for anything


def test_a_lock_naming_another_build_image_is_refused(world: World) -> None:
    first = build(options(world, client=engine(BuildContainer(world.index, native(world.tmp)))))
    raw = json.loads(first.lock_path.read_text())
    for package in raw["packages"]:
        if "built_from" in package:
            package["built_from"]["image"] = "evil.example/any-image:latest"
    raw.pop("lock_hash")
    hostile = world.tmp / "hostile.lock.json"
    hostile.write_text(json.dumps(raw))
    client = FakeDockerClient()
    with pytest.raises(LockError, match=r"evil\.example/any-image:latest"):
        build(options(world, client=client, cache="empty", out="two", lock=hostile))
    assert client.calls == []


def test_a_lock_pointing_at_a_host_file_gets_nothing_past_the_hash_check(world: World) -> None:
    """A `file:` URL is legitimate (a local mirror), so it is read, but only the locked bytes pass."""
    secret = world.tmp / "secret" / "srcdep-1.0-py3-none-any.whl"
    secret.parent.mkdir()
    secret.write_bytes(b"a file of this machine, not the wheel the lock names")
    package = LockedPackage("srcdep", "1.0", secret.name, secret.as_uri(), "0" * 64, True)
    raw = {
        "schema_version": 1,
        "recipe": "src",
        "runtime": "python3.11",
        "arch": "x86_64",
        "index_url": world.index.url,
        "packages": [package.as_dict()],
    }
    hostile = world.tmp / "hostile.lock.json"
    hostile.write_text(json.dumps(raw))
    with pytest.raises(HashMismatchError) as raised:
        build(options(world, docker=None, cache="empty", lock=hostile))
    assert "srcdep" in raised.value.message
    # Nothing of it was kept (only the cache entry's lock file is there), and no index was asked.
    kept = [p.name for p in (world.tmp / "empty").rglob("*") if p.is_file()]
    assert kept == [".lock"] and world.index.requests == []


# --------------------------------------------------------------------------------------------------
# linux_<arch> wheels: only the ones built in the image


def test_a_linux_tagged_wheel_from_the_index_is_never_taken(local_index: LocalIndex, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    make_sdist(local_index.wheel_dir, "rogue", "1.0", sentinel)
    # Some private indexes hold wheels built on an arbitrary Linux; PyPI refuses them.
    local_index.add_wheel("rogue", "2.0", LINUX)
    container = BuildContainer(local_index, native(tmp_path), requires={})
    builder = SourceBuilder(
        TARGET,
        local_index.url,
        WheelCache(tmp_path / "c"),
        enabled=True,
        client_factory=lambda: engine(container),
    )
    with pytest.raises(ResolutionError) as raised:
        builder.resolve("r", ["rogue"])
    assert container.built == ["rogue==1.0"]  # the sdist was built, then pip preferred the index's 2.0
    assert "rogue-2.0-cp311-cp311-linux_x86_64.whl" in str(raised.value) and "linux_x86_64" in str(
        raised.value
    )
    assert not sentinel.exists()


def test_the_audit_still_checks_the_objects_of_a_built_wheel(world: World) -> None:
    container = BuildContainer(world.index, native(world.tmp, new_glibc=True))
    with pytest.raises(AuditError) as raised:
        build(options(world, client=engine(container)))
    message = str(raised.value)
    assert "GLIBC_2.34" in message and f"srcpkg-1.1-{LINUX}.whl" in message


def test_host_pip_keeps_only_binary_when_built_wheels_are_offered(tmp_path: Path) -> None:
    command = pip_command(["app"], TARGET, tmp_path / "r", tmp_path / "t", tmp_path / "b")
    assert "--only-binary=:all:" in command
    assert not any(part.startswith("--no-binary") for part in command)
    assert command[command.index("--find-links") + 1] == str(tmp_path / "b")
    assert "linux_x86_64" in command and "--no-build-isolation" not in command


# --------------------------------------------------------------------------------------------------
# The lock reader: the new field is hostile input like the rest


BUILT = {
    "sdist": "https://files.example.invalid/srcpkg-1.1.tar.gz",
    "sdist_sha256": "ab" * 32,
    "image": IMAGE,
    "source_date_epoch": SOURCE_DATE_EPOCH,
}


def lock_with(package: dict[str, Any], arch: str = "x86_64") -> dict[str, Any]:
    return {
        "schema_version": 1,
        "recipe": "src",
        "runtime": "python3.11",
        "arch": arch,
        "index_url": "https://pypi.org/simple",
        "packages": [package],
    }


def built_package(**changes: Any) -> dict[str, Any]:
    package = {
        "name": "srcpkg",
        "version": "1.1",
        "wheel": f"srcpkg-1.1-{LINUX}.whl",
        "url": "file:///cache/wheels/cd/" + "cd" * 32 + f"/srcpkg-1.1-{LINUX}.whl",
        "sha256": "cd" * 32,
        "built_from": dict(BUILT),
    }
    for key, value in changes.items():
        if key.startswith("built_from."):
            package["built_from"][key.split(".", 1)[1]] = value
        else:
            package[key] = value
    return package


def test_a_lock_with_built_from_loads_and_a_lock_without_it_loads_as_before() -> None:
    loaded = lock_from_dict(lock_with(built_package()), "x.lock.json")
    assert loaded.packages[0].built_from is not None
    assert loaded.packages[0].built_from.as_dict() == BUILT
    old = {
        "name": "demo",
        "version": "1.0",
        "wheel": "demo-1.0-py3-none-any.whl",
        "url": "https://x.invalid/d.whl",
    }
    old["sha256"] = "ef" * 32
    lock = lock_from_dict(lock_with(old), "old.lock.json")
    assert lock.packages[0].built_from is None and "built_from" not in lock.as_dict()["packages"][0]
    # The lock hash of a lock without built wheels is what it always was.
    canonical = json.dumps(
        {
            "runtime": "python3.11",
            "arch": "x86_64",
            "packages": [["demo", "1.0", old["wheel"], old["sha256"]]],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert lock.lock_hash == hashlib.sha256(canonical.encode()).hexdigest()
    assert lock_from_dict(dict(lock_with(old), lock_hash=lock.lock_hash), "old.lock.json") == lock


@pytest.mark.parametrize(
    ("package", "arch", "problem"),
    [
        (built_package(built_from="yes"), "x86_64", "built_from`: expected an object"),
        (built_package(**{"built_from.sdist": "ftp://x/srcpkg-1.1.tar.gz"}), "x86_64", "built_from.sdist"),
        (
            built_package(**{"built_from.sdist": "https://u:tok@x.invalid/s.tar.gz"}),
            "x86_64",
            "without credentials",
        ),
        (built_package(**{"built_from.sdist": ["x"]}), "x86_64", "built_from.sdist"),
        (built_package(**{"built_from.sdist_sha256": "AB" * 32}), "x86_64", "built_from.sdist_sha256"),
        (built_package(**{"built_from.image": "img; rm -rf /"}), "x86_64", "built_from.image"),
        (built_package(**{"built_from.image": "--privileged"}), "x86_64", "built_from.image"),
        (built_package(**{"built_from.source_date_epoch": True}), "x86_64", "source_date_epoch"),
        (built_package(**{"built_from.source_date_epoch": -1}), "x86_64", "source_date_epoch"),
        (built_package(**{"built_from.source_date_epoch": 10**30}), "x86_64", "source_date_epoch"),
        (
            built_package(wheel="other-1.1-cp311-cp311-linux_x86_64.whl"),
            "x86_64",
            "not a wheel of srcpkg 1.1",
        ),
        (built_package(wheel="srcpkg.whl"), "x86_64", "not a wheel file name"),
        (built_package(), "arm64", "another architecture"),
        (built_package(built_from=None), "x86_64", "which only a wheel layerforge built from source"),
    ],
)
def test_hostile_built_from_fields_are_refused_as_bad_input(
    package: dict[str, Any], arch: str, problem: str
) -> None:
    with pytest.raises(LockError) as raised:
        lock_from_dict(lock_with(package, arch), "hostile.lock.json")
    assert problem in raised.value.message and raised.value.exit_code == 2


def test_a_hand_edited_built_from_does_not_match_the_lock_hash() -> None:
    raw = lock_with(built_package())
    raw["lock_hash"] = lock_from_dict(raw, "x").lock_hash
    raw["packages"][0]["built_from"]["sdist_sha256"] = "ef" * 32
    with pytest.raises(LockError, match="lock_hash"):
        lock_from_dict(raw, "x")


# --------------------------------------------------------------------------------------------------
# The index's sdists


def test_the_index_lists_sdists_with_their_hash_and_drops_what_is_not_the_projects(tmp_path: Path) -> None:
    page = tmp_path / "simple" / "srcpkg"
    page.mkdir(parents=True)
    good = "ab" * 32
    page.joinpath("index.html").write_text(
        "<html><body>"
        f'<a href="../../files/srcpkg-1.1.tar.gz#sha256={good}">srcpkg-1.1.tar.gz</a>'
        '<a href="../../files/srcpkg-1.0.tar.gz#sha256=nothex" data-yanked="">srcpkg-1.0.tar.gz</a>'
        f'<a href="../../files/other-9.0.tar.gz#sha256={good}">other-9.0.tar.gz</a>'
        f'<a href="https://elsewhere.invalid/srcpkg-3.0.tar.gz#sha256={good}">srcpkg-3.0.tar.gz</a>'
        '<a href="../../files/srcpkg-1.1-py3-none-any.whl">w</a>'
        '<a href="http://[::1/srcpkg-4.0.tar.gz">malformed</a>'
        "</body></html>"
    )
    wheels, sdists, failure = fetch_project_files((tmp_path / "simple").as_uri(), "SrcPkg")
    assert failure is None and [w.filename for w in wheels] == ["srcpkg-1.1-py3-none-any.whl"]
    assert [(s.filename, s.sha256, s.yanked) for s in sdists] == [
        ("srcpkg-1.1.tar.gz", good, False),
        ("srcpkg-1.0.tar.gz", None, True),
    ]
    assert sdists[0].url == (tmp_path / "files" / "srcpkg-1.1.tar.gz").as_uri() + f"#sha256={good}"


def test_the_sdist_to_build_is_the_newest_that_fits_python_and_not_yanked_tar_gz_first(
    tmp_path: Path,
) -> None:
    page = tmp_path / "simple" / "srcpkg"
    page.mkdir(parents=True)
    links = [
        ("srcpkg-1.1.zip", ""),
        ("srcpkg-1.1.tar.gz", ""),
        ("srcpkg-1.2.tar.gz", ' data-requires-python="&gt;=3.12"'),
        ("srcpkg-1.3.tar.gz", ' data-yanked="broken"'),
        ("srcpkg-2.0.tar.gz", ""),
    ]
    page.joinpath("index.html").write_text(
        "".join(f'<a href="../../f/{name}#sha256={"ab" * 32}"{attrs}>{name}</a>' for name, attrs in links)
    )
    _, sdists, failure = fetch_project_files((tmp_path / "simple").as_uri(), "srcpkg")
    assert failure is None
    assert pick_sdist(sdists, Requirement("srcpkg<2"), TARGET).filename == "srcpkg-1.1.tar.gz"
    assert pick_sdist(sdists, Requirement("srcpkg<2"), Target("python3.12")).filename == "srcpkg-1.2.tar.gz"
    with pytest.raises(
        ResolutionError, match=r"has a source distribution for Python 3\.11 on the index either"
    ):
        pick_sdist(sdists, Requirement("srcpkg>2"), TARGET)
