"""Options that several commands share, each defined once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..recipe import Recipe
from ..resolve.lock import DEFAULT_INDEX_URL
from ..target import ARCHES, DEFAULT_ARCH, DEFAULT_RUNTIME, RUNTIMES, Target

F = TypeVar("F", bound=Callable[..., Any])


def target_options(func: F) -> F:
    func = click.option(
        "--arch",
        type=click.Choice(list(ARCHES)),
        default=None,
        help="Lambda architecture [default: the recipe's, else x86_64].",
    )(func)
    return click.option(
        "--runtime",
        type=click.Choice(list(RUNTIMES)),
        default=None,
        help="Lambda runtime [default: the recipe's, else python3.11].",
    )(func)


def build_image_option(func: F) -> F:
    func = click.option(
        "--no-host-builds",
        is_flag=True,
        envvar="LAYERFORGE_NO_HOST_BUILDS",
        help="Never build an sdist on this machine. By default a requirement that has only an sdist is "
        "built here (its build backend runs here) and taken when the wheel is pure Python.",
    )(func)
    return click.option(
        "--build-image",
        default=None,
        help="Image to build sdists in (with --docker) instead of public.ecr.aws/sam/build-python3.X; the "
        "lock records its digest.",
    )(func)


def docker_options(func: F) -> F:
    func = build_image_option(func)
    func = click.option(
        "--image", default=None, help="Image to verify in instead of public.ecr.aws/lambda/python:3.X."
    )(func)
    return click.option(
        "--docker/--no-docker",
        default=None,
        help="Verify inside the Lambda image (default: only when no local interpreter fits); --docker also "
        "builds a requirement that has no wheel for the target from its sdist in the SAM build image.",
    )(func)


def index_option(func: F) -> F:
    return click.option(
        "--index-url",
        default=DEFAULT_INDEX_URL,
        show_default=True,
        envvar="LAYERFORGE_INDEX_URL",
        help="Package index (PEP 503/691 simple API).",
    )(func)


def cache_option(func: F) -> F:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Cache folder (wheels, zip members) [default: LAYERFORGE_CACHE_DIR, else the user cache].",
    )(func)


def name_option(func: F) -> F:
    return click.option("--name", default=None, help="Layer name when RECIPE is a requirements file.")(func)


def out_option(func: F) -> F:
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("dist"),
        show_default=True,
        help="Output folder.",
    )(func)


def lock_option(help_text: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        return click.option(
            "--lock",
            "lock_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help=help_text,
        )(func)

    return decorate


def python_option(func: F) -> F:
    return click.option(
        "--python",
        "python",
        type=click.Path(path_type=Path),
        default=None,
        help="Interpreter of the target's Python version to compile bytecode and verify with.",
    )(func)


def exclude_runtime_provided_option(func: F) -> F:
    return click.option(
        "--exclude-runtime-provided",
        is_flag=True,
        help="Leave out boto3, botocore and the rest of what the target runtime provides (as the recipe's "
        "exclude_runtime_provided = true does); their versions then come from the runtime.",
    )(func)


def with_cli_excludes(recipe: Recipe, exclude_runtime_provided: bool) -> Recipe:
    """The recipe, with what --exclude-runtime-provided adds to it."""
    if not exclude_runtime_provided:
        return recipe
    return dataclasses.replace(recipe, exclude_runtime_provided=True)


def choose_target(recipe: Recipe | None, runtime: str | None, arch: str | None) -> Target:
    """--runtime and --arch first, then the recipe's own, then python3.11 on x86_64."""
    return Target(
        runtime or (recipe.runtime if recipe else None) or DEFAULT_RUNTIME,
        arch or (recipe.arch if recipe else None) or DEFAULT_ARCH,
    )
