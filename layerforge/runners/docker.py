"""Verify a layer inside the AWS Lambda base image, and build wheels from source there, with Docker.

A host that has no CPython of the target's version and architecture (a Mac, Windows, an x86_64 laptop
building for arm64) can still import-check a layer: the same bootstrap that `verify.py` runs locally runs
inside `public.ecr.aws/lambda/python:3.X` for the target's platform, with the layer mounted read-only at
/opt exactly where Lambda unpacks it, as a non-root user, with no network, on a read-only root filesystem
with a writable /tmp, and the container removed when it exits.

The container's description is a frozen `ContainerSpec` made by a pure function, so tests can check every
field without an engine. The Lambda images' entrypoint is the Runtime Interface Emulator, which would wait
for invocations; the spec replaces it with the image's own python (`/var/lang/bin/python3.X`), which runs a
small driver: the driver starts the bootstrap twice (imports, then smoke code) exactly as verify.py does on
a host, each in a fresh isolated interpreter, and prints each run's output as one marked JSON line.

Requirements without a wheel for the target are built from source only inside a container too
(`source_build_spec` / `build_wheel_in_docker`), never on the host: a host compiler links against the
host's glibc and CPU, which is how layers that import fine on a laptop break on Lambda.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..cache import is_sha256
from ..errors import BuildError, InputError
from ..target import Target

# verify.py owns the bootstrap, the parsing of its markers and the mapping of failures back to strip rules;
# this module reuses them rather than keeping a second copy that could drift. These are private names:
# see the module's report to the lead for the small public function that should replace them.
from ..verify.local import (
    BootstrapRun,
    FailureContext,
    VerifyReport,
    bootstrap_source,
    build_report,
    check_inputs,
    join_output,
    layer_roots,
    parse_bootstrap_output,
    read_only_copy,
)
from .interpreters import Interpreter

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

# One argv string may hold at most 128 KiB on Linux (MAX_ARG_STRLEN); the driver, the bootstrap and the
# smoke code travel in one. Stay well under it and say so rather than fail inside the engine.
_MAX_PROGRAM_CHARS = 120_000
# Time the engine gets beyond the check's own timeout to start the container and tear it down.
_ENGINE_GRACE_SECONDS = 60.0
# How often the driver proves it is alive: the SDK's socket read times out after 60 s of silence.
_HEARTBEAT_SECONDS = 5.0
_DRIVER_MARKER = "@@layerforge-docker@@ "
_OUTPUT_TAIL = 2000

# The program the image's python runs (`-I -S -B -c`). It must run on every runtime (3.9 and up), so it
# keeps to 3.9 syntax and the stdlib. It mirrors verify._run: a fresh `-I -S -B` interpreter per mode, a
# session of its own so a timeout kills whatever the smoke code started, the config on stdin.
_DRIVER = """\
import json, os, platform, signal, subprocess, sys, sysconfig, threading, time

LOCK = threading.Lock()


def emit(record):
    with LOCK:
        sys.stdout.write(MARK + json.dumps(record) + "\\n")
        sys.stdout.flush()


def heartbeat(stop):
    while not stop.wait(HEARTBEAT):
        emit({"alive": True})


def run(spec, config, deadline):
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", "-c", spec["bootstrap"]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    timed_out = False
    try:
        remaining = max(deadline - time.monotonic(), 1.0)
        out, err = child.communicate(json.dumps(config).encode(), timeout=remaining)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            out, err = child.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            out, err = b"", b""
    return {
        "mode": config["mode"], "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"), "returncode": child.returncode, "timed_out": timed_out,
    }


def main(text):
    spec = json.loads(text)
    deadline = time.monotonic() + spec["timeout"]
    layer = spec["layer"]
    python = os.path.join(layer, "python")
    emit({"interpreter": {
        "version": list(sys.version_info[:2]), "machine": platform.machine(),
        "implementation": sys.implementation.name, "executable": sys.executable,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "layer_seen": os.path.isdir(python),
    }})
    if not os.path.isdir(python):
        return
    site = os.path.join(layer, spec["site_packages"])
    paths = [site, python] if os.path.isdir(site) else [python]
    base = {"layer_paths": paths, "modules": spec["modules"], "distributions": spec["distributions"]}
    stop = threading.Event()
    threading.Thread(target=heartbeat, args=(stop,), daemon=True).start()
    try:
        imports = run(spec, dict(base, mode="imports"), deadline)
        emit(imports)
        if spec["smoke"] and not imports["timed_out"]:
            emit(run(spec, dict(base, mode="smoke", smoke=spec["smoke"]), deadline))
    finally:
        stop.set()
"""


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
            "network_mode": "none" if self.network_disabled else "bridge",
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


def container_spec(
    target: Target,
    layer_root: Path,
    *,
    image: str | None = None,
    modules: Sequence[str],
    distributions: Sequence[str],
    smoke: str | None,
    timeout: float = 300.0,
) -> ContainerSpec:
    """The container that import-checks the layer at `layer_root` (a folder holding python/) for `target`.

    Pure: reads nothing and starts nothing. Which of python/ and python/lib/python3.X/site-packages go on
    sys.path is decided inside the container, where the layer is, as Lambda decides it.
    """
    spec = {
        "layer": LAYER_MOUNT,
        "site_packages": target.site_packages,
        "modules": list(modules),
        "distributions": list(distributions),
        "smoke": smoke or "",
        "timeout": timeout,
        "bootstrap": bootstrap_source(),
    }
    program = (
        f"MARK = {_DRIVER_MARKER!r}\nHEARTBEAT = {_HEARTBEAT_SECONDS!r}\n"
        + _DRIVER
        + f"main({json.dumps(spec)!r})\n"
    )
    if len(program) > _MAX_PROGRAM_CHARS:
        raise InputError(
            f"the smoke code and module list are too long to pass to a container ({len(program):,} "
            f"characters with the verifier; at most {_MAX_PROGRAM_CHARS:,})",
            hint="shorten [verify] smoke, or move it into a module of the layer and import that",
        )
    return ContainerSpec(
        image=image or default_image(target),
        platform=PLATFORMS[target.arch],
        entrypoint=(image_python(target),),
        command=("-I", "-S", "-B", "-c", program),
        user=LAMBDA_USER,
        environment=MappingProxyType(lambda_environment(target)),
        mounts=(Mount(str(layer_root), LAYER_MOUNT, read_only=True),),
        working_dir=TASK_ROOT,
    )


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


# ---------------------------------------------------------------------------------------------------
# Verification


def verify_in_docker(
    layer_root: Path,
    target: Target,
    *,
    modules: Sequence[str],
    distributions: Sequence[str],
    smoke: str | None,
    removed: Mapping[str, str] | None,
    client: DockerClient | None = None,
    image: str | None = None,
    timeout: float = 300.0,
    note: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Import-check the layer at `layer_root` inside the Lambda image of `target`, like verify_layer.

    The layer is mounted from a read-only copy (files 0444, folders 0555) so that the container's
    non-root user can read every file whatever the host's umask, and the caller's tree stays untouched.
    Raises DockerError when the engine cannot run the check, InputError when `image` is not the target's
    Python, and returns a report whose failures name the module, the error and the strip rule.
    """
    check_inputs(layer_root, modules)
    client = client if client is not None else docker_from_env()
    chosen = image or default_image(target)
    ensure_image(client, chosen, target, note)
    started = time.perf_counter()
    # The disk's temp folder, not /dev/shm: Docker Desktop shares /tmp and the user's folders with its VM,
    # never /dev/shm, and a mount of a folder the engine cannot see arrives empty.
    with read_only_copy(layer_root, scratch=Path(tempfile.gettempdir())) as sandbox:
        copy_seconds = time.perf_counter() - started
        spec = container_spec(
            target,
            sandbox.layer,
            image=chosen,
            modules=modules,
            distributions=distributions,
            smoke=smoke,
            timeout=timeout,
        )
        output = run_container(client, spec, timeout=timeout)
        roots = layer_roots(sandbox.layer, target)
    return report_from_output(
        output, target, spec, roots=roots, modules=modules, removed=removed or {}, copy_seconds=copy_seconds
    )


def report_from_output(
    output: ContainerOutput,
    target: Target,
    spec: ContainerSpec,
    *,
    roots: Sequence[str],
    modules: Sequence[str],
    removed: Mapping[str, str],
    copy_seconds: float = 0.0,
) -> VerifyReport:
    """Turn the driver's marked lines into verify.py's report, with paths as Lambda shows them (/opt)."""
    header, runs = _driver_records(output.stdout)
    if header is None:
        raise _no_answer(output, spec, target)
    interpreter = _interpreter(header, spec, target)
    if not header.get("layer_seen"):
        source = spec.mounts[0].source
        raise DockerError(
            f"the layer did not reach the container: the engine sees no python/ folder at {LAYER_MOUNT} "
            f"(mounted from {source})",
            hint="the engine runs on another machine or VM that cannot see this folder: with Docker Desktop, "
            "share it under Settings > Resources > File sharing, or set TMPDIR to a folder that is shared",
        )
    imports = runs.get("imports") or BootstrapRun(
        result=None,
        output=join_output(output.stdout[-_OUTPUT_TAIL:], output.stderr or output.problem),
        timed_out=output.killed,
    )
    context = FailureContext(Path(LAYER_MOUNT), list(roots), removed)
    return build_report(
        interpreter,
        imports=imports,
        smoke=runs.get("smoke"),
        context=context,
        modules=list(modules),
        copy_seconds=copy_seconds,
    )


def _driver_records(stdout: str) -> tuple[dict[str, Any] | None, dict[str, BootstrapRun]]:
    header: dict[str, Any] | None = None
    runs: dict[str, BootstrapRun] = {}
    for line in stdout.splitlines():
        _, marker, body = line.partition(_DRIVER_MARKER)
        if not marker:
            continue
        try:
            record = json.loads(body)
        except ValueError:  # a line cut short by a kill
            continue
        if "interpreter" in record:
            header = record["interpreter"]
        elif "mode" in record:
            run = parse_bootstrap_output(record["stdout"])
            run.output = join_output(run.output, record["stderr"])
            run.returncode = record["returncode"]
            run.timed_out = bool(record["timed_out"])
            runs[record["mode"]] = run
    return header, runs


def _interpreter(header: Mapping[str, Any], spec: ContainerSpec, target: Target) -> Interpreter:
    """The image's python as it described itself; an image for another Python is the user's mistake."""
    major, minor = (int(part) for part in header["version"])
    found = Interpreter(
        path=Path(str(header.get("executable") or spec.entrypoint[0])),
        version=(major, minor),
        machine=str(header["machine"]),
        implementation=str(header["implementation"]),
        source=f"docker {spec.image} ({spec.platform})",
        free_threaded=bool(header.get("free_threaded")),
    )
    reason = found.mismatch(target)
    if reason:
        raise InputError(
            f"the image {spec.image}: {reason}",
            hint=f"pass --image with a {target.runtime} image for {spec.platform}, or leave --image out "
            f"to use {default_image(target)}",
        )
    return found


def _no_answer(output: ContainerOutput, spec: ContainerSpec, target: Target) -> DockerError:
    said = (output.stderr.strip() or output.stdout.strip() or output.problem or "no output").splitlines()[-1]
    if "exec format error" in output.stderr:
        return DockerError(
            f"the {spec.platform} image could not run on this Docker engine ({said}): the engine has no "
            f"emulator for {target.machine}",
            hint=f"install QEMU emulation once: `docker run --privileged --rm tonistiigi/binfmt --install "
            f"{IMAGE_ARCHITECTURES[target.arch]}` (Docker Desktop has it built in), or verify on an "
            f"{target.machine} machine",
        )
    if output.killed:
        return DockerError(f"the container did not answer and was stopped after the timeout: {said}")
    return DockerError(
        f"the container in {spec.image} gave no answer: {said}",
        hint=f"run `docker run --rm --platform {spec.platform} --entrypoint {spec.entrypoint[0]} "
        f"{spec.image} -V` to see whether the image works on this engine",
    )


# ---------------------------------------------------------------------------------------------------
# Building a wheel from source, inside the image only


def build_image(target: Target) -> str:
    """The AWS SAM build image: the runtime's OS, glibc and Python, and the compilers the base image lacks."""
    return f"public.ecr.aws/sam/build-python{target.python_dotted}:latest-{target.arch}"


WORK_MOUNT = "/work"
REQUIREMENT_FILE = "requirement.txt"


def source_build_spec(
    target: Target,
    requirement: str,
    work_dir: Path,
    *,
    index_url: str,
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
            "--index-url",
            index_url,
            *what,
        ),
        user=user or _host_user(),
        environment=MappingProxyType(env),
        mounts=(Mount(str(work_dir), WORK_MOUNT, read_only=False),),
        working_dir=WORK_MOUNT,
        network_disabled=False,
        labels=MappingProxyType({LABEL: "build"}),
    )


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
    work = Path(tempfile.mkdtemp(prefix="layerforge-sdist-"))
    try:
        for sub in ("out", "home", "scratch", "cache"):
            (work / sub).mkdir()
        if _host_user() == LAMBDA_USER:  # a root host: Lambda's uid must be able to write here
            for folder in (work, *work.iterdir()):
                folder.chmod(0o777)
        spec = source_build_spec(
            target,
            requirement,
            work,
            index_url=index_url,
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
        shutil.rmtree(work, ignore_errors=True)
