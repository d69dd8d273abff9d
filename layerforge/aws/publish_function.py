"""Publish a function zip: the layers' content-addressed upload, then the function's code per region.

    plan (local checks) -> upload per bucket -> per region: lookup -> update | create | nothing -> wait

`layerforge package-function` writes the zip and, beside it, a manifest of kind "function": the function's
name, runtime, architecture and handler, and how big the function and its layers are unzipped. The zip's
sha256 decides what happens: a function whose CodeSha256 and architecture already match is left alone,
so the same command run again changes nothing. A missing function is created only with `--create`.
Uploads, retries, redaction, the record and the per-region failure report are the layer path's own
(`publish.StepRunner` and friends): only the Lambda calls differ.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from .. import __version__
from ..errors import InputError, PublishError, SizeLimitError
from ..fsutil import sibling
from ..limits import MAX_LAYERS, unzipped_check
from .explain import Explanation, error_code
from .layers import DESCRIPTION_MAX, request_bytes, truncate
from .publish import (
    PublishOptions,
    RegionOutcome,
    RunSummary,
    StepFailed,
    StepRunner,
    default_region,
    make_clients,
    run_all,
)
from .publish_plan import (
    REGION_PLACEHOLDER,
    bucket_for,
    check_bucket,
    check_direct_request,
    check_regions,
    check_target,
    check_transfer,
    manifest_path_for,
    optional_str,
    read_manifest,
)
from .s3upload import ProgressCallback, TransferSettings, UploadOutcome, ZipDigest, digest_file, object_key

__all__ = [
    "FunctionPlan",
    "FunctionPublishResult",
    "FunctionRegionResult",
    "FunctionSettings",
    "make_function_plan",
    "publish_function",
    "refuse_function_flags",
]

# Lambda's own limits on what CreateFunction takes.
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MEMORY_MB = (128, 10_240)
TIMEOUT_SECONDS = (1, 900)
ENVIRONMENT_MAX_BYTES = 4 * 1024
_HANDLER = re.compile(r"^\S{1,128}$")
_ENV_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_LAYER_VERSION_ARN = re.compile(
    r"^arn:aws[\w-]*:lambda:(?P<region>[a-z0-9-]+|\{region\}):\d{12}:layer:[\w-]{1,140}:\d+$"
)


@dataclass(frozen=True)
class FunctionSettings:
    """The options only a function zip takes; the rest (bucket, regions, ...) are `PublishOptions`."""

    function_name: str | None = None  # default: the manifest's name
    create: bool = False
    role: str | None = None
    handler: str | None = None  # default: the manifest's handler
    layer_arns: tuple[str, ...] = ()  # default: the published layers the manifest lists
    memory: int | None = None
    timeout: int | None = None
    # KEY=VALUE. Values may be secrets: kept out of repr, messages, the record and --json.
    environment: tuple[str, ...] = field(default=(), repr=False)
    publish_version: bool = False

    def given(self) -> tuple[str, ...]:
        """The flags set to something other than their default."""
        flags = {
            "--function-name": self.function_name,
            "--create": self.create,
            "--role": self.role,
            "--handler": self.handler,
            "--layer-arn": self.layer_arns,
            "--memory": self.memory,
            "--timeout": self.timeout,
            "--env": self.environment,
            "--publish-version": self.publish_version,
        }
        # Compared by identity and length: `0 == False`, and --memory 0 is a value given (and refused).
        return tuple(flag for flag, value in flags.items() if _is_given(value))


def _is_given(value: object) -> bool:
    if value is None or value is False:
        return False
    return not (isinstance(value, tuple) and not value)


def refuse_function_flags(settings: FunctionSettings) -> None:
    """A layer zip given function flags: refuse rather than ignore what the user asked for."""
    given = settings.given()
    if given:
        raise InputError(
            f"{_flags(given)} to a function zip, and this zip is a layer",
            hint='a function zip has a manifest of kind "function" beside it (layerforge package-function); '
            "or pass --kind function",
        )


def _flags(flags: list[str] | tuple[str, ...], one: str = "applies", many: str = "apply") -> str:
    return f"{', '.join(flags)} {one if len(flags) == 1 else many}"


# --------------------------------------------------------------------------------------------------
# The plan: local facts only, so that every input error and size refusal comes before a byte is sent.


@dataclass(frozen=True)
class FunctionBuild:
    """What the package-function manifest says (all empty without a manifest)."""

    path: Path | None = None
    name: str | None = None
    runtime: str | None = None
    arch: str | None = None
    handler: str | None = None
    lock_hash: str | None = None
    unzipped_bytes: int | None = None  # the function alone
    layers_unzipped_bytes: int = 0
    layer_arns: tuple[str, ...] = ()  # the published layers its imports were checked against
    layer_zips: tuple[str, ...] = ()  # local layer zips, which a function cannot name

    @property
    def total_unzipped_bytes(self) -> int | None:
        if self.unzipped_bytes is None:
            return None
        return self.unzipped_bytes + self.layers_unzipped_bytes


@dataclass(frozen=True)
class CreateSpec:
    """How a missing function is created (`--create`)."""

    role: str
    handler: str
    runtime: str
    architecture: str
    layer_arns: tuple[str, ...] = ()  # '{region}' in one is replaced by each region
    memory: int | None = None
    timeout: int | None = None
    environment: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def create_args(self, name: str, region: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "FunctionName": name,
            "Role": self.role,
            "Handler": self.handler,
            "Runtime": self.runtime,
            "Architectures": [self.architecture],
            "PackageType": "Zip",
            "Description": truncate(f"created by layerforge {__version__}", DESCRIPTION_MAX),
        }
        if self.layer_arns:
            args["Layers"] = [arn.replace(REGION_PLACEHOLDER, region) for arn in self.layer_arns]
        if self.memory is not None:
            args["MemorySize"] = self.memory
        if self.timeout is not None:
            args["Timeout"] = self.timeout
        if self.environment:
            args["Environment"] = {"Variables": dict(self.environment)}
        return args


@dataclass(frozen=True)
class FunctionPlan:
    zip_path: Path
    digest: ZipDigest
    build: FunctionBuild
    name: str
    runtime: str | None
    architecture: str | None
    regions: tuple[str, ...]
    bucket_template: str | None  # None with --direct
    key: str | None
    direct: bool
    record_path: Path
    transfer: TransferSettings
    create: CreateSpec | None = None
    publish_version: bool = False
    warnings: tuple[str, ...] = ()

    def bucket_for(self, region: str) -> str | None:
        return bucket_for(self.bucket_template, region)

    def update_args(self, code: dict[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {"FunctionName": self.name, "Publish": self.publish_version, **code}
        if self.architecture:
            args["Architectures"] = [self.architecture]
        return args

    def create_args(self, region: str, code: dict[str, Any]) -> dict[str, Any]:
        assert self.create is not None
        return self.create.create_args(self.name, region) | {"Code": code, "Publish": self.publish_version}


def make_function_plan(
    options: PublishOptions, settings: FunctionSettings, default_region: str | None = None
) -> FunctionPlan:
    """Check every input and derive names, with no network call."""
    if not options.zip_path.is_file():
        raise InputError(
            f"no zip at {options.zip_path}", hint="package one with `layerforge package-function`"
        )
    _refuse_layer_flags(options)
    regions = check_regions(options.regions or ((default_region,) if default_region else ()))
    transfer = check_transfer(options)
    digest = digest_file(options.zip_path)
    warnings = check_bucket(options, regions)
    build = _read_function_build(options, digest)
    name = _function_name(settings, build)
    _check_combined_size(name, build)
    runtime = _one(options.runtimes, "--runtime") or build.runtime
    architecture = _one(options.architectures, "--arch") or build.arch
    check_target(() if runtime is None else (runtime,), () if architecture is None else (architecture,))
    create, create_warnings = _create_spec(settings, build, runtime, architecture, regions)
    plan = FunctionPlan(
        zip_path=options.zip_path,
        digest=digest,
        build=build,
        name=name,
        runtime=runtime,
        architecture=architecture,
        regions=regions,
        bucket_template=None if options.direct else options.bucket,
        key=None if options.direct else object_key(options.prefix, name, digest.sha256_hex),
        direct=options.direct,
        record_path=options.record_path or sibling(options.zip_path, ".publish.json"),
        transfer=transfer,
        create=create,
        publish_version=settings.publish_version,
        warnings=tuple(warnings + create_warnings),
    )
    if plan.direct:
        check_direct_request(digest, _direct_request_bytes(plan))
    return plan


def _refuse_layer_flags(options: PublishOptions) -> None:
    flags = {
        "--layer-name": options.layer_name,
        "--license": options.license_info,
        "--public": options.public,
        "--principal": options.principals,
        "--function": options.functions,
    }
    given = [flag for flag, value in flags.items() if value]
    if given:
        raise InputError(
            f"{_flags(given)} to a layer zip, and {options.zip_path.name} is a function zip",
            hint="--function-name names the function whose code this zip becomes",
        )


def _read_function_build(options: PublishOptions, digest: ZipDigest) -> FunctionBuild:
    path = manifest_path_for(options)
    if options.manifest_path is None and not path.is_file():
        return FunctionBuild()
    return load_function_manifest(path, digest)


def load_function_manifest(path: Path, digest: ZipDigest) -> FunctionBuild:
    data = read_manifest(path, "function", digest)
    layers = data.get("layers") or []
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise InputError(f"manifest {path}: layers must be a list of objects")
    return FunctionBuild(
        path=path,
        name=optional_str(data, "name", path),
        runtime=optional_str(data, "runtime", path),
        arch=optional_str(data, "arch", path),
        handler=optional_str(data, "handler", path),
        lock_hash=optional_str(data, "lock_hash", path),
        unzipped_bytes=_optional_int(data, "unzipped_bytes", path),
        layers_unzipped_bytes=sum(_optional_int(layer, "unzipped_bytes", path) or 0 for layer in layers),
        layer_arns=_layer_field(layers, "layer_arn", "location"),
        layer_zips=_layer_field(layers, "zip", "label"),
    )


def _layer_field(layers: list[dict[str, Any]], origin: str, key: str) -> tuple[str, ...]:
    """`key` of each layer from `origin` ("layer_arn": published, "zip": a local file)."""
    return tuple(str(layer[key]) for layer in layers if layer.get("origin") == origin and layer.get(key))


def _optional_int(data: dict[str, Any], key: str, path: Path) -> int | None:
    value = data.get(key)
    # bool is an int to Python, never a size to a manifest.
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise InputError(f"manifest {path}: {key} must be a byte count, not {value!r}")


def _function_name(settings: FunctionSettings, build: FunctionBuild) -> str:
    name = settings.function_name or build.name
    if not name:
        raise InputError(
            "no function name: the zip has no manifest that names it",
            hint="pass --function-name NAME, or --manifest PATH",
        )
    if not FUNCTION_NAME.match(name):
        raise InputError(
            f"function name {name!r} is not valid",
            hint="pass --function-name with up to 64 letters, digits, '-' and '_'",
        )
    return name


def _check_combined_size(name: str, build: FunctionBuild) -> None:
    """Lambda refuses a function whose code and layers unzip past its limit: refuse before uploading."""
    total = build.total_unzipped_bytes
    if total is None:
        return
    check = unzipped_check(total)
    if check.exceeded:
        raise SizeLimitError(
            f"function {name} and its layers unzip to {total:,} bytes (function {build.unzipped_bytes:,}, "
            f"layers {build.layers_unzipped_bytes:,}), over Lambda's {check.limit:,}-byte limit",
            hint="slim the requirements or the layers; `layerforge size-report` shows what is biggest",
        )


def _one(values: tuple[str, ...], flag: str) -> str | None:
    # A function runs on one runtime and one architecture (a layer may list several).
    if len(set(values)) > 1:
        raise InputError(f"a function takes one {flag}, not {len(set(values))}")
    return values[0] if values else None


_CREATE_ONLY = ("--role", "--handler", "--layer-arn", "--memory", "--timeout", "--env")


def _create_spec(
    settings: FunctionSettings,
    build: FunctionBuild,
    runtime: str | None,
    architecture: str | None,
    regions: tuple[str, ...],
) -> tuple[CreateSpec | None, list[str]]:
    if not settings.create:
        # An existing function's configuration is not changed: these would be silently ignored.
        unused = [flag for flag in settings.given() if flag in _CREATE_ONLY]
        if unused:
            raise InputError(
                f"{_flags(unused, 'is', 'are')} used only to create a function, and --create is not given",
                hint="add --create (an existing function keeps its configuration; only its code is updated)",
            )
        return None, []
    handler = settings.handler or build.handler
    required = {"--role": settings.role, "--handler": handler, "--runtime": runtime, "--arch": architecture}
    missing = [flag for flag, value in required.items() if not value]
    if missing:
        raise InputError(
            f"--create needs {', '.join(missing)}",
            hint="--role is the execution role's ARN; the manifest beside the zip gives the handler, "
            "runtime and architecture (layerforge package-function writes it)",
        )
    assert settings.role and handler and runtime and architecture  # for mypy: `missing` checked them
    _check_create_values(settings.role, handler, settings)
    layer_arns = settings.layer_arns or build.layer_arns
    _check_layer_arns(layer_arns, regions)
    warnings = []
    if not settings.layer_arns and build.layer_zips:
        warnings.append(
            f"the manifest lists local layer zip(s) {', '.join(build.layer_zips)}: a function can use only "
            "published layers, so it is created without them (pass --layer-arn)"
        )
    spec = CreateSpec(
        role=settings.role,
        handler=handler,
        runtime=runtime,
        architecture=architecture,
        layer_arns=tuple(dict.fromkeys(layer_arns)),
        memory=settings.memory,
        timeout=settings.timeout,
        environment=_environment(settings.environment),
    )
    return spec, warnings


def _check_create_values(role: str, handler: str, settings: FunctionSettings) -> None:
    if not _ROLE_ARN.match(role):
        raise InputError(
            f"--role {role!r} is not an IAM role ARN",
            hint="for example: arn:aws:iam::123456789012:role/my-function-role",
        )
    if not _HANDLER.match(handler):
        raise InputError(f"handler {handler!r} is not valid", hint="MODULE.FUNCTION, e.g. app.handler")
    for flag, value, (low, high) in (
        ("--memory", settings.memory, MEMORY_MB),
        ("--timeout", settings.timeout, TIMEOUT_SECONDS),
    ):
        if value is not None and not low <= value <= high:
            raise InputError(f"{flag} {value} is outside Lambda's range {low}..{high}")


def _check_layer_arns(arns: tuple[str, ...], regions: tuple[str, ...]) -> None:
    if len(set(arns)) > MAX_LAYERS:
        raise InputError(f"{len(set(arns))} layers: Lambda allows {MAX_LAYERS} on one function")
    for arn in arns:
        match = _LAYER_VERSION_ARN.match(arn)
        if match is None:
            raise InputError(
                f"--layer-arn {arn!r} is not a layer version ARN",
                hint="arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION ('{region}' may stand for the region)",
            )
        elsewhere = [
            region for region in regions if match.group("region") not in (region, REGION_PLACEHOLDER)
        ]
        if elsewhere:
            # Lambda attaches only layers of the function's own region.
            raise InputError(
                f"layer {arn} is in {match.group('region')}, but the function is published to "
                f"{', '.join(elsewhere)}",
                hint="put '{region}' in the ARN for one layer per region, or publish to the layer's region",
            )


def _environment(pairs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """KEY=VALUE pairs, checked. No message quotes a value: it may be a secret."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not _ENV_KEY.match(key):
            shown = f"{key}=..." if equals else "one of them"
            raise InputError(
                f"--env takes KEY=VALUE with a KEY of letters, digits and '_' ({shown} is not)",
                hint="for example: --env STAGE=prod",
            )
        if key in parsed:
            raise InputError(f"--env {key} is given twice")
        parsed[key] = value
    size = sum(len(key.encode()) + len(value.encode()) for key, value in parsed.items())
    if size > ENVIRONMENT_MAX_BYTES:
        raise InputError(f"--env: {size:,} bytes of variables, over Lambda's {ENVIRONMENT_MAX_BYTES:,}")
    return tuple(parsed.items())


def _direct_request_bytes(plan: FunctionPlan) -> int:
    """The biggest request that carries the zip: JSON around its base64 (4 bytes per 3)."""
    envelopes = [plan.update_args({"ZipFile": ""})]
    if plan.create is not None:
        envelopes.append(plan.create_args(plan.regions[0], {"ZipFile": ""}))
    return max(request_bytes(envelope, plan.digest.size) for envelope in envelopes)


# --------------------------------------------------------------------------------------------------
# Lambda: every call here is safe to make again.


@dataclass(frozen=True)
class FunctionState:
    """What Lambda says of a function's code."""

    arn: str  # unqualified
    code_sha256: str
    architectures: tuple[str, ...]
    runtime: str | None
    revision_id: str | None
    version: str | None  # the version published with the code; None for $LATEST


def _state(config: dict[str, Any]) -> FunctionState:
    version = str(config.get("Version") or "$LATEST")
    return FunctionState(
        # arn:aws:lambda:REGION:ACCOUNT:function:NAME, without a :VERSION a published update adds.
        arn=":".join(str(config.get("FunctionArn", "")).split(":")[:7]),
        code_sha256=str(config.get("CodeSha256", "")),
        architectures=tuple(config.get("Architectures") or ()),
        runtime=config.get("Runtime"),
        revision_id=config.get("RevisionId"),
        version=None if version == "$LATEST" else version,
    )


def find_function(client: Any, name: str) -> FunctionState | None:
    try:
        response = client.get_function(FunctionName=name)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise
    return _state(response.get("Configuration") or {})


def holds(state: FunctionState, plan: FunctionPlan) -> bool:
    """True when the function already runs this zip on this architecture: nothing to update."""
    if state.code_sha256 != plan.digest.sha256_b64:
        return False
    return plan.architecture is None or plan.architecture in state.architectures


def update_code(
    client: Any, plan: FunctionPlan, code: dict[str, Any], revision_id: str | None
) -> FunctionState:
    args = plan.update_args(code)
    if revision_id:
        # Refuse to overwrite a change someone made since the lookup.
        args["RevisionId"] = revision_id
    return _checked(_state(client.update_function_code(**args)), plan)


def create_function(client: Any, plan: FunctionPlan, region: str, code: dict[str, Any]) -> FunctionState:
    try:
        response = client.create_function(**plan.create_args(region, code))
    except ClientError as error:
        if error_code(error) == "ResourceConflictException":
            raise PublishError(
                f"function {plan.name} was created by someone else since it was looked up",
                hint="run again: the function is then updated",
            ) from error
        raise
    return _checked(_state(response), plan)


def _checked(state: FunctionState, plan: FunctionPlan) -> FunctionState:
    if state.code_sha256 != plan.digest.sha256_b64:
        raise PublishError(
            f"Lambda reports CodeSha256 {state.code_sha256} for function {plan.name}, but the zip's is "
            f"{plan.digest.sha256_b64}: the object Lambda read is not this zip",
            hint="check that nothing else writes the key, and publish again",
        )
    return state


def wait_ready(client: Any, name: str, *, created: bool) -> None:
    """Until Lambda has finished creating or updating the function (its waiters' defaults: 5 minutes).

    A run that returns earlier would report success for code that may still fail to deploy, and the next
    update would meet ResourceConflictException.
    """
    waiter = client.get_waiter("function_active_v2" if created else "function_updated_v2")
    try:
        waiter.wait(FunctionName=name)
    except WaiterError as error:
        raise PublishError(
            f"function {name} did not become ready: {_waiter_reason(error)}",
            hint="see the function's LastUpdateStatusReason in the Lambda console",
        ) from error


def _waiter_reason(error: WaiterError) -> str:
    last = error.last_response or {}
    config = last.get("Configuration") or {}
    failed = last.get("Error") or {}
    reason = config.get("LastUpdateStatusReason") or config.get("StateReason") or failed.get("Message")
    return str(reason or error.kwargs.get("reason") or error)


# --------------------------------------------------------------------------------------------------
# The run and its result


@dataclass(frozen=True)
class FunctionRegionResult(RegionOutcome):
    """One region of a function publish."""

    function_name: str | None = None
    function_arn: str | None = None
    code_sha256: str | None = None
    architectures: tuple[str, ...] = ()
    updated: bool = False  # the function's code changed in this run (created or updated)
    created: bool = False
    version: str | None = None  # with --publish-version
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"architectures": list(self.architectures)}


@dataclass(frozen=True)
class FunctionPublishResult(RunSummary):
    plan: FunctionPlan
    uploads: tuple[UploadOutcome, ...]
    regions: tuple[FunctionRegionResult, ...]
    record_path: Path | None = None

    def identity(self) -> dict[str, str]:
        return {"function_name": self.plan.name}

    def as_dict(self) -> dict[str, Any]:
        """The `publish --json` object for a function zip (also the body of its publish record)."""
        plan, create = self.plan, self.plan.create
        return self.common_fields() | {
            "zip_kind": "function",
            "code_sha256": plan.digest.sha256_b64,
            "unzipped_bytes": plan.build.unzipped_bytes,
            "layers_unzipped_bytes": plan.build.layers_unzipped_bytes,
            "function_name": plan.name,
            "runtime": plan.runtime,
            "architecture": plan.architecture,
            "handler": create.handler if create else plan.build.handler,
            "create": create is not None,
            "layers": list(create.layer_arns) if create else [],
            # The names only: the values may be secrets.
            "environment": sorted(key for key, _ in create.environment) if create else [],
            "publish_version": plan.publish_version,
        }


class _FunctionRun(StepRunner[FunctionPlan]):
    """The shared upload, then per region: look the function up, and update, create or leave it."""

    def region(self, region: str) -> FunctionRegionResult:
        values: dict[str, Any] = {"function_name": self.plan.name}
        warnings: list[str] = []
        try:
            self._steps(region, values, warnings)
        except StepFailed as failure:
            explanation = failure.explanation
            return FunctionRegionResult(
                region,
                "failed",
                warnings=tuple(warnings),
                step=failure.step,
                error=explanation.message,
                hint=explanation.hint,
                **values,
            )
        return FunctionRegionResult(region, "ok", warnings=tuple(warnings), **values)

    def _steps(self, region: str, values: dict[str, Any], warnings: list[str]) -> None:
        client = self.clients.lambda_[region]
        code = self.content(region, values)
        current = self.guarded("lookup", functools.partial(find_function, client, self.plan.name))
        if current is None:
            self._create(client, region, code, values)
            return
        warnings.extend(self._runtime_warning(current))
        if holds(current, self.plan):
            _note(values, current, updated=False)
            return
        update = functools.partial(update_code, client, self.plan, code, current.revision_id)
        _note(values, self.guarded("update", update), updated=True)
        self.guarded("wait", functools.partial(wait_ready, client, self.plan.name, created=False))

    def _create(self, client: Any, region: str, code: dict[str, Any], values: dict[str, Any]) -> None:
        if self.plan.create is None:
            raise StepFailed(
                "lookup",
                Explanation(
                    f"function {self.plan.name} does not exist in {region}",
                    hint="pass --create --role ARN to create it (the manifest gives its runtime, handler "
                    "and architecture), or --function-name for another function",
                ),
            )
        create = functools.partial(create_function, client, self.plan, region, code)
        _note(values, self.guarded("create", create), updated=True, created=True)
        self.guarded("wait", functools.partial(wait_ready, client, self.plan.name, created=True))

    def _runtime_warning(self, current: FunctionState) -> list[str]:
        # UpdateFunctionCode keeps the function's runtime: wheels built for another Python may not import.
        if self.plan.runtime and current.runtime and current.runtime != self.plan.runtime:
            return [
                f"function {self.plan.name} runs {current.runtime}, but the zip was built for "
                f"{self.plan.runtime}: compiled packages may fail to import"
            ]
        return []


def _note(values: dict[str, Any], state: FunctionState, *, updated: bool, created: bool = False) -> None:
    values |= {
        "function_arn": state.arn,
        "code_sha256": state.code_sha256,
        "architectures": state.architectures,
        "updated": updated,
        "created": created,
        "version": state.version,
    }


def publish_function(
    options: PublishOptions,
    settings: FunctionSettings,
    on_progress: ProgressCallback | None = None,
    *,
    write: bool = True,
) -> FunctionPublishResult:
    """Upload the function zip and make it each region's function code, as `options` say.

    Raises InputError or SizeLimitError before any network call when the inputs are wrong.
    A failure during the run does not raise: see `FunctionPublishResult.ok` and `.failure()`.
    """
    plan = make_function_plan(options, settings, default_region=default_region(options))
    run = _FunctionRun(plan, make_clients(options, plan), on_progress)
    return run_all(run, options.jobs, FunctionPublishResult, write=write)
