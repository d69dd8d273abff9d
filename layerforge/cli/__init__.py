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
    # A build makes and drops containers by the million (entries, paths, records), very few of them in
    # cycles. With the default young generation of 700 objects the collector ran about 600 times in a cold
    # sklearn build, 1.05 s with the GIL held (every other thread of the build waiting); with 10,000, 35
    # times and 0.3 to 0.5 s, at the same peak memory (140 to 160 MB either way).
    gc.set_threshold(_YOUNG_GENERATION, *gc.get_threshold()[1:])


_YOUNG_GENERATION = 10_000
