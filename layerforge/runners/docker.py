"""The Docker engine: Lambda's lockdown as a container description, images, and running one container.

A container's description is a frozen `ContainerSpec`, so tests can check every field without an engine.
Two kinds of container use it: the verifier (`verify/container.py`), which imports a layer in the Lambda
image with the layer mounted read-only at /opt exactly where Lambda unpacks it, as a non-root user, with no
network, on a read-only root filesystem with a writable /tmp; and the source build
(`resolve/container_build.py`), which builds a wheel in the build image of the target's runtime.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import BuildError
from ..target import Target

# The docker SDK ships no type information; a client is whatever docker.from_env() returns (or a fake).
DockerClient = Any

LAYER_MOUNT = "/opt"  # where Lambda unpacks a layer
# Inside the container only, where it is a fresh tmpfs: nothing is shared with the host's /tmp.
CONTAINER_TMP = "/tmp"  # noqa: S108
TASK_ROOT = "/var/task"  # Lambda's working directory, read-only there as here
# Lambda runs functions as sbx_user1051, uid 993 gid 990. A number needs no /etc/passwd entry in the image.
LAMBDA_USER = "993:990"
# Lambda's own limits on processes and open files per execution environment.
LAMBDA_PIDS_LIMIT = 1024
LAMBDA_NOFILE = 1024
# Lambda's default ephemeral storage. Docker mounts a tmpfs noexec unless told: Lambda's /tmp is executable.
TMPFS_OPTIONS = "rw,exec,nosuid,nodev,size=512m,mode=1777"
# The variables Lambda sets that packages read (PATH and LD_LIBRARY_PATH as the python runtime has them).
# Nothing of the host's environment goes in: no credentials, no PYTHONPATH, no proxies.
LAMBDA_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LAMBDA_LD_LIBRARY_PATH = (
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
)
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
# What `docker image inspect` calls each architecture.
IMAGE_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}
LABEL = "io.layerforge.role"

# Time the engine gets beyond the check's own timeout to start the container and tear it down.
_ENGINE_GRACE_SECONDS = 60.0


class DockerError(BuildError):
    """The Docker engine could not run the check or the build (not the layer's fault). Exit 1."""


@dataclass(frozen=True)
class Mount:
    """One bind mount: a host folder seen at `target` inside the container."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the engine is told about one container, in plain values a test can compare.

    `create_kwargs()` turns it into the keyword arguments of the docker SDK's `containers.create`.
    """

    image: str
    platform: str  # linux/amd64 or linux/arm64
    entrypoint: tuple[str, ...]  # replaces the image's Runtime Interface Emulator
    command: tuple[str, ...]
    user: str
    environment: Mapping[str, str]
    mounts: tuple[Mount, ...]
    working_dir: str
    tmpfs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({CONTAINER_TMP: TMPFS_OPTIONS}))
    network_disabled: bool = True
    # Only for an index on this machine's loopback, which a container on Docker's bridge cannot reach.
    host_network: bool = False
    read_only: bool = True
    auto_remove: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    security_opt: tuple[str, ...] = ("no-new-privileges",)
    pids_limit: int = LAMBDA_PIDS_LIMIT
    nofile: int = LAMBDA_NOFILE
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({LABEL: "verify"}))

    def create_kwargs(self) -> dict[str, Any]:
        import docker.types  # noqa: PLC0415 - see _sdk_errors

        return {
            "image": self.image,
            "platform": self.platform,
            "entrypoint": list(self.entrypoint),
            "command": list(self.command),
            "user": self.user,
            "environment": dict(self.environment),
            "volumes": {
                m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in self.mounts
            },
            "working_dir": self.working_dir,
            "tmpfs": dict(self.tmpfs),
            # `docker run --network none`: the container gets a loopback interface and nothing else.
            "network_mode": "none" if self.network_disabled else ("host" if self.host_network else "bridge"),
            "read_only": self.read_only,
            "auto_remove": self.auto_remove,
            "cap_drop": list(self.cap_drop),
            "security_opt": list(self.security_opt),
            "pids_limit": self.pids_limit,
            "ulimits": [docker.types.Ulimit(name="nofile", soft=self.nofile, hard=self.nofile)],
            "labels": dict(self.labels),
            "stdin_open": False,
            "tty": False,
            "detach": True,
        }


def default_image(target: Target) -> str:
    """The AWS Lambda base image of the target's runtime; one multi-arch tag serves both architectures."""
    return f"public.ecr.aws/lambda/python:{target.python_dotted}"


def image_python(target: Target) -> str:
    """Where the Lambda (and SAM build) images keep the runtime's interpreter."""
    return f"/var/lang/bin/python{target.python_dotted}"


def lambda_environment(target: Target) -> dict[str, str]:
    """The environment a function sees on Lambda, less everything account- or invocation-specific."""
    return {
        "PATH": LAMBDA_PATH,
        "LD_LIBRARY_PATH": LAMBDA_LD_LIBRARY_PATH,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "HOME": CONTAINER_TMP,  # the one writable place, as on Lambda
        "TMPDIR": CONTAINER_TMP,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{target.runtime}",
    }


# ---------------------------------------------------------------------------------------------------
# Talking to the engine


def _sdk_errors() -> Any:
    """docker.errors, imported on first use: the SDK costs 0.1 s to import and most runs never need it."""
    import docker.errors  # noqa: PLC0415

    return docker.errors


def docker_from_env() -> DockerClient:
    """A client for the engine DOCKER_HOST (or the Docker context) names; DockerError when none answers."""
    import docker  # noqa: PLC0415 - see _sdk_errors
    import docker.errors  # noqa: PLC0415

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (docker.errors.DockerException, OSError) as error:
        raise DockerError(
            f"no Docker engine answered: {engine_problem(error)}",
            hint="start Docker (Docker Desktop, or `sudo systemctl start docker`) or set DOCKER_HOST",
        ) from error
    return client


def engine_problem(error: BaseException) -> str:
    """What went wrong reaching the engine, in words, from the SDK's nested error text."""
    text = " ".join(str(error).split())
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if "FileNotFoundError" in text or "No such file or directory" in text:
        return f"nothing listens at {where} (Docker is not installed, not running, or DOCKER_HOST is wrong)"
    if "ConnectionRefusedError" in text or "Connection refused" in text:
        return f"the engine at {where} refused the connection (it is not running)"
    if "PermissionError" in text or "Permission denied" in text:
        return (
            f"permission denied on {where}: add yourself to the docker group "
            "(`sudo usermod -aG docker $USER`, then log in again)"
        )
    return text[:300] or type(error).__name__


def ensure_image(
    client: DockerClient, image: str, target: Target, note: Callable[[str], None] | None = None
) -> None:
    """Pull `image` for the target's platform unless a copy for that architecture is already here.

    A tag pulled earlier for the other architecture would run under emulation or not at all, so the
    local image's architecture is checked, not only its name.
    """
    docker_errors = _sdk_errors()

    wanted = IMAGE_ARCHITECTURES[target.arch]
    try:
        local = client.images.get(image)
        if str(local.attrs.get("Architecture", wanted)) == wanted:
            return
    except docker_errors.ImageNotFound:
        pass
    except docker_errors.APIError as error:
        raise DockerError(f"could not inspect the image {image}: {error}") from error
    repository, tag = split_image(image)
    if note is not None:
        note(f"pulling {image} for {PLATFORMS[target.arch]} (once; later runs reuse it)")
    try:
        client.images.pull(repository, tag=tag, platform=PLATFORMS[target.arch])
    except docker_errors.DockerException as error:
        raise DockerError(
            f"could not pull {image} for {PLATFORMS[target.arch]}: {engine_problem(error)}",
            hint="check the network and the image name; `docker pull --platform "
            f"{PLATFORMS[target.arch]} {image}` shows the same error in full",
        ) from error


def image_digest(client: DockerClient, image: str) -> str:
    """What `image` is now, by content: `repository@sha256:...` when a registry gave it, else the engine's
    own id `sha256:...` (an image built or imported on this machine, which no registry can give again)."""
    docker_errors = _sdk_errors()
    try:
        attrs = client.images.get(image).attrs
    except docker_errors.DockerException as error:
        raise DockerError(f"could not inspect the image {image}: {engine_problem(error)}") from error
    repository, _ = split_image(image)
    for digest in attrs.get("RepoDigests") or ():
        if str(digest).split("@", 1)[0] == repository:
            return str(digest)
    return str(attrs["Id"])


def split_image(image: str) -> tuple[str, str | None]:
    """("repo", "tag") of an image reference; a registry's port (host:5000/x) is not a tag."""
    if "@" in image:
        return image, None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"


@dataclass(frozen=True)
class ContainerOutput:
    """What one container printed, and whether layerforge had to stop it."""

    stdout: str
    stderr: str
    killed: bool = False
    problem: str = ""  # the engine's error, when the output could not be read to the end


def run_container(client: DockerClient, spec: ContainerSpec, *, timeout: float) -> ContainerOutput:
    """Create, attach, start and read one container to its end; the engine removes it (auto_remove).

    Attaching before starting is what `docker run --rm` does: output cannot be lost to a container that
    exits (and is removed) before anyone asked for its logs.
    """
    docker_errors = _sdk_errors()

    try:
        container = client.containers.create(**spec.create_kwargs())
    except docker_errors.DockerException as error:
        raise DockerError(f"the engine refused the container: {engine_problem(error)}") from error
    out, err = bytearray(), bytearray()
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        with suppress(Exception):  # it may have ended and been removed in the meantime
            container.kill()

    watchdog = threading.Timer(timeout + _ENGINE_GRACE_SECONDS, kill)
    watchdog.daemon = True
    try:
        stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
        container.start()
    except docker_errors.DockerException as error:
        with suppress(Exception):  # created but never started: auto_remove will not remove it
            container.remove(force=True)
        raise DockerError(
            f"the container did not start: {engine_problem(error)}",
            hint=f"check that {spec.image} has {spec.entrypoint[0]}",
        ) from error
    watchdog.start()
    problem = ""
    try:
        for chunk_out, chunk_err in stream:
            out += chunk_out or b""
            err += chunk_err or b""
    except Exception as error:  # the SDK raises requests', urllib3's and socket errors alike here
        problem = engine_problem(error)
    finally:
        watchdog.cancel()
        with suppress(Exception):
            stream.close()
    return ContainerOutput(
        out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), killed.is_set(), problem
    )
