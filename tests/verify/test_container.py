"""The Docker backend and the choice of verifier.

No Docker engine runs on these machines, so the engine is replaced by `FakeDockerClient`, the one mock
here. The container spec is checked field by field and then through the docker SDK's own payload
builders (the JSON an engine would receive). The program that runs inside the container is real: the
fake can execute it on the host with a real interpreter, emulating the read-only mount, so the driver,
the bootstrap and the parsing run end to end. A test marked `docker` runs the real thing where an engine
answers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import _create_container_args
from docker.types import ContainerConfig

from layerforge.errors import InputError
from layerforge.resolve.container_build import build_wheel_in_docker, source_build_spec
from layerforge.runners.docker import DockerError, Mount, split_image
from layerforge.runners.interpreters import find_interpreter
from layerforge.target import ARCHES, Target
from layerforge.verify.choose import already_found, choose_verifier
from layerforge.verify.container import container_spec, verify_in_docker
from tests.support.docker_engine import engine_or_skip, standin

HOST_ARCH = {machine: arch for arch, machine in ARCHES.items()}.get(os.uname().machine, "x86_64")
TARGET = Target(f"python{sys.version_info[0]}.{sys.version_info[1]}", HOST_ARCH)
ARM = Target("python3.11", "arm64")
API_VERSION = "1.45"


# --------------------------------------------------------------------------------------------------
# The fake engine


@dataclass
class FakeContainer:
    client: FakeDockerClient
    kwargs: dict[str, Any]
    started: bool = False
    out: bytes = b""
    err: bytes = b""

    def attach(self, **options: Any) -> Iterator[tuple[bytes | None, bytes | None]]:
        self.client.calls.append(("attach", options))
        return self._frames()

    def _frames(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        # A generator: nothing is read until the caller iterates, after start(), as with a real attach.
        if self.out:
            yield self.out, None
        if self.err:
            yield None, self.err

    def start(self) -> None:
        self.client.calls.append(("start", {}))
        if self.client.start_error is not None:
            raise self.client.start_error
        self.started = True
        if self.client.execute is not None:
            self.out, self.err = self.client.run_on_host(self.kwargs)
        else:
            self.out, self.err = self.client.stdout, self.client.stderr

    def kill(self) -> None:
        self.client.calls.append(("kill", {}))

    def remove(self, force: bool = False) -> None:
        self.client.calls.append(("remove", {"force": force}))


@dataclass
class FakeImage:
    attrs: dict[str, Any]


class FakeImages:
    def __init__(self, client: FakeDockerClient) -> None:
        self.client = client

    def get(self, name: str) -> FakeImage:
        self.client.calls.append(("images.get", {"name": name}))
        if name not in self.client.local_images:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        # An engine's id is the sha256 of the image's config; the fake derives one from the name.
        image_id = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        return FakeImage({"Architecture": self.client.local_images[name], "Os": "linux", "Id": image_id})

    def pull(self, repository: str, tag: str | None = None, **options: Any) -> FakeImage:
        self.client.calls.append(("images.pull", {"repository": repository, "tag": tag, **options}))
        # As an engine does, the pulled image is there afterwards, for the platform asked for.
        arch = str(options.get("platform", "linux/amd64")).rsplit("/", 1)[-1]
        self.client.local_images[f"{repository}:{tag}" if tag else repository] = arch
        return FakeImage({"Architecture": arch})


class FakeContainers:
    def __init__(self, client: FakeDockerClient) -> None:
        self.client = client

    def create(self, **kwargs: Any) -> FakeContainer:
        self.client.calls.append(("containers.create", kwargs))
        container = FakeContainer(self.client, kwargs)
        self.client.containers_made.append(container)
        return container


@dataclass
class FakeDockerClient:
    """A MOCK of docker.DockerClient (the only mock in these tests): it records every call.

    `ping_error` makes ping() fail as an absent engine does. Containers print the canned `stdout` and
    `stderr`, or, with `execute` set to a host interpreter, really run the container's program with it:
    each bind mount is emulated by rewriting the mount's target ("/opt") to its source in the program
    text and back in the output, and the working folder is a fresh temp folder. `on_start` lets a test
    act as the container (write a wheel into a mounted folder, say).
    """

    ping_error: Exception | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    execute: Path | None = None
    start_error: Exception | None = None
    local_images: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    containers_made: list[FakeContainer] = field(default_factory=list)
    on_start: Any = None

    def __post_init__(self) -> None:
        self.images = FakeImages(self)
        self.containers = FakeContainers(self)

    def ping(self) -> bool:
        self.calls.append(("ping", {}))
        if self.ping_error is not None:
            raise self.ping_error
        return True

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def created(self) -> dict[str, Any]:
        return next(kwargs for name, kwargs in self.calls if name == "containers.create")

    def run_on_host(self, kwargs: dict[str, Any]) -> tuple[bytes, bytes]:
        if self.on_start is not None:
            return self.on_start(kwargs)  # type: ignore[no-any-return]
        mounts = {bind["bind"]: source for source, bind in kwargs["volumes"].items()}

        def inward(text: str) -> str:
            for target, source in mounts.items():
                text = text.replace(f'"{target}', f'"{source}')
            return text

        def outward(data: bytes) -> bytes:
            text = data.decode()
            for target, source in mounts.items():
                text = text.replace(source, target)
            return text.encode()

        assert self.execute is not None
        argv = [str(self.execute), *(inward(part) for part in kwargs["command"])]
        with tempfile.TemporaryDirectory() as task:
            done = subprocess.run(
                argv, capture_output=True, cwd=task, env=dict(kwargs["environment"]), timeout=120, check=False
            )
        return outward(done.stdout), outward(done.stderr)


def no_engine() -> FakeDockerClient:
    return FakeDockerClient(
        ping_error=docker.errors.DockerException("Error while fetching server API version")
    )


def failing_factory(client: FakeDockerClient) -> Any:
    """What docker_from_env does when no engine answers: ping, and turn the failure into a DockerError."""

    def factory() -> FakeDockerClient:
        try:
            client.ping()
        except docker.errors.DockerException as error:
            raise DockerError(f"no Docker engine answered: {error}") from error
        return client

    return factory


def make_layer(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def hidden_interpreters(tmp_path: Path) -> Any:
    """The real find_interpreter, told to look nowhere: a machine with no Python of the target's."""

    def find(target: Target, *, explicit: Path | None = None) -> Any:
        return find_interpreter(
            target, explicit=explicit, search_path="", home=tmp_path, environ={}, include_current=False
        )

    return find


# --------------------------------------------------------------------------------------------------
# The container spec


def test_container_spec_for_python311_arm64_is_the_lambda_image_locked_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-must-not-leak")
    monkeypatch.setenv("PYTHONPATH", "/host/site-packages")
    spec = container_spec(
        ARM, Path("/builds/layer"), modules=["numpy", "pandas"], distributions=["numpy"], smoke="import numpy"
    )
    assert spec.image == "public.ecr.aws/lambda/python:3.11"
    assert spec.platform == "linux/arm64"
    # The image's entrypoint is the Runtime Interface Emulator: replaced by the image's own python.
    assert spec.entrypoint == ("/var/lang/bin/python3.11",)
    assert spec.command[:4] == ("-I", "-S", "-B", "-c")
    assert spec.user == "993:990"  # Lambda's sbx_user1051, never root
    assert not spec.user.startswith("0")
    assert spec.mounts == (Mount("/builds/layer", "/opt", read_only=True),)
    assert spec.working_dir == "/var/task"
    assert spec.network_disabled and spec.read_only and spec.auto_remove
    assert spec.cap_drop == ("ALL",)
    assert "no-new-privileges" in spec.security_opt
    assert dict(spec.tmpfs) == {"/tmp": "rw,exec,nosuid,nodev,size=512m,mode=1777"}
    env = dict(spec.environment)
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    assert "/opt/lib" in env["LD_LIBRARY_PATH"].split(":") and "/var/lang/lib" in env["LD_LIBRARY_PATH"]
    assert "/opt/bin" in env["PATH"].split(":")
    assert not any(
        key.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "PYTHON"))
        and key != "PYTHONDONTWRITEBYTECODE"
        for key in env
    )
    assert "host-secret-must-not-leak" not in repr(spec)
    program = spec.command[-1]
    assert '"modules": ["numpy", "pandas"]' in program and "@@layerforge-verify@@" in program
    compile(program, "<driver>", "exec")  # valid Python, as the image's python will read it


def test_container_spec_reaches_the_engine_as_docker_run_would_send_it() -> None:
    """The docker SDK's own builders turn the kwargs into the JSON body an engine receives."""
    spec = container_spec(ARM, Path("/builds/layer"), modules=["numpy"], distributions=[], smoke=None)
    kwargs = spec.create_kwargs()
    assert kwargs["platform"] == "linux/arm64"
    args = _create_container_args(dict(kwargs, version=API_VERSION))
    assert args.pop("platform") == "linux/arm64"
    body = ContainerConfig(API_VERSION, **args)
    host = body["HostConfig"]
    assert body["Image"] == "public.ecr.aws/lambda/python:3.11"
    assert body["Entrypoint"] == ["/var/lang/bin/python3.11"]
    assert body["User"] == "993:990"
    assert body["WorkingDir"] == "/var/task"
    assert host["Binds"] == ["/builds/layer:/opt:ro"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["AutoRemove"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["Tmpfs"] == {"/tmp": "rw,exec,nosuid,nodev,size=512m,mode=1777"}
    assert host["PidsLimit"] == 1024
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 1024}]


def test_image_option_replaces_the_image_only() -> None:
    spec = container_spec(
        TARGET, Path("/l"), image="my.registry:5000/lambda-py:3.11", modules=[], distributions=[], smoke=None
    )
    assert spec.image == "my.registry:5000/lambda-py:3.11"
    assert split_image(spec.image) == ("my.registry:5000/lambda-py", "3.11")
    assert split_image("my.registry:5000/lambda-py") == ("my.registry:5000/lambda-py", "latest")
    assert spec.entrypoint == (f"/var/lang/bin/python{TARGET.python_dotted}",)


def test_smoke_code_too_long_for_one_argument_is_refused_with_advice() -> None:
    with pytest.raises(InputError, match="too long"):
        container_spec(TARGET, Path("/l"), modules=[], distributions=[], smoke="x = 1\n" * 30_000)


# --------------------------------------------------------------------------------------------------
# Verification through the fake engine


GOOD = {
    "python/good/__init__.py": "from .core import VALUE\n",
    "python/good/core.py": "VALUE = 42\n",
    "python/good-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: good\nVersion: 1.0\n",
    "python/broken/__init__.py": "from . import gone\n",
}


def test_verify_in_docker_runs_the_real_bootstrap_and_names_the_strip_rule(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    client = FakeDockerClient(execute=Path(sys.executable), local_images={})
    report = verify_in_docker(
        layer,
        TARGET,
        modules=["good", "broken"],
        distributions=["good"],
        smoke="import good\nassert good.VALUE == 42\n",
        removed={"python/broken/gone.py": "safe:tests"},
        client=client,
    )
    assert report.ran and report.interpreter is not None
    assert report.interpreter.source.startswith("docker public.ecr.aws/lambda/python:")
    assert report.imported == ("good",)
    assert report.metadata_versions == {"good": "1.0"}
    assert report.smoke_ok is True
    assert report.layer_read_only is True
    [failure] = report.failures
    assert failure.module == "broken"
    assert failure.missing_path == "python/broken/gone.py"
    assert failure.removed_by == "safe:tests"
    # Paths are shown where Lambda puts the layer, not where the copy happened to be.
    assert 'File "/opt/python/broken/__init__.py"' in failure.detail
    assert report.compiled_from_source == ("broken", "good", "good.core")  # no bytecode shipped
    # The image was not here: it was pulled for the target's platform, then one container ran.
    pull = next(kwargs for name, kwargs in client.calls if name == "images.pull")
    assert pull["platform"] == f"linux/{'arm64' if TARGET.arch == 'arm64' else 'amd64'}"
    assert client.names().count("containers.create") == 1
    assert client.names().index("attach") < client.names().index("start")  # no output lost to --rm
    assert client.created()["volumes"][next(iter(client.created()["volumes"]))]["mode"] == "ro"
    # The host's tree is untouched: the container saw a read-only copy.
    assert os.access(layer / "python/good/core.py", os.W_OK)


def test_verify_in_docker_reports_a_failing_smoke_test(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    client = FakeDockerClient(
        execute=Path(sys.executable),
        local_images={
            f"public.ecr.aws/lambda/python:{TARGET.python_dotted}": "amd64"
            if TARGET.arch == "x86_64"
            else "arm64"
        },
    )
    report = verify_in_docker(
        layer,
        TARGET,
        modules=["good"],
        distributions=[],
        smoke="import good\nassert good.VALUE == 41, 'wrong'\n",
        removed={},
        client=client,
    )
    assert report.smoke_ok is False
    assert report.smoke_failure is not None and "AssertionError: wrong" in report.smoke_failure.error
    assert "images.pull" not in client.names()  # the right architecture was already here


def test_an_image_of_another_python_is_refused(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    wrong = Target("python3.12" if TARGET.runtime != "python3.12" else "python3.13", TARGET.arch)
    client = FakeDockerClient(execute=Path(sys.executable))
    with pytest.raises(InputError, match=r"not 3\.1[23]"):
        verify_in_docker(
            layer, wrong, modules=["good"], distributions=[], smoke=None, removed={}, client=client
        )


def test_an_arm64_image_without_emulation_says_how_to_install_it(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    client = FakeDockerClient(stderr=b"exec /var/lang/bin/python3.11: exec format error\n")
    with pytest.raises(DockerError) as caught:
        verify_in_docker(
            layer, ARM, modules=["good"], distributions=[], smoke=None, removed={}, client=client
        )
    assert "exec format error" in caught.value.message
    assert "tonistiigi/binfmt --install arm64" in str(caught.value.hint)


def test_a_container_that_does_not_start_is_removed(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    client = FakeDockerClient(start_error=docker.errors.APIError("OCI runtime create failed: no such file"))
    with pytest.raises(DockerError, match="did not start"):
        verify_in_docker(
            layer, ARM, modules=["good"], distributions=[], smoke=None, removed={}, client=client
        )
    assert ("remove", {"force": True}) in client.calls


# --------------------------------------------------------------------------------------------------
# Choosing the verifier


def test_no_interpreter_and_no_engine_the_build_goes_on_and_says_imports_were_not_verified(
    tmp_path: Path,
) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    client = no_engine()
    verifier = choose_verifier(
        ARM, docker_client_factory=failing_factory(client), find_interpreter=hidden_interpreters(tmp_path)
    )
    assert verifier.kind == "none"
    report = verifier.verify(layer, modules=["good"], distributions=[], smoke=None, removed={})
    assert not report.ran and report.verified is None and report.ok
    # The CLI prefixes "imports NOT verified: "; the reason must not say it again.
    assert report.not_run_reason.startswith("only the static audit ran: ")
    assert "NOT verified" not in report.not_run_reason
    assert "no Docker engine answered" in report.not_run_reason
    if ARM.arch != HOST_ARCH:  # no interpreter installed here can import aarch64 extension modules
        assert "pyenv install" not in report.not_run_reason and "--python" not in report.not_run_reason
        assert "emulation" in report.not_run_reason and "layerforge doctor" in report.not_run_reason
    else:
        assert "uv python install 3.11" in report.not_run_reason
    assert client.names() == ["ping"]  # nothing else was asked of an engine that is not there
    report.raise_for_failures()  # a check that did not run fails nothing
    assert report.as_dict()["verified"] is None


def test_no_interpreter_but_an_engine_verifies_in_docker(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    client = FakeDockerClient(execute=Path(sys.executable))
    verifier = choose_verifier(
        TARGET, docker_client_factory=lambda: client, find_interpreter=hidden_interpreters(tmp_path)
    )
    assert verifier.kind == "docker" and "no local interpreter fits" in verifier.reason
    report = verifier.verify(layer, modules=["good"], distributions=["good"], smoke=None, removed={})
    assert report.verified is True


def test_a_local_interpreter_wins_and_docker_is_never_asked(tmp_path: Path) -> None:
    client = FakeDockerClient()
    verifier = choose_verifier(TARGET, docker_client_factory=lambda: client)
    assert verifier.kind == "local" and verifier.interpreter is not None
    assert client.calls == []


def test_a_build_can_hand_over_the_interpreter_it_already_found(tmp_path: Path) -> None:
    local = choose_verifier(TARGET, docker=False, find_interpreter=hidden_interpreters(tmp_path))
    assert local.kind != "local"
    found = find_interpreter(TARGET)
    assert found is not None
    verifier = choose_verifier(TARGET, find_interpreter=already_found(found))
    assert verifier.kind == "local" and verifier.interpreter == found
    assert verifier.reason.startswith("verifying with cpython")


def test_docker_flag_without_an_engine_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--docker: no Docker engine answered"):
        choose_verifier(TARGET, docker=True, docker_client_factory=failing_factory(no_engine()))


def test_no_docker_flag_never_asks_the_engine(tmp_path: Path) -> None:
    client = FakeDockerClient()
    verifier = choose_verifier(
        ARM,
        docker=False,
        docker_client_factory=lambda: client,
        find_interpreter=hidden_interpreters(tmp_path),
    )
    assert verifier.kind == "none" and "--no-docker" in verifier.reason
    assert client.calls == []


def test_docker_as_a_fallback_that_fails_leaves_the_static_audit(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer", GOOD)
    client = FakeDockerClient(stderr=b"exec /var/lang/bin/python3.11: exec format error\n")
    verifier = choose_verifier(
        ARM, docker_client_factory=lambda: client, find_interpreter=hidden_interpreters(tmp_path)
    )
    report = verifier.verify(layer, modules=["good"], distributions=[], smoke=None, removed={})
    assert not report.ran and "exec format error" in report.not_run_reason


# --------------------------------------------------------------------------------------------------
# Building from source, inside the image only


def test_source_build_runs_pip_in_the_sam_build_image_as_a_user(tmp_path: Path) -> None:
    config = tmp_path / "config"
    spec = source_build_spec(
        ARM, "tinypkg==1.0", tmp_path, index_url="https://pypi.org/simple", config_dir=config
    )
    assert spec.image == "public.ecr.aws/sam/build-python3.11:latest-arm64"
    assert spec.platform == "linux/arm64"
    assert spec.command[:3] == ("-m", "pip", "wheel") and spec.command[-1] == "tinypkg==1.0"
    assert spec.command[4:6] == ("--no-binary", "tinypkg")
    assert not spec.network_disabled  # the sdist and its build requirements come from the index
    assert spec.read_only and spec.auto_remove and not spec.user.startswith("0:")
    assert spec.mounts == (
        Mount(str(tmp_path), "/work", read_only=False),
        Mount(str(config), "/layerforge-config", read_only=True),
    )
    assert "https://pypi.org/simple" not in spec.command  # pip reads it from the mounted pip.conf
    with pytest.raises(InputError, match="not pinned"):
        source_build_spec(ARM, "tinypkg>=1", tmp_path, index_url="https://pypi.org/simple", config_dir=config)


def test_build_wheel_in_docker_copies_the_wheel_the_container_wrote(tmp_path: Path) -> None:
    def container(kwargs: dict[str, Any]) -> tuple[bytes, bytes]:
        work = next(source for source, bind in kwargs["volumes"].items() if bind["bind"] == "/work")
        (Path(work) / "out" / "tinypkg-1.0-cp311-cp311-linux_aarch64.whl").write_bytes(b"PK")
        return b"Successfully built tinypkg\n", b""

    client = FakeDockerClient(execute=Path(sys.executable), on_start=container)
    wheel = build_wheel_in_docker(
        "tinypkg==1.0", ARM, tmp_path / "wheels", index_url="http://127.0.0.1:1/simple", client=client
    )
    assert wheel == tmp_path / "wheels" / "tinypkg-1.0-cp311-cp311-linux_aarch64.whl"
    assert wheel.read_bytes() == b"PK"
    # An index on loopback is reachable only from the host's network namespace.
    assert client.created()["network_mode"] == "host"


def test_an_index_url_that_would_add_lines_to_pip_conf_is_refused(tmp_path: Path) -> None:
    client = FakeDockerClient()
    for hostile in ("https://pypi.org/simple\nextra-index-url = http://evil.invalid/", "https://x/ y"):
        with pytest.raises(InputError, match="whitespace or control characters"):
            build_wheel_in_docker("tinypkg==1.0", ARM, tmp_path, index_url=hostile, client=client)
    assert client.containers_made == []


def test_a_remote_index_is_reached_through_the_bridge(tmp_path: Path) -> None:
    config = tmp_path / "config"
    remote = source_build_spec(
        ARM, "tinypkg==1.0", tmp_path, index_url="https://pypi.org/simple", config_dir=config
    )
    local = source_build_spec(
        ARM, "tinypkg==1.0", tmp_path, index_url="http://localhost:8080/simple", config_dir=config
    )
    assert remote.create_kwargs()["network_mode"] == "bridge"
    assert local.create_kwargs()["network_mode"] == "host"


# --------------------------------------------------------------------------------------------------
# A real engine, where one answers


@pytest.mark.docker
def test_real_engine_verifies_a_layer_in_the_lambda_image(tmp_path: Path) -> None:
    """The Lambda image cannot be pulled here: a stand-in takes its place (see test_real_engine.py)."""
    client = engine_or_skip()
    layer = make_layer(tmp_path / "layer", GOOD)
    target = Target("python3.11", HOST_ARCH)
    report = verify_in_docker(
        layer,
        target,
        modules=["good"],
        distributions=["good"],
        smoke="import good",
        removed={},
        client=client,
        image=standin(f"runtime-{HOST_ARCH}"),
    )
    assert report.verified is True and report.layer_read_only is True
    assert report.interpreter is not None and report.interpreter.path == Path("/var/lang/bin/python3.11")
