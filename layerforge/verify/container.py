"""Verify a layer inside the AWS Lambda base image, with Docker.

A host that has no CPython of the target's version and architecture (a Mac, Windows, an x86_64 laptop
building for arm64) can still import-check a layer: the same bootstrap that `local.py` runs on a host runs
inside `public.ecr.aws/lambda/python:3.X` for the target's platform, under Lambda's lockdown
(`runners/docker.py`), and the container is removed when it exits.

The Lambda images' entrypoint is the Runtime Interface Emulator, which would wait for invocations; the spec
replaces it with the image's own python (`/var/lang/bin/python3.X`), which runs a small driver: the driver
starts the bootstrap twice (imports, then smoke code) exactly as local.py does on a host, each in a fresh
isolated interpreter, and prints each run's output as one marked JSON line.

The bootstrap lists the shared objects it loaded here too, but nothing loaded from the image is refused:
the image is the runtime, so a library it has is one Lambda has (`loaded.py` runs for a local
interpreter, on a host that is not the runtime).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import InputError
from ..runners.docker import (
    LAMBDA_USER,
    LAYER_MOUNT,
    PLATFORMS,
    TASK_ROOT,
    ContainerOutput,
    ContainerSpec,
    DockerClient,
    DockerError,
    Mount,
    default_image,
    docker_from_env,
    ensure_image,
    image_python,
    lambda_environment,
    run_container,
)
from ..runners.emulation import enable_hint
from ..runners.interpreters import Interpreter
from ..target import Target, host_machine, machine_name

# local.py owns the bootstrap, the parsing of its markers and the mapping of failures back to strip rules;
# this module reuses them rather than keeping a second copy that could drift.
from .local import (
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

# One argv string may hold at most 128 KiB on Linux (MAX_ARG_STRLEN); the driver, the bootstrap and the
# smoke code travel in one. Stay well under it and say so rather than fail inside the engine.
_MAX_PROGRAM_CHARS = 120_000
# How often the driver proves it is alive: the SDK's socket read times out after 60 s of silence.
_HEARTBEAT_SECONDS = 5.0
_DRIVER_MARKER = "@@layerforge-docker@@ "
_OUTPUT_TAIL = 2000
# QEMU user-mode emulation runs CPython several times slower: the sklearn stack imports in about 9 s in an
# emulated aarch64 container on x86_64, against under 2 s natively. Timeouts stretch by this much.
EMULATION_SLOWDOWN = 6


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
    if target.machine != host_machine():
        timeout *= EMULATION_SLOWDOWN
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
        container=spec.image,
        emulated=machine_name(str(header["machine"])) != host_machine(),
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
            hint=f"install QEMU emulation once: {enable_hint(target.machine)}; or verify on an "
            f"{target.machine} machine",
        )
    if output.killed:
        return DockerError(f"the container did not answer and was stopped after the timeout: {said}")
    return DockerError(
        f"the container in {spec.image} gave no answer: {said}",
        hint=f"run `docker run --rm --platform {spec.platform} --entrypoint {spec.entrypoint[0]} "
        f"{spec.image} -V` to see whether the image works on this engine",
    )
