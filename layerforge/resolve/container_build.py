"""Build one pinned requirement from its sdist in the build image of the target's runtime, never on the host.

A host compiler links against the host's glibc and CPU, which is how layers that import fine on a laptop
break on Lambda. `source_build.py` decides what to build; this module describes and runs the container.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from ..cache import is_sha256
from ..errors import BuildError, InputError
from ..runners.docker import (
    LABEL,
    LAMBDA_USER,
    PLATFORMS,
    ContainerSpec,
    DockerClient,
    Mount,
    docker_from_env,
    ensure_image,
    image_python,
    lambda_environment,
    run_container,
)
from ..target import Target
from .index import redact_url


def build_image(target: Target) -> str:
    """The AWS SAM build image: the runtime's OS, glibc and Python, and the compilers the base image lacks."""
    return f"public.ecr.aws/sam/build-python{target.python_dotted}:latest-{target.arch}"


WORK_MOUNT = "/work"
REQUIREMENT_FILE = "requirement.txt"
# The index URL (which may carry credentials) reaches pip through a config file mounted read-only here:
# a container's command line, environment and labels are anyone's to read with `docker inspect`.
CONFIG_MOUNT = "/layerforge-config"
PIP_CONFIG = "pip.conf"


def source_build_spec(
    target: Target,
    requirement: str,
    work_dir: Path,
    *,
    index_url: str,
    config_dir: Path,
    image: str | None = None,
    user: str | None = None,
    sdist_sha256: str | None = None,
    source_date_epoch: int | None = None,
) -> ContainerSpec:
    """The container that builds one pinned requirement (`name==version`) into a wheel in work_dir/out.

    Unlike the verifier it needs the network (the sdist and its build requirements come from the index)
    and a writable folder; it still runs as a non-root user on a read-only root filesystem. The user is
    the host's own uid (so the host can read and remove what it wrote), or Lambda's when the host is root.

    With `sdist_sha256`, pip reads the requirement with that hash from work_dir/REQUIREMENT_FILE (which
    build_wheel_in_docker writes), so it builds exactly that sdist and no other file of the release. With
    `source_date_epoch`, the build tools stamp that time instead of now, so a rebuild can match.
    `index_url` is not in the spec: pip reads it from config_dir/PIP_CONFIG (see write_pip_config); it is
    looked at only to choose the network.
    """
    name = requirement.split("==", 1)[0].strip()
    if not name or "==" not in requirement:
        raise InputError(
            f"cannot build {requirement!r} from source: it is not pinned as name==version",
            hint="build from source only what the lock pinned",
        )
    env = lambda_environment(target)
    env.update(
        HOME=f"{WORK_MOUNT}/home",
        TMPDIR=f"{WORK_MOUNT}/scratch",
        PIP_CACHE_DIR=f"{WORK_MOUNT}/cache",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_CONFIG_FILE=f"{CONFIG_MOUNT}/{PIP_CONFIG}",
    )
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(int(source_date_epoch))
    what: tuple[str, ...] = (requirement,)
    if sdist_sha256 is not None:
        if not is_sha256(sdist_sha256):
            raise InputError(f"not a sha256: {sdist_sha256!r}")
        what = ("--require-hashes", "-r", f"{WORK_MOUNT}/{REQUIREMENT_FILE}")
    return ContainerSpec(
        image=image or build_image(target),
        platform=PLATFORMS[target.arch],
        entrypoint=(image_python(target),),
        command=(
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-binary",
            name,
            "--wheel-dir",
            f"{WORK_MOUNT}/out",
            *what,
        ),
        user=user or _host_user(),
        environment=MappingProxyType(env),
        mounts=(
            Mount(str(work_dir), WORK_MOUNT, read_only=False),
            Mount(str(config_dir), CONFIG_MOUNT, read_only=True),
        ),
        working_dir=WORK_MOUNT,
        network_disabled=False,
        host_network=_on_loopback(index_url),
        labels=MappingProxyType({LABEL: "build"}),
    )


def _on_loopback(url: str) -> bool:
    """An index served on this machine's loopback (a local mirror or proxy) is reachable only from the
    host's network namespace; every other index goes through Docker's bridge."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def write_pip_config(config_dir: Path, index_url: str) -> None:
    """The index for pip in the container, readable by the container's user and no other user here."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in index_url):
        # A line break would add settings of its own to the file.
        raise InputError(f"the index URL {redact_url(index_url)!r} holds whitespace or control characters")
    config = config_dir / PIP_CONFIG
    config.write_text(f"[global]\nindex-url = {index_url}\n")
    config.chmod(0o400)
    if _host_user() == LAMBDA_USER and hasattr(os, "chown"):  # a root host: the container runs as 993
        uid, gid = (int(part) for part in LAMBDA_USER.split(":"))
        os.chown(config_dir, uid, gid)
        os.chown(config, uid, gid)


def _host_user() -> str:
    uid, gid = (os.getuid(), os.getgid()) if hasattr(os, "getuid") else (0, 0)
    return LAMBDA_USER if uid == 0 else f"{uid}:{gid}"


def build_wheel_in_docker(
    requirement: str,
    target: Target,
    dest: Path,
    *,
    index_url: str,
    client: DockerClient | None = None,
    image: str | None = None,
    timeout: float = 1800.0,
    note: Callable[[str], None] | None = None,
    sdist_sha256: str | None = None,
    source_date_epoch: int | None = None,
) -> Path:
    """Build `requirement` (name==version) from source in the target's build image; the wheel lands in dest.

    `sdist_sha256` pins the exact sdist and `source_date_epoch` the build time (see source_build_spec).
    Raises DockerError when the engine cannot run it and BuildError when pip fails, with pip's last lines.
    """
    client = client if client is not None else docker_from_env()
    chosen = image or build_image(target)
    ensure_image(client, chosen, target, note)
    dest.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix="layerforge-sdist-"))
    work, config = top / "work", top / "config"
    try:
        for folder in (work, config, *(work / sub for sub in ("out", "home", "scratch", "cache"))):
            folder.mkdir(mode=0o700)
        if _host_user() == LAMBDA_USER:  # a root host: Lambda's uid must be able to write here
            for folder in (top, work, *work.iterdir()):
                folder.chmod(0o777)
            top.chmod(0o711)  # through to the folders, without listing them
        write_pip_config(config, index_url)
        spec = source_build_spec(
            target,
            requirement,
            work,
            index_url=index_url,
            config_dir=config,
            image=chosen,
            sdist_sha256=sdist_sha256,
            source_date_epoch=source_date_epoch,
        )
        if sdist_sha256 is not None:
            (work / REQUIREMENT_FILE).write_text(f"{requirement} --hash=sha256:{sdist_sha256}\n")
        output = run_container(client, spec, timeout=timeout)
        wheels = sorted((work / "out").glob("*.whl"))
        if not wheels:
            tail = "\n".join((output.stderr or output.stdout or output.problem).strip().splitlines()[-15:])
            raise BuildError(
                f"{requirement} could not be built from source in {chosen}:\n{tail}",
                hint="it may need system libraries the build image lacks; pin a version that has a wheel "
                f"for {target.label}",
            )
        built = dest / wheels[0].name
        shutil.copyfile(wheels[0], built)
        return built
    finally:
        shutil.rmtree(top, ignore_errors=True)
