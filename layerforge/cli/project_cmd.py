"""`layerforge matrix`, `layerforge catalogue`, and the `--project` halves of `build` and `publish`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from ..cache import default_cache_dir
from ..errors import InputError
from ..project import PROJECT_FILE
from ..project.build_all import CellOutcome, ProjectBuildSettings, build_cells, worst_exit_code
from ..project.catalogue import FILES, build_catalogue, write_catalogue
from ..project.config import Project, load_project
from ..project.matrix import changed_since, matrix, select
from . import main
from .output import Output, json_option, quiet_option, reporting

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:  # boto3 loads only when a command publishes: `build` starts faster without it
    from ..aws.publish import PublishOptions, PublishResult
    from ..project.publish_cells import BuiltCell


def project_option(help_text: str) -> Callable[[F], F]:
    # A value is optional: `--project` alone means ./layerforge.toml.
    return click.option(
        "--project",
        "project_file",
        is_flag=False,
        flag_value=PROJECT_FILE,
        default=None,
        type=click.Path(path_type=Path),
        help=help_text,
    )


def cells_option(func: F) -> F:
    return click.option(
        "--cells",
        "--cell",
        "cell_patterns",
        multiple=True,
        help="Only the cells whose names match (fnmatch, e.g. 'sklearn-*-arm64'; repeat or comma-separate).",
    )(func)


def patterns(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@main.command("matrix")
@project_option(f"Project file [default: ./{PROJECT_FILE}].")
@cells_option
@click.option(
    "--changed-since", "ref", help="Only cells whose recipe, lock or layerforge version changed since REF."
)
def matrix_command(project_file: Path | None, cell_patterns: tuple[str, ...], ref: str | None) -> None:
    """Print the project's cells as a GitHub Actions matrix: {"include": [{cell, recipe, runtime, arch,
    runs-on}, ...]} on one line, for `fromJSON`."""
    output = Output()  # stdout is the matrix alone, for fromJSON; errors go to stderr
    with reporting(output):
        project = load_project(project_file or Path(PROJECT_FILE))
        cells = select(project.cells, patterns(cell_patterns))
        if ref is not None:
            cells = changed_since(project, cells, ref)
        sys.stdout.write(json.dumps(matrix(cells), separators=(",", ":")) + "\n")
        output.info(f"{len(cells)} of {len(project.cells)} cells")


def build_project(
    output: Output,
    project_file: Path,
    cell_patterns: Sequence[str],
    settings: ProjectBuildSettings,
) -> None:
    """`build --project`: every (chosen) cell, a table at the end, the worst exit code."""
    project = load_project(project_file)
    cells = select(project.cells, patterns(cell_patterns))
    output.info(
        f"building {len(cells)} cells of {escape(str(project.path))} into {escape(str(settings.out_dir))}"
    )

    def done(outcome: CellOutcome) -> None:
        verb = "reused" if outcome.reused else "built" if outcome.ok else "[red]failed[/]"
        output.info(f"{verb} {escape(outcome.cell)} in {outcome.seconds:.1f} s")

    outcomes = build_cells(project, cells, settings, on_done=done)
    _table(output, outcomes)
    code = worst_exit_code(outcomes)
    if output.json_mode:
        output.emit_json(
            {"cells": [o.as_dict() for o in outcomes], "exit_code": code, "out": str(settings.out_dir)}
        )
    if code:
        failed = [o.cell for o in outcomes if not o.ok]
        output.error(f"{len(failed)} of {len(outcomes)} cells failed: {', '.join(failed)}")
        raise SystemExit(code)


def _table(output: Output, outcomes: Sequence[CellOutcome]) -> None:
    table = Table(title="cells")
    for column in ("cell", "result", "zipped", "unzipped", "verified", "seconds"):
        table.add_column(column, justify="right" if column in ("zipped", "unzipped", "seconds") else "left")
    for o in outcomes:
        m = o.manifest
        result = "reused" if o.reused else "built" if o.ok else f"exit {o.exit_code}"
        table.add_row(
            escape(o.cell),
            result,
            f"{m['zipped_bytes']:,}" if o.ok else "",
            f"{m['unzipped_bytes']:,}" if o.ok else "",
            str(m.get("verified")) if o.ok else "",
            f"{o.seconds:.1f}",
        )
    output.console.print(table)
    for o in outcomes:
        for warning in o.warnings:
            output.warn(f"{escape(o.cell)}: {escape(warning)}")
        if o.error:
            output.error(f"{escape(o.cell)}: {escape(o.error)}")


def default_project_settings(out_dir: Path, cache_dir: Path | None, **values: Any) -> ProjectBuildSettings:
    return ProjectBuildSettings(out_dir=out_dir, cache_dir=cache_dir or default_cache_dir(), **values)


def publish_project(
    output: Output,
    project_file: Path,
    dists: Sequence[Path],
    cell_patterns: Sequence[str],
    base: PublishOptions,
) -> None:
    """`publish --project DIST...`: every built cell to every region; the worst exit code."""
    from ..project.publish_cells import find_built_cells, publish_cells  # noqa: PLC0415

    project: Project = load_project(project_file)
    if not dists:
        raise InputError(
            "publish --project needs the folders of built cells", hint="e.g. publish --project dist/"
        )
    found = find_built_cells(project, select(project.cells, patterns(cell_patterns)), dists)
    for name in found.missing:
        output.warn(f"{escape(name)}: not built in {', '.join(map(str, dists))}; not published")
    for path in found.foreign:
        output.info(f"{escape(path)} is no cell of this project: left alone")
    if not found.cells:
        raise InputError(
            f"no built cell of {project.path} in {', '.join(map(str, dists))}",
            hint="build them with `layerforge build --project --out DIR`",
        )

    def done(built: BuiltCell, result: PublishResult) -> None:
        for region in result.regions:
            name = f"{escape(built.cell.name)} {escape(region.region)}"
            if not region.ok:
                output.error(f"{name}: failed at {escape(region.step or '?')}: {escape(region.error or '')}")
            elif region.layer_version_arn is None:
                output.info(f"{name}: uploaded s3://{escape(region.bucket or '')}/{escape(region.key or '')}")
            else:
                verb = "published" if region.published else "unchanged"
                output.console.print(f"{name}: {verb} {escape(region.layer_version_arn)}", soft_wrap=True)

    results = publish_cells(project, found.cells, base, on_done=done)
    published = sum(r.published for result in results for r in result.regions)
    versions = sum(r.layer_version_arn is not None for result in results for r in result.regions)
    failures = [f for f in (result.failure() for result in results) if f is not None]
    output.info(
        f"{len(results)} cells: {published} new layer versions, {versions - published} unchanged"
        + (f", {len(failures)} cells failed" if failures else "")
    )
    if output.json_mode:
        output.emit_json(
            {
                "cells": [r.as_dict() for r in results],
                "published": published,
                "layer_versions": versions,
                "missing": list(found.missing),
                "ok": not failures,
            }
        )
    if failures:
        raise SystemExit(max(f.exit_code for f in failures))


@main.command("catalogue")
@click.argument("paths", metavar="RECORD_OR_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dist/catalogue"),
    show_default=True,
    help="Where catalogue.json, catalogue.md and layers.auto.tfvars.json go.",
)
@json_option
@quiet_option
def catalogue_command(paths: tuple[Path, ...], out_dir: Path, json_mode: bool, quiet: bool) -> None:
    """Merge publish records (and upload-only records) into a catalogue: JSON, Markdown and Terraform
    variables. A cell published more than once keeps its newest layer version, and the catalogue says so."""
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        catalogue = build_catalogue(list(paths))
        written = write_catalogue(catalogue, out_dir)
        for note in catalogue.notes:
            output.warn(escape(note))
        output.info(
            f"{len(catalogue.cells)} cells, {len(catalogue.arns)} layer version ARNs: "
            + ", ".join(escape(str(path)) for path in written)
        )
        if json_mode:
            output.emit_json(
                {
                    "cells": len(catalogue.cells),
                    "arns": catalogue.arns,
                    "notes": catalogue.notes,
                    "files": {name: str(out_dir / name) for name in FILES},
                }
            )
