"""`layerforge doctor`: options in, `layerforge.doctor` looks, findings out; exit 1 when any is an error."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ..doctor.checks import diagnose
from ..doctor.findings import DoctorOptions, DoctorReport, Finding, Severity
from ..target import DEFAULT_ARCH, DEFAULT_RUNTIME, Target
from . import main
from .options import target_options
from .output import Output, json_option, quiet_option, reporting

_LABELS = {
    "ok": "[green]  ok   [/]",
    "info": "[blue] info  [/]",
    "warning": "[yellow]warning[/]",
    "error": "[red] error [/]",
}


@main.command("doctor")
@target_options
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    help="Repository whose line endings to check [default: the current folder].",
)
@click.option(
    "--dist",
    "dist_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of built layers to check for Windows or macOS files [default: REPO/dist].",
)
@click.option(
    "--python",
    type=click.Path(path_type=Path),
    default=None,
    help="Interpreter to check for the import check (as `build --python`).",
)
@click.option(
    "--bucket",
    default=None,
    help="Also check that the AWS identity can put and get objects here and publish layers "
    "('{region}' is replaced by the region).",
)
@click.option("--region", default=None, help="AWS region [default: AWS_REGION or the profile's].")
@click.option("--profile", default=None, help="AWS profile to use.")
@click.option(
    "--endpoint-url",
    default=None,
    help="Endpoint for every AWS call (STS, S3, Lambda, IAM): an S3-compatible store or a local server.",
)
@json_option
@quiet_option
def doctor_command(
    runtime: str | None,
    arch: str | None,
    repo: Path,
    dist_dir: Path | None,
    python: Path | None,
    bucket: str | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    json_mode: bool,
    quiet: bool,
) -> None:
    """Check this machine, its AWS credentials and the repository for what breaks Lambda layers.

    Each finding is ok, info, warning or error, and says how to fix it. Exits 1 when any is an error.
    """
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        target = Target(runtime or DEFAULT_RUNTIME, arch or DEFAULT_ARCH)
        options = DoctorOptions(
            target=target,
            repo=repo,
            dist=dist_dir,
            python=python,
            bucket=bucket,
            region=region,
            profile=profile,
            endpoint_url=endpoint_url,
        )
        output.info(f"checking for [bold]{target.runtime}[/] on {target.arch}")
        report = diagnose(options)
        _render(output, report)
        if json_mode:
            output.emit_json(report.as_dict())
    if report.exit_code:
        raise SystemExit(report.exit_code)


def _render(output: Output, report: DoctorReport) -> None:
    for finding in report.findings:
        if output.quiet and finding.severity in ("ok", "info"):
            continue
        output.console.print(_line(finding), soft_wrap=True)
    counts = ", ".join(_count(report, severity) for severity in ("error", "warning", "info", "ok"))
    verdict = "[red]problems to fix[/]" if report.errors else "[green]nothing blocks a build or publish[/]"
    output.console.print(f"{verdict}: {counts}")


def _count(report: DoctorReport, severity: Severity) -> str:
    number = report.count(severity)
    plural = "s" if number != 1 and severity in ("error", "warning") else ""
    return f"{number} {severity}{plural}"


def _line(finding: Finding) -> str:
    text = f"{_LABELS[finding.severity]} [bold]{finding.check}[/]: {escape(finding.summary)}"
    if finding.fix:
        text += f"\n          [dim]fix:[/] {escape(finding.fix)}"
    return text
