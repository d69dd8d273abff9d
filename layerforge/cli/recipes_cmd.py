"""`layerforge recipes` and `layerforge recipes show NAME`."""

from __future__ import annotations

import click
from rich.table import Table

from ..errors import RecipeError
from ..recipe import bundled_recipe_names, bundled_recipes_dir, load_recipe
from . import main
from .output import Output, json_option, reporting


@main.group("recipes", invoke_without_command=True)
@json_option
@click.pass_context
def recipes_group(context: click.Context, json_mode: bool) -> None:
    """List the bundled recipes."""
    if context.invoked_subcommand is not None:
        return
    output = Output(json_mode=json_mode)
    with reporting(output):
        recipes = [load_recipe(name) for name in bundled_recipe_names()]
        if json_mode:
            output.emit_json(
                {
                    "recipes": [
                        {"name": r.name, "description": r.description, "requirements": list(r.requirements)}
                        for r in recipes
                    ]
                }
            )
            return
        table = Table("name", "description", "requirements", box=None)
        for recipe in recipes:
            table.add_row(recipe.name, recipe.description, ", ".join(recipe.requirements))
        output.console.print(table)


@recipes_group.command("show")
@click.argument("name")
def show_command(name: str) -> None:
    """Print a bundled recipe's TOML."""
    output = Output()
    with reporting(output):
        path = bundled_recipes_dir() / f"{name}.toml"
        if not path.is_file():
            load_recipe(name)  # raises with "did you mean" and the list of names
            raise RecipeError(f"{name!r} is not a bundled recipe")
        click.echo(path.read_text(encoding="utf-8"), nl=False)
