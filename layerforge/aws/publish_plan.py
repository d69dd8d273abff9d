"""Everything `publish` decides before it talks to AWS: options, the build manifest, names and limits.

A plan is made from local facts only (the zip, its manifest, the options), so every input error and
size refusal is reported before a byte is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError, SizeLimitError
from ..fsutil import sibling
from ..limits import DIRECT_UPLOAD_REQUEST_BYTES, DIRECT_UPLOAD_ZIP_BYTES
from ..sbom import SBOM_SUFFIX
from ..target import ARCHES, RUNTIMES
from .layers import (
    DESCRIPTION_MAX,
    LAYER_NAME,
    LICENSE_INFO_MAX,
    LayerSpec,
    check_principal,
    direct_request_bytes,
    sanitize_layer_name,
    truncate,
)
from .s3upload import (
    DEFAULT_MULTIPART_CHUNKSIZE,
    DEFAULT_MULTIPART_THRESHOLD,
    MIN_PART_BYTES,
    TransferSettings,
    ZipDigest,
    digest_file,
    object_key,
)

DEFAULT_PREFIX = "layerforge"
RETRY_MODES = ("standard", "adaptive")
REGION_PLACEHOLDER = "{region}"


def bucket_for(template: str | None, region: str) -> str | None:
    """The bucket of one region: `{region}` in the template replaced; None when the zip goes direct."""
    return None if template is None else template.replace(REGION_PLACEHOLDER, region)


KINDS = ("layer", "function")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_FUNCTION_ARN = re.compile(r"^arn:aws[\w-]*:lambda:(?P<region>[a-z0-9-]+):\d{12}:function:[\w-]+(:[\w$-]+)?$")


@dataclass(frozen=True)
class PublishOptions:
    """Everything `layerforge publish` accepts, as the library takes it."""

    zip_path: Path
    regions: tuple[str, ...] = ()
    bucket: str | None = None  # may contain "{region}": one bucket per region
    prefix: str = DEFAULT_PREFIX
    manifest_path: Path | None = None  # default: <zip stem>.manifest.json beside the zip, if present
    layer_name: str | None = None
    runtimes: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    license_info: str | None = None
    public: bool = False
    principals: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    direct: bool = False
    record_path: Path | None = None  # default: <zip stem>.publish.json beside the zip
    endpoint_url: str | None = None  # S3 (or an S3-compatible store)
    lambda_endpoint_url: str | None = None  # the Lambda API (and STS, for naming the caller)
    profile: str | None = None
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE
    retry_mode: str = "standard"
    max_attempts: int = 5
    jobs: int = 8  # regions published at once
    upload_only: bool = False  # the zip to S3 and the record, no layer version (Terraform publishes it)


@dataclass(frozen=True)
class BuildInfo:
    """What the build manifest says about the zip (all optional without a manifest)."""

    path: Path | None = None
    recipe: str | None = None
    lock_hash: str | None = None
    runtimes: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    license: str | None = None
    layer_name: str | None = None
    sbom: str | None = None  # the SBOM's file name, beside the manifest
    peak_rss_bytes: int | None = None  # what importing the layer took when the build verified it


@dataclass(frozen=True)
class PublishPlan:
    zip_path: Path
    digest: ZipDigest
    build: BuildInfo
    spec: LayerSpec
    regions: tuple[str, ...]
    bucket_template: str | None  # None with --direct
    key: str | None
    principals: tuple[str, ...]
    functions: tuple[str, ...]
    direct: bool
    record_path: Path
    transfer: TransferSettings
    warnings: tuple[str, ...] = field(default=())
    sbom_path: Path | None = None  # uploaded beside the zip, under `sbom_key`
    sbom_digest: ZipDigest | None = None
    sbom_key: str | None = None
    upload_only: bool = False

    def bucket_for(self, region: str) -> str | None:
        return bucket_for(self.bucket_template, region)

    def functions_for(self, region: str) -> tuple[str, ...]:
        """Plain names apply in every region; a function ARN only in its own."""
        chosen = []
        for function in self.functions:
            match = _FUNCTION_ARN.match(function)
            if match is None or match.group("region") == region:
                chosen.append(function)
        return tuple(chosen)


def manifest_path_for(options: PublishOptions) -> Path:
    return options.manifest_path or sibling(options.zip_path, ".manifest.json")


def zip_kind(options: PublishOptions, explicit: str | None = None) -> str:
    """The kind of zip, "layer" or "function": `--kind`, else the manifest's; a bare zip is a layer."""
    if explicit is not None:
        return explicit
    try:
        data = json.loads(manifest_path_for(options).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "layer"  # the layer plan then says what is wrong with a manifest that was asked for
    return "function" if isinstance(data, dict) and data.get("kind") == "function" else "layer"


def read_manifest(path: Path, kind: str, digest: ZipDigest) -> dict[str, Any]:
    """The manifest as a JSON object, refused unless it is of `kind` and describes this very zip."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the manifest {path}: {error}", hint="pass --manifest PATH") from error
    if not isinstance(data, dict):
        raise InputError(f"manifest {path} is not a JSON object")
    if data.get("kind", "layer") != kind or data.get("schema_version", 1) != 1:
        raise InputError(
            f"manifest {path} is kind {data.get('kind')!r}, schema {data.get('schema_version')!r}",
            hint=f"publish takes a {kind} manifest of schema_version 1 here (see docs/manifest.md); "
            "--kind says which kind the zip is",
        )
    recorded = data.get("sha256")
    if recorded is not None and recorded != digest.sha256_hex:
        raise InputError(
            f"manifest {path} describes a zip with sha256 {recorded}, not this one ({digest.sha256_hex})",
            hint="rebuild, or pass the matching --manifest",
        )
    return data


def load_build_manifest(path: Path, digest: ZipDigest) -> BuildInfo:
    data = read_manifest(path, "layer", digest)
    runtimes = strings(data, "compatible_runtimes", path) or strings(data, "runtime", path)
    architectures = strings(data, "compatible_architectures", path) or strings(data, "arch", path)
    return BuildInfo(
        path=path,
        recipe=optional_str(data, "recipe", path),
        lock_hash=optional_str(data, "lock_hash", path),
        runtimes=runtimes,
        architectures=architectures,
        license=optional_str(data, "license", path),
        layer_name=optional_str(data, "layer_name", path),
        sbom=optional_str(data, "sbom", path),
        peak_rss_bytes=_peak_rss_bytes(data, path),
    )


def _peak_rss_bytes(data: dict[str, Any], path: Path) -> int | None:
    verification = data.get("verification")
    value = verification.get("peak_rss_bytes") if isinstance(verification, dict) else None
    # bool is an int to Python, never a byte count to a manifest.
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise InputError(f"manifest {path}: verification.peak_rss_bytes must be a byte count, not {value!r}")


def optional_str(data: dict[str, Any], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value or None
    raise InputError(f"manifest {path}: {key} must be a string, not {type(value).__name__}")


def strings(data: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InputError(f"manifest {path}: {key} must be a list of strings")


def _read_build_info(options: PublishOptions, digest: ZipDigest) -> BuildInfo:
    path = manifest_path_for(options)
    if options.manifest_path is None and not path.is_file():
        return BuildInfo()
    return load_build_manifest(path, digest)


def _layer_spec(options: PublishOptions, build: BuildInfo, digest: ZipDigest) -> tuple[LayerSpec, list[str]]:
    warnings: list[str] = []
    runtimes = options.runtimes or build.runtimes
    architectures = options.architectures or build.architectures
    name = options.layer_name or build.layer_name or _default_layer_name(build)
    missing = [
        flag
        for flag, value in (("--layer-name", name), ("--runtime", runtimes), ("--arch", architectures))
        if not value
    ]
    if missing:
        raise InputError(
            f"no build manifest for {options.zip_path.name}, so {', '.join(missing)} must be given",
            hint=f"pass --manifest PATH, or give {' '.join(missing)}",
        )
    assert name is not None  # for mypy: `missing` checked it
    _check_names(name, runtimes, architectures)
    license_info = options.license_info or build.license
    if license_info and len(license_info) > LICENSE_INFO_MAX:
        warnings.append(f"license info cut to Lambda's {LICENSE_INFO_MAX} characters")
        license_info = truncate(license_info, LICENSE_INFO_MAX)
    spec = LayerSpec(
        name=name,
        description=_description(build, digest),
        runtimes=tuple(dict.fromkeys(runtimes)),
        architectures=tuple(dict.fromkeys(architectures)),
        license_info=license_info,
    )
    return spec, warnings


def _default_layer_name(build: BuildInfo) -> str | None:
    # One layer per recipe, runtime and architecture, as the build names its zip: versions of one
    # layer then always compare like with like.
    if not build.recipe or len(build.runtimes) != 1 or len(build.architectures) != 1:
        return sanitize_layer_name(build.recipe) if build.recipe else None
    return sanitize_layer_name(f"{build.recipe}-{build.runtimes[0]}-{build.architectures[0]}")


def _check_names(name: str, runtimes: tuple[str, ...], architectures: tuple[str, ...]) -> None:
    if not LAYER_NAME.match(name):
        raise InputError(
            f"layer name {name!r} is not valid",
            hint="use up to 140 letters, digits, '-' and '_'",
        )
    check_target(runtimes, architectures)


def check_target(runtimes: Iterable[str], architectures: Iterable[str]) -> None:
    """Every runtime and architecture one Lambda knows; the first unknown one is named."""
    unknown = [runtime for runtime in runtimes if runtime not in RUNTIMES]
    if unknown:
        raise InputError(f"unknown runtime {unknown[0]!r}", hint=f"choose from {', '.join(RUNTIMES)}")
    unknown = [arch for arch in architectures if arch not in ARCHES]
    if unknown:
        raise InputError(f"unknown architecture {unknown[0]!r}", hint=f"choose from {', '.join(ARCHES)}")


def _description(build: BuildInfo, digest: ZipDigest) -> str:
    what = f"recipe {build.recipe}" if build.recipe else "layer"
    # The lock's hash says which pins made the layer; without a lock, the zip's own hash is the id.
    origin = f"lock sha256:{build.lock_hash}" if build.lock_hash else f"zip sha256:{digest.sha256_hex}"
    return truncate(f"layerforge {what}; {origin}; layerforge {__version__}", DESCRIPTION_MAX)


def check_regions(regions: tuple[str, ...]) -> tuple[str, ...]:
    if not regions:
        raise InputError("no region to publish to", hint="pass --region (it may repeat), or set AWS_REGION")
    bad = [region for region in regions if not _REGION.match(region)]
    if bad:
        raise InputError(f"{bad[0]!r} is not an AWS region name", hint="for example: --region us-east-1")
    return tuple(dict.fromkeys(regions))


def check_bucket(options: PublishOptions, regions: tuple[str, ...]) -> list[str]:
    if options.direct:
        return ["--bucket is not used with --direct"] if options.bucket else []
    if not options.bucket:
        raise InputError(
            "publish needs --bucket",
            hint="pass --bucket NAME ('{region}' in it: one bucket per region), or --direct for a small zip",
        )
    rest = options.bucket.replace(REGION_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise InputError(f"bucket {options.bucket!r}: the only placeholder allowed is {REGION_PLACEHOLDER}")
    if len(regions) > 1 and REGION_PLACEHOLDER not in options.bucket:
        # Lambda reads a layer's zip only from a bucket in the layer's own region.
        raise InputError(
            f"{len(regions)} regions but one bucket ({options.bucket})",
            hint="Lambda reads the zip from a bucket in the same region: use --bucket 'NAME-{region}'",
        )
    return []


def check_direct(digest: ZipDigest, spec: LayerSpec) -> None:
    """Refuse a zip that Lambda would refuse in the request, saying which limit and by how much."""
    check_direct_request(digest, direct_request_bytes(digest.size, spec))


def check_direct_request(digest: ZipDigest, request: int) -> None:
    """Refuse a zip over the direct-upload limit, or whose request body of `request` bytes is."""
    reasons = []
    if digest.size > DIRECT_UPLOAD_ZIP_BYTES:
        reasons.append(
            f"the zip is {digest.size:,} bytes, over the {DIRECT_UPLOAD_ZIP_BYTES:,}-byte (50 MiB) limit"
        )
    if request > DIRECT_UPLOAD_REQUEST_BYTES:
        reasons.append(
            f"the request would be {request:,} bytes (base64 makes the zip 4/3 as big), "
            f"over Lambda's {DIRECT_UPLOAD_REQUEST_BYTES:,}-byte request limit"
        )
    if reasons:
        raise SizeLimitError(
            "--direct cannot publish this zip: " + "; ".join(reasons),
            hint="drop --direct and publish through S3 with --bucket",
        )


def check_transfer(options: PublishOptions) -> TransferSettings:
    if options.multipart_chunksize < MIN_PART_BYTES:
        raise InputError(
            f"--multipart-chunksize {options.multipart_chunksize:,} is under S3's 5 MiB part minimum"
        )
    if options.retry_mode not in RETRY_MODES:
        raise InputError(f"retry mode {options.retry_mode!r}", hint=f"choose from {', '.join(RETRY_MODES)}")
    if options.max_attempts < 1:
        raise InputError("--max-attempts must be at least 1")
    return TransferSettings(options.multipart_threshold, options.multipart_chunksize)


def _check_principals(options: PublishOptions) -> tuple[str, ...]:
    principals = (("*",) if options.public else ()) + options.principals
    for principal in principals:
        try:
            check_principal(principal)
        except ValueError as error:
            raise InputError(
                str(error), hint="--public grants everyone; --principal takes an account"
            ) from error
    return tuple(dict.fromkeys(principals))


def make_plan(options: PublishOptions, default_region: str | None = None) -> PublishPlan:
    """Check every input and derive names, with no network call."""
    if not options.zip_path.is_file():
        raise InputError(f"no zip at {options.zip_path}", hint="build one with `layerforge build`")
    regions = check_regions(options.regions or ((default_region,) if default_region else ()))
    transfer = check_transfer(options)
    digest = digest_file(options.zip_path)
    warnings = check_bucket(options, regions)
    build = _read_build_info(options, digest)
    spec, spec_warnings = _layer_spec(options, build, digest)
    if options.direct:
        check_direct(digest, spec)
    principals = _check_principals(options)
    _check_upload_only(options, principals)
    sbom_path = None if options.direct else _sbom_path(options, build)
    sbom_digest = digest_file(sbom_path) if sbom_path else None
    return PublishPlan(
        zip_path=options.zip_path,
        digest=digest,
        build=build,
        spec=spec,
        regions=regions,
        bucket_template=None if options.direct else options.bucket,
        key=None if options.direct else object_key(options.prefix, spec.name, digest.sha256_hex),
        principals=principals,
        functions=tuple(dict.fromkeys(options.functions)),
        direct=options.direct,
        record_path=options.record_path or sibling(options.zip_path, ".publish.json"),
        transfer=transfer,
        warnings=tuple(warnings + spec_warnings),
        sbom_path=sbom_path,
        sbom_digest=sbom_digest,
        sbom_key=object_key(options.prefix, spec.name, digest.sha256_hex, SBOM_SUFFIX) if sbom_path else None,
        upload_only=options.upload_only,
    )


def _check_upload_only(options: PublishOptions, principals: tuple[str, ...]) -> None:
    """Grants and function updates need a layer version, which --upload-only leaves to Terraform."""
    if not options.upload_only:
        return
    given = {"--direct": options.direct, "--public/--principal": principals, "--function": options.functions}
    clashing = [flag for flag, value in given.items() if value]
    if clashing:
        raise InputError(
            f"--upload-only publishes no layer version, so {', '.join(clashing)} cannot apply",
            hint="drop them; grant use and point functions where the layer version is made (Terraform)",
        )


def _sbom_path(options: PublishOptions, build: BuildInfo) -> Path | None:
    """The SBOM the manifest names (beside it), else `<zip stem>.cdx.json` beside the zip, if there."""
    if build.sbom and build.path is not None:
        named = build.path.parent / build.sbom
        if not named.is_file():
            raise InputError(
                f"manifest {build.path} names the SBOM {build.sbom}, which is not beside it",
                hint="rebuild, or write it with `layerforge sbom ZIP`",
            )
        return named
    beside = sibling(options.zip_path, SBOM_SUFFIX)
    return beside if beside.is_file() else None
