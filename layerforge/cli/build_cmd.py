"""`layerforge build` and `layerforge lock`."""

from __future__ import annotations

from pathlib import Path

import click

from ..build import BuildOptions, BuildResult, build
from ..cache import WheelCache, default_cache_dir
from ..limits import memory_advice
from ..project import PROJECT_FILE
from ..recipe import load_recipe
from ..resolve.source_build import SourceBuilder
from . import main
from .options import (
    build_image_option,
    cache_option,
    choose_target,
    docker_options,
    exclude_runtime_provided_option,
    index_option,
    lock_option,
    name_option,
    out_option,
    python_option,
    target_options,
    with_cli_excludes,
)
from .output import Output, json_option, quiet_option, reporting
from .progress import with_progress
from .project_cmd import (
    build_project,
    cells_option,
    default_project_settings,
    project_option,
)


@main.command("build")
@click.argument("recipe_spec", metavar="RECIPE", required=False)
@project_option("Build every cell of the project file [default: ./layerforge.toml] instead of RECIPE.")
@cells_option
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="With --project: cells built at once [default: as many as cores and memory allow].",
)
@name_option
@target_options
@out_option
@index_option
@cache_option
@lock_option("Build exactly this lock (fails on any hash mismatch).")
@python_option
@click.option("--no-verify", is_flag=True, help="Skip the import check (the static audit still runs).")
@docker_options
@click.option(
    "--refresh", is_flag=True, help="Resolve again even when the lock in OUT pins these requirements."
)
@click.option(
    "--strict-licenses", is_flag=True, help="An unrecognised license fails the build (exit 1), not a warning."
)
@exclude_runtime_provided_option
@json_option
@quiet_option
def build_command(
    recipe_spec: str | None,
    project_file: Path | None,
    cell_patterns: tuple[str, ...],
    workers: int | None,
    name: str | None,
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
    refresh: bool,
    strict_licenses: bool,
    exclude_runtime_provided: bool,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Build a Lambda layer zip, its lock, its SBOM and its manifest from RECIPE.

    RECIPE is a bundled recipe's name (see `layerforge recipes`), a .toml file, or a requirements.txt.
    With --project (no RECIPE), every cell of the project, in parallel, with one table and exit code.
    """
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        if project_file is not None or cell_patterns:
            _refuse_with_project(
                recipe_spec,
                name=name,
                runtime=runtime,
                arch=arch,
                lock=lock_path,
                exclude_runtime_provided=exclude_runtime_provided or None,
            )
            settings = default_project_settings(
                out_dir,
                cache_dir,
                index_url=index_url,
                verify=not no_verify,
                python=python,
                docker=docker,
                refresh=refresh,
                workers=workers,
            )
            build_project(output, project_file or Path(PROJECT_FILE), cell_patterns, settings)
            return
        if recipe_spec is None:
            raise click.UsageError("Missing argument 'RECIPE' (or --project to build a project's cells).")
        recipe = with_cli_excludes(load_recipe(recipe_spec, name=name), exclude_runtime_provided)
        target = choose_target(recipe, runtime, arch)
        options = BuildOptions(
            recipe=recipe,
            target=target,
            out_dir=out_dir,
            cache_dir=cache_dir or default_cache_dir(),
            index_url=index_url,
            lock_path=lock_path,
            verify=not no_verify,
            refresh=refresh,
            docker=docker,
            image=image,
            build_image=build_image,
            host_builds=not no_host_builds,
            python=python,
            strict_licenses=strict_licenses,
        )
        output.info(f"building [bold]{recipe.name}[/] for {target.runtime} on {target.arch}")
        result = with_progress(output, lambda events: build(options, events))
        _summarise(output, result)
        if json_mode:
            payload = dict(result.manifest)
            payload["zip"] = str(result.zip_path)
            payload["lock"] = str(result.lock_path)
            payload["manifest"] = str(result.manifest_path)
            payload["sbom"] = str(result.sbom_path)
            output.emit_json(payload)


def _refuse_with_project(recipe_spec: str | None, **given: object) -> None:
    """A project's cells carry their own recipe, target and lock."""
    clashing = [f"--{flag.replace('_', '-')}" for flag, value in given.items() if value is not None]
    if recipe_spec is not None:
        clashing.insert(0, f"RECIPE ({recipe_spec})")
    if clashing:
        raise click.UsageError(f"--project builds the project's cells; {', '.join(clashing)} cannot apply")


def _summarise(output: Output, result: BuildResult) -> None:
    manifest = result.manifest
    verification = manifest.get("verification") or {}
    interpreter = verification.get("interpreter")
    if interpreter:
        smoke = verification.get("smoke_ok")
        if interpreter.get("container"):
            emulated = ", emulated" if interpreter.get("emulated") else ""
            where = f"in {interpreter['container']} ({interpreter.get('machine')}{emulated})"
        else:
            where = f"with cpython {interpreter.get('version')} at {interpreter.get('path')}"
        output.info(
            f"verified {where}: "
            f"{len(verification.get('imported', []))} modules imported, "
            f"{len(verification.get('optional_modules') or [])} optional skipped, "
            f"{len(verification.get('compiled_from_source', []))} compiled from source at import, "
            f"cold import {verification.get('cold_import_seconds') or 0:.2f} s"
            + ("" if smoke is None else ", smoke code passed")
        )
        if verification.get("peak_rss_bytes") is not None:
            output.info(f"memory: {memory_advice(verification['peak_rss_bytes'])}")
        elif (verification.get("memory") or {}).get("emulated"):
            output.info("memory: not advised: measured under emulation, which counts the emulator's own")
    elif verification.get("not_run_reason"):
        output.warn(f"imports NOT verified: {verification['not_run_reason']}")
    audit = manifest["audit"]
    output.info(
        f"audit: {audit['shared_objects']} shared objects, all {', '.join(audit['machines']) or 'n/a'}, "
        f"newest glibc symbol {audit['max_glibc'] or 'none'}"
    )
    binaries = manifest.get("binaries")
    if binaries:
        skipped = f", {len(binaries['skipped'])} left as they were" if binaries["skipped"] else ""
        output.info(
            f"binaries: {binaries['stripped']} shared objects stripped, "
            f"{binaries['bytes_saved']:,} bytes saved{skipped}"
        )
    provided = manifest.get("runtime_provided")
    if provided:
        names = ", ".join(d["name"] for d in provided["excluded"])
        output.info(
            f"left out, {provided['provided_by']} provides them: {names} (their versions are its own)"
        )
    for check in manifest["limits"]:
        state = "[red]over[/]" if check["exceeded"] else "ok"
        output.info(
            f"limit {check['name']}: {check['actual']:,} of {check['value']:,} bytes "
            f"({state}, headroom {check['headroom']:,})"
        )
    verb = "[green]up to date[/]" if result.reused else "[green]built[/]"
    output.info(
        f"{verb} {result.zip_path} ({manifest['zipped_bytes']:,} bytes zipped, "
        f"{manifest['unzipped_bytes']:,} unzipped, {manifest['removed_bytes']:,} removed by slimming)\n"
        f"  sha256 {manifest['sha256']}\n  lock {result.lock_path}\n  manifest {result.manifest_path}"
        f"\n  sbom {result.sbom_path}"
    )


@main.command("lock")
@click.argument("recipe_spec", metavar="RECIPE")
@name_option
@target_options
@out_option
@index_option
@cache_option
@click.option(
    "--docker",
    is_flag=True,
    help="Build a requirement that has no wheel for the target from its sdist in the SAM build image "
    "(never on the host); the built wheel goes into the cache and the lock.",
)
@build_image_option
@exclude_runtime_provided_option
@click.option(
    "--output",
    "-o",
    "lock_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the lock [default: OUT/<name>-<runtime>-<arch>.lock.json].",
)
@json_option
@quiet_option
def lock_command(
    recipe_spec: str,
    name: str | None,
    runtime: str | None,
    arch: str | None,
    out_dir: Path,
    index_url: str,
    cache_dir: Path | None,
    docker: bool,
    build_image: str | None,
    no_host_builds: bool,
    exclude_runtime_provided: bool,
    lock_file: Path | None,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Resolve RECIPE for the target and write the lock (exact wheels with their sha256)."""
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        recipe = with_cli_excludes(load_recipe(recipe_spec, name=name), exclude_runtime_provided)
        target = choose_target(recipe, runtime, arch)
        sources = SourceBuilder(
            target,
            index_url,
            WheelCache(cache_dir or default_cache_dir()),
            docker,
            note=output.info,
            image_override=build_image,
            host_builds=not no_host_builds,
        )
        lock = sources.resolve(recipe.name, recipe.requirements, exclude=recipe.excluded(target))
        destination = lock_file or out_dir / f"{recipe.name}-{target.runtime}-{target.arch}.lock.json"
        lock.write(destination)
        for note in lock.notes:
            output.info(f"[cyan]note:[/] {note.reason}")
        for package in lock.packages:
            output.info(f"  {package.name}=={package.version}  {package.wheel}")
        output.info(f"[green]locked[/] {len(lock.packages)} packages for {target.label} in {destination}")
        if json_mode:
            output.emit_json(dict(lock.as_dict(), path=str(destination)))
