"""`layerforge size-report PATH...`: where the bytes go, and the limits they are measured against."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.markup import escape

from ..errors import AuditError, LayerforgeError
from ..fsutil import atomic_write_text
from ..report import size_report as core
from ..report.libraries import LibraryCheck, check_libraries, recorded_target
from ..report.render import render_html, render_markdown, render_terminal, report_json
from ..target import DEFAULT_ARCH, Target
from . import main
from .options import target_options
from .output import Output, json_option, quiet_option, reporting


@main.command("size-report")
@click.argument("paths", nargs=-1, metavar="[PATH]...", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--layer-arn",
    "layer_arns",
    multiple=True,
    metavar="ARN",
    help="A published layer version to count in (repeatable); only its central directory is fetched.",
)
@click.option("--endpoint-url", metavar="URL", help="The Lambda API endpoint (for a local emulator).")
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=core.DEFAULT_TOP,
    show_default=True,
    help="List the N biggest files.",
)
@click.option(
    "--max-unzipped",
    metavar="BYTES",
    help="A team budget for the unzipped total: 262144000, 200MB (10^6), 190MiB (2^20). "
    "Default: the manifest's own budget, if it has one.",
)
@click.option(
    "--compare",
    "compare_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="OTHER",
    help="Another build of the same thing (repeatable, like PATH) to show side by side, per distribution.",
)
@click.option(
    "--strict", is_flag=True, help="Exit 3 on soft limits too (a zip over 50 MiB for direct upload)."
)
@click.option(
    "--markdown", is_flag=True, help="Print the report as markdown on stdout (for $GITHUB_STEP_SUMMARY)."
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Write a self-contained HTML page with a chart of where the bytes go.",
)
@target_options
@json_option
@quiet_option
def size_report(
    *,
    paths: tuple[Path, ...],
    layer_arns: tuple[str, ...],
    endpoint_url: str | None,
    top: int,
    max_unzipped: str | None,
    compare_paths: tuple[Path, ...],
    strict: bool,
    markdown: bool,
    html_path: Path | None,
    runtime: str | None,
    arch: str | None,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Report the unzipped and zipped size of a function and its layers, per distribution.

    PATH is a layer or function zip, a folder, or a build manifest (*.manifest.json, which adds what
    slimming removed). Several PATHs are one function with its layers. Exits 3 when a limit is exceeded:
    Lambda's 262,144,000 bytes unzipped, 5 layers, or the team budget (--max-unzipped); else 1 when an
    object needs a library that neither the zips nor the runtime (--runtime, or the manifests') have.
    """
    if json_mode and markdown:
        raise click.UsageError("--json and --markdown both print on stdout: choose one")
    if not paths and not layer_arns:
        raise click.UsageError("give at least one PATH or --layer-arn")
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        budget = core.parse_byte_size(max_unzipped) if max_unzipped is not None else None
        sources = _measure(paths, layer_arns, top=top, endpoint_url=endpoint_url)
        baseline = _measure(compare_paths, (), top=top, endpoint_url=endpoint_url)
        report = core.build_report(sources, top=top, max_unzipped=budget, baseline=baseline)
        libraries = check_libraries(paths, _target(paths, runtime, arch), remote=layer_arns)
        error = core.over_budget_error(report, strict=strict) or _missing_libraries(libraries)
        _emit(report, error, output, markdown=markdown, html_path=html_path, libraries=libraries)
    if error is not None:
        # Not raised through `reporting`: with --json the report already carries the error, and
        # stdout must hold exactly one JSON object.
        output.error(escape(str(error)))
        raise SystemExit(error.exit_code)


def _measure(
    paths: Sequence[Path], layer_arns: Sequence[str], *, top: int, endpoint_url: str | None
) -> list[core.SourceReport]:
    sources = [core.measure_path(path, top=top) for path in paths]
    sources += [core.measure_layer_arn(arn, top=top, endpoint_url=endpoint_url) for arn in layer_arns]
    return sources


def _target(paths: Sequence[Path], runtime: str | None, arch: str | None) -> Target | None:
    recorded = recorded_target(paths)
    if runtime is None and recorded is None:
        return None
    chosen_runtime = runtime or (recorded.runtime if recorded else None)
    return Target(str(chosen_runtime), arch or (recorded.arch if recorded else DEFAULT_ARCH))


def _missing_libraries(libraries: LibraryCheck) -> AuditError | None:
    if not libraries.findings:
        return None
    listing = "\n".join(f"  - {finding.describe()}" for finding in libraries.findings)
    return AuditError(
        f"{len(libraries.findings)} librar{'y' if len(libraries.findings) == 1 else 'ies'} that Lambda will "
        f"not find:\n{listing}",
        hint="each fails at import on Lambda; apply the fix shown for each",
    )


def _emit(
    report: core.SizeReport,
    error: LayerforgeError | None,
    output: Output,
    *,
    markdown: bool,
    html_path: Path | None,
    libraries: LibraryCheck,
) -> None:
    if not output.quiet:
        render_terminal(report, output.console)
    if libraries.reason:
        output.info(escape(libraries.reason))
    for label in libraries.not_checked:
        output.info(escape(f"system libraries of {label} not checked: only its central directory is read"))
    for line in report.exceeded:
        if not line.check.hard and error is None:
            subject = f" ({line.subject})" if line.subject else ""
            output.warn(
                escape(f"{line.check.description}{subject}: {line.check.actual:,} > {line.check.limit:,}")
            )
    if html_path is not None:
        atomic_write_text(html_path, render_html(report, error=error))
        output.info(f"wrote {html_path}")
    if markdown:
        sys.stdout.write(render_markdown(report))
        sys.stdout.flush()
    if output.json_mode:
        output.emit_json({**report_json(report, error=error), "system_libraries": libraries.as_dict()})
