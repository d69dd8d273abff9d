"""Publish a layer zip: one S3 object per bucket, one layer version per region, in parallel.

    plan (local checks) -> upload per bucket -> per region: publish | reuse -> grant -> point functions

Every step is idempotent, so running the same command again after a failure finishes the work
without duplicating it. A region's result is "ok" only when all of its steps succeeded; the record
(`<zip stem>.publish.json`) and the returned `PublishResult` say, region by region, what exists.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from .. import __version__
from ..errors import InputError, LayerforgeError, PublishError
from ..fsutil import atomic_write_text
from ..limits import memory_advice, recommended_memory_mb
from .explain import Explanation, IdentityLookup, Redactor, explain
from .layers import (
    FunctionUpdate,
    Grant,
    LayerVersion,
    grant_use,
    matching_version,
    point_function,
    publish_version,
)
from .publish_plan import PublishOptions, PublishPlan, make_plan
from .s3upload import ProgressCallback, TransferSettings, UploadOutcome, ZipDigest, ensure_object

__all__ = [
    "PublishOptions",
    "PublishResult",
    "RegionOutcome",
    "RegionResult",
    "StepFailed",
    "StepRunner",
    "UploadPlan",
    "publish",
    "write_record",
]

T = TypeVar("T")
RECORD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RegionOutcome:
    """What happened in one region, layer or function. `status` is "ok" only when every step succeeded."""

    region: str
    status: str
    bucket: str | None = None
    key: str | None = None
    uploaded: bool = False
    uploaded_bytes: int = 0
    step: str | None = None  # the step that failed
    error: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class RegionResult(RegionOutcome):
    """One region of a layer publish."""

    layer_arn: str | None = None
    layer_version_arn: str | None = None
    version: int | None = None
    published: bool = False
    grants: tuple[Grant, ...] = ()
    functions: tuple[FunctionUpdate, ...] = ()
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "status": self.status,
            "bucket": self.bucket,
            "key": self.key,
            "uploaded": self.uploaded,
            "uploaded_bytes": self.uploaded_bytes,
            "layer_arn": self.layer_arn,
            "layer_version_arn": self.layer_version_arn,
            "version": self.version,
            "published": self.published,
            "grants": [
                {"principal": g.principal, "statement_id": g.statement_id, "added": g.added}
                for g in self.grants
            ],
            "functions": [
                {
                    "function": f.function,
                    "updated": f.updated,
                    "layers": list(f.layers_after),
                    "memory_mb": f.memory_mb,
                }
                for f in self.functions
            ],
            "warnings": list(self.warnings),
            "step": self.step,
            "error": self.error,
            "hint": self.hint,
        }


class RunSummary:
    """What a publish run of a layer or a function says about itself, from its uploads and regions.

    Mixed into the two frozen result classes, which hold `plan`, `uploads`, `regions` and `record_path`.
    """

    plan: Any
    uploads: tuple[UploadOutcome, ...]
    regions: tuple[Any, ...]
    record_path: Path | None

    @property
    def ok(self) -> bool:
        return all(region.ok for region in self.regions)

    @property
    def uploaded(self) -> bool:
        return any(upload.uploaded for upload in self.uploads)

    @property
    def uploaded_bytes(self) -> int:
        return sum(upload.uploaded_bytes for upload in self.uploads)

    def failure(self) -> PublishError | None:
        """The error to exit with: every failed region with its step, and the regions that succeeded."""
        failed = [region for region in self.regions if not region.ok]
        if not failed:
            return None
        failures = "; ".join(f"{r.region} (step {r.step}): {r.error}" for r in failed)
        done = ", ".join(region.region for region in self.regions if region.ok) or "none"
        hints = {r.hint for r in failed if r.hint}
        ran = len(self.regions)
        return PublishError(
            f"publish failed in {len(failed)} of {ran} regions: {failures}. Succeeded in: {done}",
            hint="; ".join([*sorted(hints), "run the same command again: finished steps are skipped"]),
        )

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def identity(self) -> dict[str, str]:
        """What a record is of, besides the zip's sha256: a record of something else is not merged."""
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """The publish record: the JSON result, plus where it came from, merged with earlier regions."""
        plan = self.plan
        return stamp_record(
            self.as_dict(),
            zip_path=plan.zip_path,
            record_path=plan.record_path,
            identity={"sha256": plan.digest.sha256_hex, **self.identity()},
            ran=plan.regions,
        )

    def common_fields(self) -> dict[str, Any]:
        """The `--json` fields a layer and a function publish share."""
        plan = self.plan
        return {
            "zip": str(plan.zip_path),
            "sha256": plan.digest.sha256_hex,
            "zipped_bytes": plan.digest.size,
            "lock_hash": plan.build.lock_hash,
            "direct": plan.direct,
            "bucket": plan.bucket_template,
            "key": plan.key,
            "uploaded": self.uploaded,
            "uploaded_bytes": self.uploaded_bytes,
            "regions": [region.as_dict() for region in self.regions],
            "ok": self.ok,
            "record": str(self.record_path) if self.record_path else None,
            "warnings": list(plan.warnings),
        }


@dataclass(frozen=True)
class PublishResult(RunSummary):
    plan: PublishPlan
    uploads: tuple[UploadOutcome, ...]
    regions: tuple[RegionResult, ...]
    record_path: Path | None = None

    def identity(self) -> dict[str, str]:
        return {"layer_name": self.plan.spec.name}

    def as_dict(self) -> dict[str, Any]:
        """The `publish --json` object (also the body of the publish record)."""
        plan = self.plan
        return self.common_fields() | {
            "layer_name": plan.spec.name,
            "recipe": plan.build.recipe,
            "compatible_runtimes": list(plan.spec.runtimes),
            "compatible_architectures": list(plan.spec.architectures),
            "sbom_key": plan.sbom_key,
            "upload_only": plan.upload_only,
        }


class StepFailed(Exception):
    def __init__(self, step: str, explanation: Explanation) -> None:
        super().__init__(explanation.message)
        self.step = step
        self.explanation = explanation


@dataclass
class _Draft:
    """A region's result while its steps run; frozen into a RegionResult at the end."""

    region: str
    values: dict[str, Any] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    functions: list[FunctionUpdate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def finish(self, **failure: Any) -> RegionResult:
        status = "failed" if failure else "ok"
        return RegionResult(
            region=self.region,
            status=status,
            grants=tuple(self.grants),
            functions=tuple(self.functions),
            warnings=tuple(self.warnings),
            **self.values,
            **failure,
        )


class UploadPlan(Protocol):
    """What the shared machinery (clients, one upload per bucket, the code to send) needs of a plan.

    Both `PublishPlan` (a layer) and a function's plan have these fields.
    """

    @property
    def zip_path(self) -> Path: ...
    @property
    def digest(self) -> ZipDigest: ...
    @property
    def regions(self) -> tuple[str, ...]: ...
    @property
    def key(self) -> str | None: ...
    @property
    def direct(self) -> bool: ...
    @property
    def transfer(self) -> TransferSettings: ...
    def bucket_for(self, region: str) -> str | None: ...


P = TypeVar("P", bound=UploadPlan)


class AwsClients:
    """Every client a run needs, made up front: a boto3 Session is not safe to share across threads."""

    def __init__(self, options: PublishOptions, plan: UploadPlan) -> None:
        session = boto3.session.Session(profile_name=options.profile)
        config = Config(
            retries={"mode": options.retry_mode, "total_max_attempts": options.max_attempts},
            user_agent_extra=f"layerforge/{__version__}",
            max_pool_connections=max(10, plan.transfer.max_concurrency + 2),
        )
        self.s3 = {
            region: session.client("s3", region_name=region, endpoint_url=options.endpoint_url, config=config)
            for region in s3_regions(plan)
        }
        self.lambda_ = {
            region: session.client(
                "lambda", region_name=region, endpoint_url=options.lambda_endpoint_url, config=config
            )
            for region in plan.regions
        }
        # Asked only to name the identity an AccessDenied refers to: one quick try, no retries.
        sts = session.client(
            "sts",
            region_name=plan.regions[0],
            endpoint_url=options.lambda_endpoint_url,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=5
            ),
        )
        self.identity = IdentityLookup(sts.get_caller_identity)
        self.redact = Redactor(_secrets(session))


def s3_regions(plan: UploadPlan) -> tuple[str, ...]:
    """The region whose S3 client uploads to each distinct bucket (the first region using it)."""
    if plan.direct:
        return ()
    first: dict[str | None, str] = {}
    for region in plan.regions:
        first.setdefault(plan.bucket_for(region), region)
    return tuple(first.values())


def _secrets(session: Any) -> list[str | None]:
    # Known secret values are removed from every message, whatever wording a server chose.
    credentials = session.get_credentials()
    if credentials is None:
        return []
    frozen = credentials.get_frozen_credentials()
    return [frozen.access_key, frozen.secret_key, frozen.token]


def make_clients(options: PublishOptions, plan: UploadPlan) -> AwsClients:
    try:
        return AwsClients(options, plan)
    except BotoCoreError as error:
        # A missing profile or a broken config file: the user's setup, before any request.
        raise InputError(
            f"cannot set up the AWS clients: {error}", hint="check --profile and ~/.aws/config"
        ) from error


class StepRunner(Generic[P]):
    """What every publish does, layer or function: guarded steps, one upload per bucket, the code."""

    def __init__(self, plan: P, clients: AwsClients, on_progress: ProgressCallback | None) -> None:
        self.plan = plan
        self.clients = clients
        self.on_progress = on_progress
        self.uploads: dict[str, UploadOutcome | StepFailed] = {}
        self.zip_bytes = plan.zip_path.read_bytes() if plan.direct else b""

    def upload_all(self, jobs: int) -> tuple[UploadOutcome, ...]:
        """Upload once per distinct bucket; a failure is kept for the regions that use the bucket."""
        self.uploads = dict(parallel(jobs, self.upload, s3_regions(self.plan)))
        return tuple(outcome for outcome in self.uploads.values() if isinstance(outcome, UploadOutcome))

    def guarded(self, step: str, call: Callable[[], T]) -> T:
        """Run one step; any failure becomes a StepFailed with a redacted, actionable message."""
        try:
            return call()
        except LayerforgeError as error:
            raise self._failed(step, Explanation(error.message, error.hint)) from error
        except Exception as error:
            # Broad on purpose: one region's surprise must not hide the other regions' results.
            raise self._failed(step, explain(error, self.clients.identity)) from error

    def _failed(self, step: str, explanation: Explanation) -> StepFailed:
        redact = self.clients.redact
        hint = redact(explanation.hint) if explanation.hint else None
        return StepFailed(step, Explanation(redact(explanation.message), hint))

    def upload(self, region: str) -> tuple[str, UploadOutcome | StepFailed]:
        bucket = self.plan.bucket_for(region)
        assert bucket is not None and self.plan.key is not None
        upload = functools.partial(
            ensure_object,
            self.clients.s3[region],
            self.plan.zip_path,
            bucket=bucket,
            key=self.plan.key,
            digest=self.plan.digest,
            settings=self.plan.transfer,
            on_progress=self.on_progress,
        )
        try:
            return bucket, self.guarded("upload", upload)
        except StepFailed as failure:
            return bucket, failure

    def region(self, region: str) -> Any:
        """Every step of one region; a failure ends up in the result, never raised."""
        raise NotImplementedError

    def content(self, region: str, values: dict[str, Any]) -> dict[str, Any]:
        """The code for Lambda in `region`: the S3 object, or the zip itself. Notes the upload in `values`."""
        if self.plan.direct:
            return {"ZipFile": self.zip_bytes}
        bucket = self.plan.bucket_for(region)
        assert bucket is not None
        values |= {"bucket": bucket, "key": self.plan.key}
        outcome = self.uploads[bucket]
        if isinstance(outcome, StepFailed):
            # A fresh exception per region: the regions run in threads of their own.
            raise StepFailed(outcome.step, outcome.explanation)
        values |= {"uploaded": outcome.uploaded, "uploaded_bytes": outcome.uploaded_bytes}
        return {"S3Bucket": outcome.bucket, "S3Key": outcome.key}


class _Run(StepRunner[PublishPlan]):
    """One layer publish: the shared steps, then per region publish, grant and point functions."""

    def upload(self, region: str) -> tuple[str, UploadOutcome | StepFailed]:
        """The zip, then its SBOM under the same prefix: a bucket holds both or the step failed."""
        bucket, outcome = super().upload(region)
        plan = self.plan
        if isinstance(outcome, StepFailed) or plan.sbom_path is None:
            return bucket, outcome
        assert plan.sbom_key is not None and plan.sbom_digest is not None
        sbom = functools.partial(
            ensure_object,
            self.clients.s3[region],
            plan.sbom_path,
            bucket=bucket,
            key=plan.sbom_key,
            digest=plan.sbom_digest,
            settings=plan.transfer,
            content_type="application/vnd.cyclonedx+json",
        )
        try:
            self.guarded("upload", sbom)
        except StepFailed as failure:
            return bucket, failure
        return bucket, outcome

    def region(self, region: str) -> RegionResult:
        draft = _Draft(region)
        try:
            self._region_steps(region, draft)
        except StepFailed as failure:
            return draft.finish(
                step=failure.step, error=failure.explanation.message, hint=failure.explanation.hint
            )
        return draft.finish()

    def _region_steps(self, region: str, draft: _Draft) -> None:
        client = self.clients.lambda_[region]
        spec, code_sha256 = self.plan.spec, self.plan.digest.sha256_b64
        content = self.content(region, draft.values)
        if self.plan.upload_only:
            return
        existing = self.guarded("publish", functools.partial(matching_version, client, spec, code_sha256))
        version: LayerVersion = existing or self.guarded(
            "publish", functools.partial(publish_version, client, spec, content, code_sha256)
        )
        draft.values |= {
            "layer_arn": version.layer_arn,
            "layer_version_arn": version.arn,
            "version": version.version,
            "published": existing is None,
        }
        for principal in self.plan.principals:
            grant = functools.partial(grant_use, client, spec.name, version.version, principal)
            draft.grants.append(self.guarded("grant", grant))
        for function in self.plan.functions_for(region):
            point = functools.partial(point_function, client, function, version.arn)
            update = self.guarded("function", point)
            draft.functions.append(update)
            draft.warnings.extend(_memory_warning(update, self.plan.build.peak_rss_bytes))


def _memory_warning(update: FunctionUpdate, peak_rss_bytes: int | None) -> list[str]:
    """A function set below what importing this layer needs is killed at init, naming no layer."""
    if peak_rss_bytes is None or update.memory_mb is None:
        return []
    wanted = recommended_memory_mb(peak_rss_bytes)
    if update.memory_mb >= wanted:
        return []
    return [
        f"function {update.function} has {update.memory_mb} MB of memory, below what this layer needs: "
        f"{memory_advice(peak_rss_bytes)}; raise it with `aws lambda update-function-configuration "
        f"--function-name {update.function} --memory-size {wanted}`"
    ]


def parallel(jobs: int, work: Callable[[str], T], items: Iterable[str]) -> list[T]:
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(
        max_workers=max(1, min(jobs, len(items))), thread_name_prefix="layerforge"
    ) as pool:
        return list(pool.map(work, items))


def publish(
    options: PublishOptions,
    on_progress: ProgressCallback | None = None,
    *,
    write: bool = True,
) -> PublishResult:
    """Upload and publish as `options` say; the result tells each region's outcome.

    Raises InputError or SizeLimitError before any network call when the inputs are wrong.
    A failure during the run does not raise: see `PublishResult.ok` and `.failure()`.
    """
    plan = make_plan(options, default_region=default_region(options))
    run = _Run(plan, make_clients(options, plan), on_progress)
    return run_all(run, options.jobs, PublishResult, write=write)


S = TypeVar("S", bound=RunSummary)


def run_all(run: StepRunner[Any], jobs: int, summary: Callable[..., S], *, write: bool) -> S:
    """The uploads, then every region, in `jobs` threads; the result, and its record when `write`."""
    uploads = run.upload_all(jobs)
    regions = tuple(parallel(jobs, run.region, run.plan.regions))
    result = summary(run.plan, uploads, regions, record_path=run.plan.record_path if write else None)
    if write:
        save_record(run.plan.record_path, result.record())
    return result


def save_record(path: Path, payload: dict[str, Any]) -> None:
    try:
        write_record(path, payload)
    except OSError as error:
        raise PublishError(
            f"could not write the publish record {path}: {error}",
            hint="pass --record PATH in a writable folder; publishing again reuses what exists",
        ) from error


def default_region(options: PublishOptions) -> str | None:
    if options.regions:
        return None
    try:
        return boto3.session.Session(profile_name=options.profile).region_name  # type: ignore[no-any-return]
    except BotoCoreError as error:
        raise InputError(f"{error}", hint="check --profile and the AWS config file") from error


def stamp_record(
    payload: dict[str, Any],
    *,
    zip_path: Path,
    record_path: Path,
    identity: dict[str, str],
    ran: Iterable[str],
) -> dict[str, Any]:
    """`payload` as a record: where it came from, plus the regions of an earlier run of the same
    `identity` (the same zip under the same name) that this run did not touch."""
    payload = payload | {
        "schema_version": RECORD_SCHEMA_VERSION,
        "kind": "publish",
        "layerforge_version": __version__,
        "zip": zip_path.name,
    }
    payload.pop("record", None)
    earlier = _earlier_regions(record_path, identity, set(ran))
    payload["regions"] = sorted(earlier + payload["regions"], key=lambda entry: entry["region"])
    return payload


def _earlier_regions(path: Path, identity: dict[str, str], ran: set[str]) -> list[dict[str, Any]]:
    """Regions an earlier run published this same zip to, and this run did not touch."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    same = isinstance(earlier, dict) and all(earlier.get(key) == value for key, value in identity.items())
    if not same:
        return []
    return [
        entry
        for entry in earlier.get("regions", [])
        if isinstance(entry, dict) and entry.get("region") not in ran
    ]


def write_record(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically: a reader sees the old record or the new one, never half of one."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
