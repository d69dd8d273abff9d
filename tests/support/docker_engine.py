"""A real Docker engine, where one answers: the `docker`-marked tests run against it, others skip."""

from __future__ import annotations

import functools
from typing import Any


def real_engine() -> Any:
    """A client of the engine that answers a ping within 5 s, else None."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:
        return None
    return client


def engine_or_skip() -> Any:
    """The real engine; a skip where none answers, a failure where CI promised one
    (LAYERFORGE_REQUIRE_DOCKER=1)."""
    import os

    import pytest

    client = real_engine()
    if client is None:
        if os.environ.get("LAYERFORGE_REQUIRE_DOCKER") == "1":
            pytest.fail("LAYERFORGE_REQUIRE_DOCKER=1, but no Docker engine answers")
        pytest.skip("no Docker engine answers here")
    return client


@functools.cache
def standin(role: str) -> str:
    """The stand-in image for `role` (tests/support/standin_images.py), built first if it is missing."""
    import pytest

    from tests.support import standin_images

    recipe = standin_images.RECIPES[role]
    try:
        standin_images.ensure([recipe])
    except standin_images.SetupError as error:
        pytest.fail(f"the {role} stand-in image could not be made: {error}")
    return recipe.image
