"""Which module defines each command: a command's module (and the library it needs) loads when it runs.

Importing every command up front cost half a second on each run (boto3 alone is a tenth of it), paid
by `layerforge build` in CI on every commit.
"""

from __future__ import annotations

import importlib

import click

COMMAND_MODULES = {
    "build": "layerforge.cli.build_cmd",
    "cache": "layerforge.cli.cache_cmd",
    "catalogue": "layerforge.cli.project_cmd",
    "matrix": "layerforge.cli.project_cmd",
    "lock": "layerforge.cli.build_cmd",
    "doctor": "layerforge.cli.doctor_cmd",
    "package-function": "layerforge.cli.function_cmd",
    "publish": "layerforge.cli.publish_cmd",
    "recipes": "layerforge.cli.recipes_cmd",
    "sbom": "layerforge.cli.sbom_cmd",
    "size-report": "layerforge.cli.size_report_cmd",
    "verify": "layerforge.cli.verify_cmd",
}


class LazyGroup(click.Group):
    """A group whose commands register themselves (`@main.command`) when their module is imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)
        return super().get_command(ctx, cmd_name)
