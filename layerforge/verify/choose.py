"""Choose how a layer is import-checked on this machine: a local interpreter, Docker, or not at all.

    --python PATH given        -> that interpreter (an InputError when it cannot run the target)
    --docker                   -> the Lambda image in Docker (an InputError when no engine answers)
    neither (the default)      -> a local CPython of the target's version and machine if there is one,
                                  else the Lambda image when a Docker engine answers,
                                  else no import check: the static audit only, said plainly
    --no-docker                -> a local interpreter, or no import check

Each choice carries a reason in words, so a build can say why it verified the way it did, and a
verification that did not run is never mistaken for one that passed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ..errors import InputError
from ..runners import interpreters
from ..runners.docker import (
    PLATFORMS,
    DockerClient,
    DockerError,
    default_image,
    docker_from_env,
)
from ..runners.interpreters import Interpreter, install_hint, search_summary
from ..target import Target
from .container import verify_in_docker
from .local import VerifyReport, not_run, verify_layer

VerifierKind = Literal["local", "docker", "none"]


class InterpreterFinder(Protocol):
    """interpreters.find_interpreter's shape; a build passes one that returns what it already found."""

    def __call__(self, target: Target, *, explicit: Path | None = None) -> Interpreter | None: ...


def already_found(interpreter: Interpreter | None) -> InterpreterFinder:
    """A finder that answers with an interpreter the caller has already probed (a build has, for bytecode)."""

    def find(target: Target, *, explicit: Path | None = None) -> Interpreter | None:
        return interpreter

    return find


@dataclass(frozen=True)
class Verifier:
    """The chosen way to verify, and why. `verify()` runs it and returns local.py's report."""

    kind: VerifierKind
    reason: str
    target: Target
    interpreter: Interpreter | None = None
    image: str | None = None
    explicit_docker: bool = False  # --docker: a failing engine is an error, not a quiet fallback
    client: DockerClient | None = field(default=None, compare=False, repr=False)

    def verify(
        self,
        layer_root: Path,
        *,
        modules: Sequence[str],
        distributions: Sequence[str],
        smoke: str | None,
        removed: Mapping[str, str] | None,
        timeout: float = 300.0,
        note: Callable[[str], None] | None = None,
        **local_options: Any,
    ) -> VerifyReport:
        """Run the check. `local_options` (in_place=...) go to verify_layer only."""
        if self.kind == "local":
            return verify_layer(
                layer_root,
                self.target,
                modules=modules,
                distributions=distributions,
                smoke=smoke,
                interpreter=self.interpreter,
                removed=removed,
                timeout=timeout,
                **local_options,
            )
        if self.kind == "none":
            return not_run(self.target, self.reason)
        try:
            return verify_in_docker(
                layer_root,
                self.target,
                modules=modules,
                distributions=distributions,
                smoke=smoke,
                removed=removed,
                client=self.client,
                image=self.image,
                timeout=timeout,
                note=note,
            )
        except DockerError as error:
            if self.explicit_docker:
                raise
            # Docker was only the fallback: the build goes on with the static audit, and says why.
            why = f"Docker could not run it: {error.message}"
            return not_run(self.target, _not_run_reason(self.target, why))


def choose_verifier(
    target: Target,
    *,
    python: Path | None = None,
    docker: bool | None = None,
    image: str | None = None,
    docker_client_factory: Callable[[], DockerClient] = docker_from_env,
    find_interpreter: InterpreterFinder = interpreters.find_interpreter,
) -> Verifier:
    """Decide how to verify a `target` layer here: local interpreter -> Docker -> not run, with the reason.

    `docker` True forces Docker, False forbids it, None lets it stand in when no interpreter fits.
    `image` (--image) replaces the Lambda base image. The factory is only called when Docker is wanted,
    so a machine without the engine pays nothing for asking.
    """
    if docker:
        return _docker(target, image, docker_client_factory, explicit=True, why="--docker was given")
    if image is not None and docker is False:
        raise InputError("--image needs Docker, but --no-docker was given", hint="pass one of the two")
    found = find_interpreter(target, explicit=python)
    if found is not None:
        return Verifier("local", f"verifying with {found.describe()}", target, interpreter=found)
    looked = search_summary(target)
    if docker is False:
        return _none(target, f"{looked} and found none; Docker was turned off (--no-docker)")
    try:
        return _docker(
            target,
            image,
            docker_client_factory,
            explicit=False,
            why=f"no local interpreter fits ({looked})",
        )
    except DockerError as error:
        return _none(target, f"{looked} and found none, and {error.message}")


def _docker(
    target: Target,
    image: str | None,
    factory: Callable[[], DockerClient],
    *,
    explicit: bool,
    why: str,
) -> Verifier:
    try:
        client = factory()
    except DockerError as error:
        if explicit:
            raise InputError(
                f"--docker: {error.message}",
                hint="start Docker (Docker Desktop, or `sudo systemctl start docker`), check DOCKER_HOST, "
                "or leave --docker out to verify with a local interpreter",
            ) from error
        raise
    chosen = image or default_image(target)
    reason = f"verifying in Docker with {chosen} ({PLATFORMS[target.arch]}): {why}"
    return Verifier("docker", reason, target, image=chosen, explicit_docker=explicit, client=client)


def _none(target: Target, why: str) -> Verifier:
    return Verifier("none", _not_run_reason(target, why), target)


def _not_run_reason(target: Target, why: str) -> str:
    # The CLI prefixes "imports NOT verified: ", so the reason itself starts with what did run.
    return f"only the static audit ran: {why}. To verify, {install_hint(target)}"
