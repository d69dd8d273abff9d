"""`layerforge publish ZIP --bucket B`: options in, `layerforge.publish` does the work, results out.

A layer zip goes to `publish.publish`, a function zip (its manifest's kind, or --kind) to
`publish_function.publish_function`; both report per region in the same shape.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress, TaskID

from ..aws.publish import PublishOptions, PublishResult, RegionResult, publish
from ..aws.publish_function import (
    MEMORY_MB,
    TIMEOUT_SECONDS,
    FunctionPublishResult,
    FunctionRegionResult,
    FunctionSettings,
    publish_function,
    refuse_function_flags,
)
from ..aws.publish_plan import DEFAULT_PREFIX, KINDS, RETRY_MODES, zip_kind
from ..aws.s3upload import (
    DEFAULT_MULTIPART_CHUNKSIZE,
    DEFAULT_MULTIPART_THRESHOLD,
    MiB,
    UploadOutcome,
    UploadProgress,
)
from ..project import PROJECT_FILE
from ..report.size_report import SIZE_UNITS
from ..target import ARCHES, RUNTIMES
from . import main
from .output import Output, json_option, quiet_option, reporting
from .project_cmd import cells_option, project_option, publish_project

_FUNCTION_FIELDS = tuple(field.name for field in dataclasses.fields(FunctionSettings))


def _byte_size(ctx: click.Context, param: click.Parameter, value: Any) -> int:
    """A byte count from the command line: 8388608, 8MiB, 64MB."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in SIZE_UNITS:
        raise click.BadParameter(f"{value!r} is not a size (examples: 8388608, 8MiB, 64MB)", ctx, param)
    return int(match.group(1)) * SIZE_UNITS[unit]


class _ProgressView:
    """Feeds upload progress (from transfer threads) into one rich bar per S3 object."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __call__(self, event: UploadProgress) -> None:
        if self._progress is None:
            return
        with self._lock:
            task = self._tasks.get(event.target)
            if task is None:
                task = self._progress.add_task(escape(event.target), total=event.total)
                self._tasks[event.target] = task
        self._progress.advance(task, event.advanced)


@main.command("publish")
@click.argument("paths", metavar="ZIP | --project DIST...", nargs=-1, type=click.Path(path_type=Path))
@project_option(
    "Publish every built cell found in DIST... to the project's regions [default: ./layerforge.toml]."
)
@cells_option
@click.option(
    "--upload-only",
    is_flag=True,
    help="Put the zip in S3 and write the record, but publish no layer version (Terraform owns it).",
)
@click.option("--bucket", help="S3 bucket for the zip; '{region}' in it is replaced by each region.")
@click.option(
    "--region", "regions", multiple=True, help="Region to publish in (repeat for more; in parallel)."
)
@click.option(
    "--prefix", default=DEFAULT_PREFIX, show_default=True, help="Key prefix: PREFIX/LAYER/SHA256.zip."
)
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Build manifest (default: <zip stem>.manifest.json beside the zip).",
)
@click.option("--layer-name", help="Layer name (default: from the manifest: RECIPE-RUNTIME-ARCH).")
@click.option(
    "--runtime", "runtimes", multiple=True, type=click.Choice(list(RUNTIMES)), help="Compatible runtime."
)
@click.option(
    "--arch", "architectures", multiple=True, type=click.Choice(list(ARCHES)), help="Compatible arch."
)
@click.option(
    "--license", "license_info", help="License info (default: the manifest's; 512 characters at most)."
)
@click.option("--public", is_flag=True, help="Let every AWS account use the layer version.")
@click.option(
    "--principal",
    "principals",
    multiple=True,
    help="Account id, account root ARN or o-org id allowed to use it.",
)
@click.option(
    "--function",
    "functions",
    multiple=True,
    help="Point this function at the new version, keeping its other layers "
    "(a name: in every region; an ARN: in its own).",
)
@click.option("--direct", is_flag=True, help="Send a small zip in the request instead of through S3.")
@click.option(
    "--record",
    "record_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Publish record (default: <zip stem>.publish.json beside the zip).",
)
@click.option("--endpoint-url", help="S3 endpoint (an S3-compatible store).")
@click.option("--lambda-endpoint-url", help="Lambda API endpoint (also asked who the caller is).")
@click.option("--profile", help="AWS profile to use.")
@click.option(
    "--multipart-threshold",
    callback=_byte_size,
    default=f"{DEFAULT_MULTIPART_THRESHOLD // MiB}MiB",
    show_default=True,
    help="Upload in parts at or above this size.",
)
@click.option(
    "--multipart-chunksize",
    callback=_byte_size,
    default=f"{DEFAULT_MULTIPART_CHUNKSIZE // MiB}MiB",
    show_default=True,
    help="Part size.",
)
@click.option("--retry-mode", type=click.Choice(RETRY_MODES), default="standard", show_default=True)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 20),
    default=5,
    show_default=True,
    help="Attempts per request, retries on throttling and server errors included.",
)
@click.option("--jobs", type=click.IntRange(1, 32), default=8, show_default=True, help="Regions at once.")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="What ZIP is (default: its manifest's kind; a zip without a manifest is a layer).",
)
@click.option("--function-name", help="Function zip: the function to update (default: the manifest's name).")
@click.option("--create", is_flag=True, help="Function zip: create the function if it does not exist.")
@click.option("--role", help="With --create: the function's execution role ARN.")
@click.option("--handler", help="With --create: the handler (default: the manifest's).")
@click.option(
    "--layer-arn",
    "layer_arns",
    multiple=True,
    help="With --create: a layer version ARN (repeat; '{region}' is replaced; "
    "default: the published layers the manifest lists).",
)
@click.option("--memory", type=click.IntRange(*MEMORY_MB), help="With --create: memory in MB.")
@click.option("--timeout", type=click.IntRange(*TIMEOUT_SECONDS), help="With --create: timeout in seconds.")
@click.option(
    "--env",
    "environment",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --create: an environment variable (repeat). Never printed.",
)
@click.option(
    "--publish-version", is_flag=True, help="Function zip: publish a function version with new code."
)
@json_option
@quiet_option
def publish_command(
    json_mode: bool,
    quiet: bool,
    kind: str | None,
    paths: tuple[Path, ...],
    project_file: Path | None,
    cell_patterns: tuple[str, ...],
    **values: Any,
) -> None:
    """Upload ZIP to S3 (content-addressed) and publish it: a layer zip as a layer version, a
    function zip (layerforge package-function) as the function's code, in each region.

    Idempotent: an object with the same sha256 is not uploaded again, a region whose latest layer
    version holds the same zip gets no new version, and a function already running the zip is not
    updated.
    """
    output = Output(json_mode=json_mode, quiet=quiet)
    with reporting(output):
        settings = FunctionSettings(**{name: values.pop(name) for name in _FUNCTION_FIELDS})
        if project_file is not None or cell_patterns:
            if project_file is not None and project_file.is_dir():  # `--project DIST`: the default file
                paths, project_file = (project_file, *paths), None
            _refuse_with_project(settings, kind, values)
            base = PublishOptions(zip_path=Path(), **values)
            publish_project(output, project_file or Path(PROJECT_FILE), paths, cell_patterns, base)
            return
        if len(paths) != 1:
            raise click.UsageError("publish takes one ZIP (or --project DIST... for a project's cells)")
        result = _publish(output, PublishOptions(zip_path=paths[0], **values), settings, kind)
        _report(output, result)
        _finish(output, result)


def _refuse_with_project(settings: FunctionSettings, kind: str | None, values: dict[str, Any]) -> None:
    """Each cell names its own layer and record, and every cell is a layer."""
    refuse_function_flags(settings)
    clashing = [flag for flag, key in _PER_ZIP_FLAGS if values.get(key)]
    if kind == "function":
        clashing.append("--kind function")
    if clashing:
        raise click.UsageError(f"--project publishes each cell as built; {', '.join(clashing)} cannot apply")


_PER_ZIP_FLAGS = (
    ("--manifest", "manifest_path"),
    ("--layer-name", "layer_name"),
    ("--record", "record_path"),
    ("--runtime", "runtimes"),
    ("--arch", "architectures"),
)


def _publish(
    output: Output, options: PublishOptions, settings: FunctionSettings, kind: str | None
) -> PublishResult | FunctionPublishResult:
    """A function zip (by its manifest's kind, or --kind) goes the function's way, any other the layer's."""
    function = zip_kind(options, kind) == "function"
    if not function:
        refuse_function_flags(settings)
    with output.progress() as progress:
        if function:
            return publish_function(options, settings, on_progress=_ProgressView(progress))
        return publish(options, on_progress=_ProgressView(progress))


def _say(output: Output, message: str) -> None:
    # Unwrapped: an ARN or an S3 URI cut at the terminal's width cannot be copied or grepped.
    if not output.quiet:
        output.console.print(message, soft_wrap=True)


def _report(output: Output, result: PublishResult | FunctionPublishResult) -> None:
    plan = result.plan
    for warning in plan.warnings:
        output.warn(escape(warning))
    if isinstance(result, FunctionPublishResult):
        subject = f"function {result.plan.name}"
    else:
        subject = f"layer {result.plan.spec.name}"
    _say(
        output,
        f"{escape(subject)}: {escape(plan.zip_path.name)}, {plan.digest.size:,} bytes, "
        f"sha256 {plan.digest.sha256_hex}",
    )
    _report_uploads(output, result.uploads, plan.direct, plan.digest.size)
    for region in result.regions:
        if isinstance(region, FunctionRegionResult):
            _report_function_region(output, region)
        else:
            _report_region(output, region)
        if not region.ok:
            name, step = escape(region.region), escape(region.step or "?")
            output.error(f"{name}: failed at step {step}: {escape(region.error or '')}")
    if result.record_path:
        _say(output, f"record: {escape(str(result.record_path))}")


def _report_uploads(output: Output, uploads: tuple[UploadOutcome, ...], direct: bool, size: int) -> None:
    for upload in uploads:
        if upload.uploaded:
            parts = " in parts" if upload.multipart else ""
            _say(output, f"uploaded {upload.uploaded_bytes:,} bytes{parts} to {escape(upload.uri)}")
        else:
            _say(output, f"{escape(upload.uri)} is already there with this sha256: uploaded 0 bytes")
    if direct:
        _say(output, f"sent the zip in the request ({size:,} bytes), not through S3")


def _report_function_region(output: Output, region: FunctionRegionResult) -> None:
    name = escape(region.region)
    for warning in region.warnings:
        output.warn(f"{name}: {escape(warning)}")
    if region.function_arn:
        arn = escape(region.function_arn)
        version = f" as version {escape(region.version)}" if region.version else ""
        if region.created:
            _say(output, f"{name}: created function{version}: {arn}")
        elif region.updated:
            _say(output, f"{name}: updated the function's code{version}: {arn}")
        else:
            _say(output, f"{name}: the function already runs this zip, updated nothing: {arn}")


def _report_region(output: Output, region: RegionResult) -> None:
    name = escape(region.region)
    for warning in region.warnings:
        output.warn(f"{name}: {escape(warning)}")
    if region.layer_version_arn:
        arn = escape(region.layer_version_arn)
        if region.published:
            _say(output, f"{name}: published version {region.version}: {arn}")
        else:
            _say(
                output,
                f"{name}: version {region.version} already holds this zip, published nothing new: {arn}",
            )
    for grant in region.grants:
        done = "granted" if grant.added else "already granted"
        _say(
            output,
            f"{name}: {done} use to {escape(grant.principal)} (statement {escape(grant.statement_id)})",
        )
    for function in region.functions:
        layers = ", ".join(escape(arn) for arn in function.layers_after)
        verb = "now uses" if function.updated else "already uses"
        _say(output, f"{name}: function {escape(function.function)} {verb} layers: {layers}")


def _finish(output: Output, result: PublishResult | FunctionPublishResult) -> None:
    """One JSON object on stdout, success or not; a failed region means exit 1."""
    failure = result.failure()
    payload = result.as_dict()
    if failure is not None:
        payload |= {"error": failure.message, "hint": failure.hint, "exit_code": failure.exit_code}
    if output.json_mode:
        output.emit_json(payload)
    if failure is not None:
        output.error(escape(str(failure)))
        raise SystemExit(failure.exit_code)
