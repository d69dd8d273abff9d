"""The command-line interface: a thin layer of click over the library core."""

from __future__ import annotations

import atexit
import functools
import gc

import click

from .. import __version__
from .commands import LazyGroup


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="layerforge")
def main() -> None:
    """Build, slim, verify and publish AWS Lambda layers for Python."""
    _register_once()


@functools.cache
def _register_once() -> None:
    # At exit, after the command: the interpreter's final collections then pass over what the command
    # made (a build's trees, listings and records) instead of traversing it, which was 0.15 to 0.25 s at
    # the end of every build. atexit handlers and weakref finalizers (temporary folders) still run; the
    # __del__ of an object left in a cycle may not, which Python never promised at exit either.
    atexit.register(gc.freeze)
