"""Which module defines each command: a command's module (and the library it needs) loads when it runs.

Importing every command up front cost half a second on each run (boto3 alone is a tenth of it), paid
by `layerforge build` in CI on every commit.
"""

from __future__ import annotations

import importlib

import click

from ..resolve.pip_runner import warm_up

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


# The commands that run pip. Its fork server starts importing pip (0.4 s) as soon as one of them is
# invoked, beside this process's import of the build (0.45 s), not after it; a build that then has
# nothing to resolve kills it (resolve/pip_runner.py).
RUNS_PIP = frozenset({"build", "lock"})


class LazyGroup(click.Group):
    """A group whose commands register themselves (`@main.command`) when their module is imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in RUNS_PIP and not ctx.resilient_parsing and "--help" not in args:
            warm_up()
        return super().resolve_command(ctx, args)
