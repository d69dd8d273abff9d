"""`layerforge verify ZIP`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ..binaries.audit import AuditReport
from ..errors import LayerforgeError
from ..limits import memory_advice
from ..recipe import load_recipe
from ..verify.from_zip import target_for, verify_zip
from ..verify.local import VerifyReport
from . import main
from .options import target_options
from .output import Output, json_option, quiet_option, reporting


@main.command("verify")
@click.argument("zip_path", metavar="ZIP", type=click.Path(dir_okay=False, path_type=Path))
@target_options
@click.option(
    "--recipe", "recipe_spec", default=None, help="Take extra imports and smoke code from this recipe."
)
@click.option(
    "--python",
    type=click.Path(path_type=Path),
    default=None,
    help="Interpreter of the target's Python version to verify with.",
)
@json_option
@quiet_option
def verify_command(
    zip_path: Path,
    runtime: str | None,
    arch: str | None,
    recipe_spec: str | None,
    python: Path | None,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Audit the binaries of a layer ZIP and import it in a clean interpreter of its runtime."""
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        target = target_for(zip_path, runtime, arch)
        recipe = load_recipe(recipe_spec) if recipe_spec else None
        result = verify_zip(zip_path, target, recipe=recipe, python=python)
        audit, report = result.audit, result.verify
        output.info(
            f"audit of {zip_path} for {target.runtime} on {target.arch}: {audit.shared_objects} shared "
            f"objects, {len(audit.errors)} errors, {len(audit.warnings)} warnings"
        )
        for finding in audit.warnings:
            output.warn(finding.message)
        if report.interpreter is not None:
            output.info(
                f"imported {len(report.imported)} modules with {report.interpreter.describe()}; "
                f"{len(report.compiled_from_source)} compiled from source at import; cold import "
                f"{report.cold_import_seconds or 0:.2f} s"
            )
            for skipped in report.optional_modules:
                output.warn(escape(skipped.message))
            if report.peak_rss_bytes is not None:
                output.info(f"memory: {memory_advice(report.peak_rss_bytes)}")
        else:
            output.warn(f"imports NOT verified: {report.not_run_reason}")
        problem = _first_problem(result.audit, result.verify)
        if json_mode:
            output.emit_json(result.as_dict())  # one object, failure or not: it carries "ok"
        if problem is not None:
            output.error(str(problem))
            raise SystemExit(problem.exit_code)
        output.info("[green]ok[/]" + ("" if report.ran else " (static audit only)"))


def _first_problem(audit: AuditReport, report: VerifyReport) -> LayerforgeError | None:
    try:
        audit.raise_for_errors()
        report.raise_for_failures()
    except LayerforgeError as error:
        return error
    return None
