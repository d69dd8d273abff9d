"""The command-line interface: a thin layer of click over the library core."""

from __future__ import annotations

import click

from .. import __version__
from .commands import LazyGroup


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="layerforge")
def main() -> None:
    """Build, slim, verify and publish AWS Lambda layers for Python."""
