"""`layerforge package-function`: a function zip, its handler and imports checked against its layers."""

from __future__ import annotations

from pathlib import Path

import click

from ..cache import default_cache_dir
from ..function.package import FunctionOptions, FunctionResult, package_function
from ..recipe import load_recipe
from . import main
from .options import (
    cache_option,
    choose_target,
    docker_options,
    index_option,
    lock_option,
    out_option,
    python_option,
    target_options,
)
from .output import Output, json_option, quiet_option, reporting
from .progress import with_progress


@main.command("package-function")
@click.argument("source", metavar="SRC", type=click.Path(file_okay=False, path_type=Path))
@click.option("--handler", required=True, metavar="MODULE.FUNCTION", help="e.g. handler.lambda_handler")
@click.option("--name", default=None, help="Name of the zip [default: SRC's folder name].")
@click.option(
    "--recipe",
    "recipe_spec",
    metavar="RECIPE",
    default=None,
    help="Requirements to install into the function: a recipe name, .toml or requirements file "
    "[default: SRC/requirements.txt, if any].",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="ZIP",
    help="A layer zip the function runs with (repeatable, in order).",
)
@click.option(
    "--layer-arn",
    "layer_arns",
    multiple=True,
    metavar="ARN",
    help="A published layer version the function runs with (repeatable); only its file list is read.",
)
@click.option("--endpoint-url", metavar="URL", help="The Lambda API endpoint (for a local emulator).")
@click.option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="GLOB",
    help="Leave out files of SRC matching GLOB (repeatable; ** spans folders), besides the defaults.",
)
@click.option(
    "--no-default-excludes",
    is_flag=True,
    help="Keep version control, caches, tests and virtual environments (left out by default).",
)
@click.option(
    "--ignore-import",
    "ignore_imports",
    multiple=True,
    metavar="MODULE",
    help="Take MODULE (and its submodules) as present in the import check (repeatable).",
)
@target_options
@out_option
@index_option
@cache_option
@lock_option("Install exactly this lock of the requirements.")
@python_option
@click.option("--no-verify", is_flag=True, help="Skip the import check of the installed requirements.")
@docker_options
@json_option
@quiet_option
def package_function_command(
    *,
    source: Path,
    handler: str,
    name: str | None,
    recipe_spec: str | None,
    layers: tuple[Path, ...],
    layer_arns: tuple[str, ...],
    endpoint_url: str | None,
    excludes: tuple[str, ...],
    no_default_excludes: bool,
    ignore_imports: tuple[str, ...],
    runtime: str | None,
    arch: str | None,
    out_dir: Path,
    index_url: str,
    cache_dir: Path | None,
    lock_path: Path | None,
    python: Path | None,
    no_verify: bool,
    docker: bool | None,
    image: str | None,
    build_image: str | None,
    no_host_builds: bool,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Package the function in SRC as a deterministic zip, and check it before deploy.

    Checks that the handler exists and takes (event, context), that every import of the code finds its
    module in the function, its layers, the runtime or the standard library, and that the function
    and its layers fit Lambda's unzipped limit.
    """
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        recipe = load_recipe(recipe_spec, name=name) if recipe_spec else None
        options = FunctionOptions(
            source=source,
            handler=handler,
            target=choose_target(recipe, runtime, arch),
            out_dir=out_dir,
            cache_dir=cache_dir or default_cache_dir(),
            name=name,
            recipe=recipe,
            layers=layers,
            layer_arns=layer_arns,
            endpoint_url=endpoint_url,
            excludes=excludes,
            default_excludes=not no_default_excludes,
            ignore_imports=ignore_imports,
            index_url=index_url,
            lock_path=lock_path,
            verify=not no_verify,
            python=python,
            docker=docker,
            image=image,
            build_image=build_image,
            host_builds=not no_host_builds,
        )
        output.info(f"packaging [bold]{options.function_name}[/] for {options.target.label}")
        result = with_progress(output, lambda events: package_function(options, events))
        _summarise(output, result)
        if json_mode:
            payload = dict(result.manifest)
            payload.update(zip=str(result.zip_path), manifest=str(result.manifest_path))
            payload["lock"] = str(result.lock_path) if result.lock_path else None
            output.emit_json(payload)


def _summarise(output: Output, result: FunctionResult) -> None:
    manifest = result.manifest
    check = result.handler
    output.info(f"handler {check.spec.text}: `{check.kind}` at {check.path}:{check.line}")
    scan = result.scan
    by_source: dict[str, list[str]] = {}
    for name, where in scan.found.items():
        by_source.setdefault(where, []).append(name)
    optional = f", {len(scan.optional)} optional ones missing" if scan.optional else ""
    output.info(f"imports: {scan.imports} in {scan.files} files, every required one found{optional}")
    for where, names in by_source.items():
        output.info(f"  from {where}: {', '.join(names)}")
    for limit in result.limits:
        state = "[red]over[/]" if limit.exceeded else "ok"
        output.info(
            f"limit {limit.name}: {limit.actual:,} of {limit.limit:,} ({state}, headroom {limit.headroom:,})"
        )
    output.info(
        f"[green]packaged[/] {result.zip_path} ({manifest['zipped_bytes']:,} bytes zipped, "
        f"{manifest['unzipped_bytes']:,} unzipped, {manifest['entries']} files)\n"
        f"  sha256 {manifest['sha256']}\n  manifest {result.manifest_path}"
        + (f"\n  lock {result.lock_path}" if result.lock_path else "")
    )
