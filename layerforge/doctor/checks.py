"""`layerforge doctor`: find what will break a layer on this machine, in this repository, with these
credentials, before a build or a publish does, and say how to fix each thing in plain words.

Every check returns findings; none raises for what it finds. A finding has a severity (ok, info, warning,
error), a one-line summary and, unless it is ok, the fix. The command exits 1 when any finding is an error.

    host        the machine against the target (OS, architecture, Python)
    interpreter a CPython of the target's version and machine, for the import check
    pip, uv     the resolver layerforge runs, and uv (which can install interpreters)
    docker      an engine, for targets this machine cannot run
    aws         credentials and who they are (STS GetCallerIdentity)
    s3, lambda  with --bucket: a probe object put, read back and deleted; Lambda's layer calls
    line-endings, gitattributes, autocrlf   CRLF in scripts, lock files and recipes
    dist        Windows or macOS binaries, and Windows-made zips, among the built artifacts
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from packaging.version import InvalidVersion, Version

from ..binaries.binfmt import iter_files, sniff, sniff_bytes
from ..errors import InputError
from ..runners.docker import IMAGE_ARCHITECTURES, DockerClient, DockerError, docker_from_env, engine_problem
from ..runners.interpreters import Interpreter, find_interpreter, install_hint
from ..target import Target, host_machine, machine_name

Severity = Literal["ok", "info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("ok", "info", "warning", "error")

# pyproject pins pip>=25.1: older pip mis-applies Requires-Python with --python-version.
MIN_PIP = Version("25.1")
_TOOL_TIMEOUT = 10.0
_AWS_CONNECT_TIMEOUT = 5
_AWS_READ_TIMEOUT = 15
PROBE_PREFIX = "layerforge-doctor/"
PROBE_BODY = b"layerforge doctor probe\n"
_SHOWN = 5  # paths named in one finding; the JSON has them all
_MAX_BYTES_READ = 4 * 1024 * 1024  # a line-ending check reads no more of one file
_MAX_WALK_FILES = 50_000
_SKIP_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".nox", "dist", "build"}
)


@dataclass(frozen=True)
class Finding:
    """One thing the doctor saw. `fix` is empty only when there is nothing to do."""

    check: str
    severity: Severity
    summary: str
    fix: str = ""
    paths: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "severity": self.severity,
            "summary": self.summary,
            "fix": self.fix or None,
            "paths": list(self.paths),
        }


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity == severity)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": not self.errors,
            "exit_code": self.exit_code,
            "counts": {severity: self.count(severity) for severity in SEVERITIES},
            "findings": [finding.as_dict() for finding in self.findings],
        }


@dataclass(frozen=True)
class DoctorOptions:
    target: Target = field(default_factory=Target)
    repo: Path = Path()
    dist: Path | None = None  # default: REPO/dist
    python: Path | None = None
    bucket: str | None = None
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None  # every AWS call (STS, S3, Lambda, IAM): a local or compatible server


Finder = Callable[..., Interpreter | None]


def diagnose(
    options: DoctorOptions,
    *,
    docker_client_factory: Callable[[], DockerClient] = docker_from_env,
    find: Finder = find_interpreter,
) -> DoctorReport:
    """Run every check; never raises for what it finds."""
    target = options.target
    findings = list(check_host(target))
    interpreter_finding, have_local = check_interpreter(target, options.python, find)
    findings.append(interpreter_finding)
    findings += check_tools()
    findings.append(check_docker(target, docker_client_factory, have_local=have_local))
    findings += check_aws(options)
    findings += check_line_endings(options.repo)
    findings += check_dist(options.dist if options.dist is not None else options.repo / "dist", target)
    return DoctorReport(tuple(findings))


# ---------------------------------------------------------------------------------------------------
# The machine


def check_host(
    target: Target,
    *,
    system: str | None = None,
    machine: str | None = None,
    python: tuple[int, int] | None = None,
) -> list[Finding]:
    """The host against the target. Building works anywhere; only the import check needs a match."""
    system = system or platform.system()
    machine = machine_name(machine) if machine else host_machine()
    python = python or (sys.version_info[0], sys.version_info[1])
    host = f"{system} on {machine} with Python {python[0]}.{python[1]}"
    glibc = ".".join(map(str, target.glibc))
    lambda_side = f"{target.runtime} on {target.machine} ({target.facts.os}, glibc {glibc})"
    if system != "Linux":
        also = " (or run layerforge inside WSL)" if system == "Windows" else ""
        return [
            Finding(
                "host",
                "info",
                f"this machine runs {host}; Lambda runs {lambda_side}",
                f"nothing to do for building: layerforge always picks Linux (manylinux) wheels for the "
                f"target, never {system} ones. The import check needs a Linux interpreter: start Docker "
                f"and layerforge runs it in the Lambda image{also}",
            )
        ]
    if machine != target.machine:
        return [
            Finding(
                "host",
                "info",
                f"this machine runs {host}; the target is {lambda_side}",
                f"nothing to do for building: layerforge picks {target.machine} wheels on any machine. "
                f"To import-check the layer it needs Docker (with {target.machine} emulation) or an "
                f"{target.machine} machine"
                + (" such as an AWS Graviton instance" if target.arch == "arm64" else ""),
            )
        ]
    return [Finding("host", "ok", f"this machine runs {host}; the target is {lambda_side}")]


def check_interpreter(target: Target, python: Path | None, find: Finder) -> tuple[Finding, bool]:
    """(the finding, whether a local interpreter can verify the target)."""
    try:
        found = find(target, explicit=python)
    except InputError as error:
        return Finding("interpreter", "error", error.message, error.hint or ""), False
    if found is not None:
        return (
            Finding(
                "interpreter",
                "ok",
                f"layers for {target.label} are import-checked with {found.describe()}",
            ),
            True,
        )
    return (
        Finding(
            "interpreter",
            "warning",
            f"no CPython {target.python_dotted} for {target.machine} on this machine, so builds cannot "
            "import-check the layer here",
            f"{install_hint(target)}. Without one, builds verify in Docker when an engine answers, "
            "else only the static audit runs (and the build says so)",
        ),
        False,
    )


def check_tools(
    *, pip_version: Callable[[], str] | None = None, which: Callable[[str], str | None] = shutil.which
) -> list[Finding]:
    return [_check_pip(pip_version or (lambda: importlib.metadata.version("pip"))), _check_uv(which)]


def _check_pip(pip_version: Callable[[], str]) -> Finding:
    upgrade = f"`{sys.executable} -m pip install --upgrade 'pip>={MIN_PIP}'`"
    try:
        text = pip_version()
    except importlib.metadata.PackageNotFoundError:
        return Finding(
            "pip",
            "error",
            f"pip is not installed in layerforge's environment ({sys.executable}); it resolves every lock",
            f"`{sys.executable} -m ensurepip --upgrade`, then {upgrade}",
        )
    try:
        version = Version(text)
    except InvalidVersion:
        return Finding("pip", "warning", f"pip reports an unreadable version {text!r}", upgrade)
    if version < MIN_PIP:
        return Finding(
            "pip",
            "warning",
            f"pip {version} is older than {MIN_PIP}: it mis-applies Requires-Python when resolving for "
            "another Python version, so a lock may pick releases the runtime cannot install",
            upgrade,
        )
    return Finding("pip", "ok", f"pip {version} resolves locks (in {sys.executable})")


def _check_uv(which: Callable[[str], str | None]) -> Finding:
    path = which("uv")
    if path is None:
        return Finding(
            "uv",
            "info",
            "uv is not installed (optional)",
            "nothing needed; uv is one quick way to get an interpreter for the import check "
            "(`uv python install 3.11`): https://docs.astral.sh/uv/",
        )
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False
        )
        version = done.stdout.strip() or done.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        return Finding("uv", "warning", f"uv at {path} does not run: {error}", "reinstall uv, or remove it")
    return Finding("uv", "ok", f"{version or 'uv'} at {path}; its managed interpreters are searched too")


def check_docker(target: Target, factory: Callable[[], DockerClient], *, have_local: bool) -> Finding:
    try:
        client = factory()
        facts = client.version()
    except DockerError as error:
        return _no_docker(target, error.message, have_local)
    except Exception as error:  # the SDK raises requests' and socket errors as well as its own
        return _no_docker(target, f"no Docker engine answered: {engine_problem(error)}", have_local)
    version = facts.get("Version", "?")
    engine_arch = str(facts.get("Arch", ""))
    summary = f"Docker Engine {version} answers ({facts.get('Os', '?')}/{engine_arch or '?'})"
    if engine_arch and engine_arch != IMAGE_ARCHITECTURES[target.arch]:
        return Finding(
            "docker",
            "info",
            summary + f"; the {target.arch} Lambda image runs on it under emulation, more slowly",
            "if verification fails with 'exec format error', install the emulator once: `docker run "
            f"--privileged --rm tonistiigi/binfmt --install {IMAGE_ARCHITECTURES[target.arch]}`",
        )
    return Finding("docker", "ok", summary)


def _no_docker(target: Target, problem: str, have_local: bool) -> Finding:
    if have_local:
        return Finding(
            "docker",
            "info",
            problem,
            "nothing needed now: builds verify with the local interpreter. Docker is needed for targets "
            "this machine cannot run (another architecture or Python) and to build packages that have "
            "no wheel from source",
        )
    return Finding(
        "docker",
        "warning",
        f"{problem}; with no local interpreter either, builds for {target.label} check nothing beyond "
        "the static audit",
        "start Docker (Docker Desktop, or `sudo systemctl start docker` on Linux; check DOCKER_HOST if "
        f"the engine is elsewhere), or {install_hint(target)}",
    )


# ---------------------------------------------------------------------------------------------------
# AWS


def _aws_config(attempts: int = 2) -> Any:
    from botocore.config import Config  # noqa: PLC0415 - boto3 costs 0.13 s to import; see check_aws

    return Config(
        connect_timeout=_AWS_CONNECT_TIMEOUT,
        read_timeout=_AWS_READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )


@dataclass(frozen=True)
class _Aws:
    """A session and what is needed to talk about its identity without leaking its secrets."""

    session: Any
    region: str
    endpoint_url: str | None
    redact: Callable[[str], str]
    arn: str = ""
    account: str = ""

    def client(self, service: str, *, region: str | None = None, attempts: int = 2) -> Any:
        return self.session.client(
            service,
            region_name=region or self.region,
            endpoint_url=self.endpoint_url,
            config=_aws_config(attempts),
        )

    @property
    def who(self) -> str:
        return self.arn or "the current credentials"


def check_aws(options: DoctorOptions) -> list[Finding]:
    """Credentials and who they are; with --bucket, what they may do with S3 and Lambda layers."""
    import boto3  # noqa: PLC0415 - only the doctor and publish need boto3: keep `layerforge build` light
    from botocore.exceptions import BotoCoreError, ProfileNotFound  # noqa: PLC0415

    needed: Severity = "error" if options.bucket else "warning"
    try:
        session = boto3.session.Session(profile_name=options.profile, region_name=options.region)
        credentials = session.get_credentials()
    except ProfileNotFound:
        return [
            Finding(
                "aws",
                "error",
                f"the AWS profile {options.profile!r} does not exist in ~/.aws/config or ~/.aws/credentials",
                "list the profiles with `aws configure list-profiles`; create one with "
                "`aws configure --profile NAME` (access keys) or `aws configure sso` (single sign-on)",
            )
        ]
    except BotoCoreError as error:  # an SSO cache that cannot be read, a broken config file
        return [Finding("aws", needed, f"the AWS credentials could not be loaded: {error}", _LOGIN_FIX)]
    if credentials is None:
        return [_no_credentials(needed)]
    from ..aws.explain import Redactor  # noqa: PLC0415

    frozen = credentials.get_frozen_credentials()
    aws = _Aws(
        session=session,
        region=session.region_name or "us-east-1",
        endpoint_url=options.endpoint_url,
        redact=Redactor([frozen.access_key, frozen.secret_key, frozen.token]),
    )
    findings: list[Finding] = []
    if not session.region_name:
        findings.append(
            Finding(
                "aws",
                "warning",
                "no AWS region is set (asked us-east-1 for now)",
                "pass --region, set AWS_REGION, or run `aws configure set region REGION`: publishing needs "
                "the region of your bucket",
            )
        )
    identity, aws = _whoami(aws, getattr(credentials, "method", "") or "unknown", needed)
    findings.append(identity)
    if options.bucket and identity.severity == "ok":
        bucket = options.bucket.replace("{region}", aws.region)
        findings += check_bucket(aws, bucket)
        findings += check_lambda(aws)
    return findings


_LOGIN_FIX = (
    "run `aws configure` (access keys) or `aws configure sso` then `aws sso login`, or set AWS_PROFILE to "
    "a profile you have; on CI, give the job a role (GitHub Actions: aws-actions/configure-aws-credentials)"
)


def _no_credentials(severity: Severity) -> Finding:
    return Finding(
        "aws",
        severity,
        "no AWS credentials found (looked in AWS_* variables, ~/.aws/credentials, ~/.aws/config, SSO "
        "and the instance or container role): `layerforge publish` needs them; building does not",
        _LOGIN_FIX,
    )


def _whoami(aws: _Aws, method: str, needed: Severity) -> tuple[Finding, _Aws]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # noqa: PLC0415

    try:
        answer = aws.client("sts").get_caller_identity()
    except NoCredentialsError:
        return _no_credentials(needed), aws
    except ClientError as error:
        return _refused(aws, error), aws
    except BotoCoreError as error:
        where = aws.endpoint_url or f"the {aws.region} STS endpoint"
        return (
            Finding(
                "aws",
                "error",
                f"could not ask AWS who these credentials are: {aws.redact(str(error))}",
                f"check the network and any proxy (HTTPS_PROXY) between here and {where}"
                + (", and --endpoint-url" if aws.endpoint_url else ""),
            ),
            aws,
        )
    arn, account = str(answer.get("Arn", "")), str(answer.get("Account", ""))
    aws = _Aws(aws.session, aws.region, aws.endpoint_url, aws.redact, arn, account)
    return Finding("aws", "ok", f"signed in as {arn} (account {account}; credentials from {method})"), aws


def _refused(aws: _Aws, error: Any) -> Finding:
    from ..aws.explain import error_code  # noqa: PLC0415

    code = error_code(error)
    said = aws.redact(str(error))
    if code in {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}:
        return Finding(
            "aws",
            "error",
            f"the AWS credentials have expired ({code})",
            "for single sign-on run `aws sso login` (with --profile NAME if you use one); temporary keys "
            "last 1 to 12 hours: get new ones. If the clock is wrong, fix it: AWS refuses requests "
            "signed more than 5 minutes off",
        )
    if code in {"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"}:
        return Finding(
            "aws",
            "error",
            f"AWS refused the credentials ({code}): the access key does not exist, was deleted, or its "
            "secret does not match",
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile in ~/.aws/credentials "
            "(`aws configure list` shows which are in use); create a new key in IAM if it was deleted",
        )
    return Finding("aws", "error", f"STS GetCallerIdentity failed: {said}", _LOGIN_FIX)


# --- S3 --------------------------------------------------------------------------------------------


def check_bucket(aws: _Aws, bucket: str) -> list[Finding]:
    """Put a probe object, read it back, ask for one that is not there, delete the probe."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    s3 = aws.client("s3")
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}.probe"
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "PutObject",
            lambda: s3.put_object(Bucket=bucket, Key=key, Body=PROBE_BODY, ChecksumAlgorithm="SHA256"),
        ),
        ("GetObject", lambda: _read_back(s3, bucket, key)),
        ("HeadObject", lambda: _head_missing(s3, bucket, key)),
    ]
    findings: list[Finding] = []
    for operation, call in steps:
        try:
            call()
        except (ClientError, BotoCoreError) as error:
            findings.append(_s3_failure(aws, bucket, operation, error))
            if operation == "PutObject":
                return findings  # nothing was written: nothing to read back or delete
        except _Mismatch as error:
            findings.append(
                Finding(
                    "s3", "error", str(error), "the store at --endpoint-url changes what it stores: check it"
                )
            )
    findings += _delete_probe(aws, s3, bucket, key)
    if not any(f.severity == "error" for f in findings):
        findings.insert(
            0,
            Finding(
                "s3",
                "ok",
                f"{aws.who} can put objects into s3://{bucket}, read them back, and see that a missing "
                "key is missing (a probe object was written, read and deleted)",
            ),
        )
    return findings


def _read_back(s3: Any, bucket: str, key: str) -> None:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if body != PROBE_BODY:
        raise _Mismatch(
            f"s3://{bucket}/{key} read back {len(body)} bytes that differ from the {len(PROBE_BODY)} written"
        )


class _Mismatch(Exception):
    pass


def _head_missing(s3: Any, bucket: str, key: str) -> None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    from ..aws.explain import is_not_found  # noqa: PLC0415

    try:
        s3.head_object(Bucket=bucket, Key=key + ".missing")
    except ClientError as error:
        if not is_not_found(error):
            raise


def _s3_failure(aws: _Aws, bucket: str, operation: str, error: Any) -> Finding:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    from ..aws.explain import error_code, is_access_denied  # noqa: PLC0415

    said = aws.redact(str(error))
    if not isinstance(error, ClientError):
        return Finding(
            "s3",
            "error",
            f"{operation} on s3://{bucket} failed: {said}",
            "check the network and --endpoint-url",
        )
    code = error_code(error)
    if code == "NoSuchBucket":
        return Finding(
            "s3",
            "error",
            f"the bucket {bucket} does not exist",
            f"create it in the region you publish to: `aws s3 mb s3://{bucket} --region {aws.region}`, or "
            "correct --bucket",
        )
    if code in {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}:
        return Finding(
            "s3",
            "error",
            f"s3://{bucket} is in another region than {aws.region}",
            f"pass --region with the bucket's region (`aws s3api get-bucket-location --bucket {bucket}`); "
            "Lambda reads a layer's zip only from a bucket in the layer's own region",
        )
    if is_access_denied(error):
        return _s3_denied(aws, bucket, operation)
    return Finding(
        "s3",
        "error",
        f"{operation} on s3://{bucket} failed: {said}",
        "try again; if it persists, check the bucket's settings in the S3 console",
    )


_PROPAGATION = "IAM changes take up to 30 seconds to apply: wait, then run `layerforge doctor --bucket` again"


def _s3_denied(aws: _Aws, bucket: str, operation: str) -> Finding:
    objects, whole = f"arn:aws:s3:::{bucket}/*", f"arn:aws:s3:::{bucket}"
    if operation == "HeadObject":
        return Finding(
            "s3",
            "error",
            f"{aws.who} lacks s3:ListBucket on s3://{bucket}: asked for a key that is not there, S3 answered "
            "403 Forbidden instead of 404 Not Found, so `layerforge publish` cannot tell a new zip from one "
            'already uploaded and stops ("An error occurred (403) when calling the HeadObject operation")',
            f"grant s3:ListBucket on the bucket itself, {whole} (not {objects}), in the identity's IAM "
            f"policy or the bucket policy. {_PROPAGATION}",
        )
    permission = "s3:PutObject" if operation == "PutObject" else "s3:GetObject"
    why = (
        "layerforge publish uploads each layer zip there"
        if permission == "s3:PutObject"
        else "Lambda reads the zip from S3 with your credentials when it publishes a layer version, and "
        "layerforge reads objects back to skip re-uploads"
    )
    return Finding(
        "s3",
        "error",
        f"access denied: {aws.who} lacks {permission} on s3://{bucket} (AWS answered 403 to "
        f"{operation}); {why}",
        f'add to the identity\'s IAM policy (or the bucket policy): {{"Effect": "Allow", "Action": '
        f'["s3:PutObject", "s3:GetObject"], "Resource": "{objects}"}} and {{"Effect": "Allow", "Action": '
        f'"s3:ListBucket", "Resource": "{whole}"}}. If the bucket encrypts with a KMS key, the identity '
        f"also needs kms:GenerateDataKey and kms:Decrypt on that key. {_PROPAGATION}",
    )


def _delete_probe(aws: _Aws, s3: Any, bucket: str, key: str) -> list[Finding]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as error:
        return [
            Finding(
                "s3",
                "info",
                f"the probe object s3://{bucket}/{key} could not be deleted ({aws.redact(str(error))}); "
                "layerforge itself never deletes, so s3:DeleteObject is not needed",
                f"delete it when convenient: `aws s3 rm s3://{bucket}/{key}` (it is {len(PROBE_BODY)} bytes)",
            )
        ]
    return []


# --- Lambda ----------------------------------------------------------------------------------------


PUBLISH_ACTIONS = ("lambda:PublishLayerVersion", "lambda:ListLayerVersions", "lambda:GetLayerVersion")


def check_lambda(aws: _Aws) -> list[Finding]:
    """A dry check of the layer calls publish makes: list versions, then ask IAM about publishing."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from ..aws.explain import is_access_denied, is_not_found  # noqa: PLC0415

    layers = f"arn:aws:lambda:{aws.region}:{aws.account or 'ACCOUNT'}:layer:*"
    policy = f'{{"Effect": "Allow", "Action": {list(PUBLISH_ACTIONS)}, "Resource": "{layers}"}}'.replace(
        "'", '"'
    )
    try:
        aws.client("lambda").list_layer_versions(LayerName="layerforge-doctor-probe", MaxItems=1)
    except ClientError as error:
        if is_access_denied(error):
            return [
                Finding(
                    "lambda",
                    "error",
                    f"access denied: {aws.who} lacks lambda:ListLayerVersions in {aws.region}; layerforge "
                    "publish lists a layer's versions to reuse one with the same content",
                    f"add to the identity's IAM policy: {policy}. {_PROPAGATION}",
                )
            ]
        if not is_not_found(error):
            return [
                Finding(
                    "lambda",
                    "error",
                    f"Lambda ListLayerVersions failed: {aws.redact(str(error))}",
                    "try again later",
                )
            ]
    except BotoCoreError as error:
        return [
            Finding(
                "lambda",
                "error",
                f"could not reach Lambda in {aws.region}: {aws.redact(str(error))}",
                "check the network and --endpoint-url",
            )
        ]
    listed = Finding("lambda", "ok", f"{aws.who} can list layer versions in {aws.region}")
    return [listed, _publish_permission(aws, layers, policy)]


def _publish_permission(aws: _Aws, layers: str, policy: str) -> Finding:
    """Publishing cannot be tried without publishing: ask IAM's policy simulator instead, when allowed."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    source = _policy_source(aws.arn)
    unknown_fix = (
        "nothing to do if publishing works. If `layerforge publish` fails with AccessDenied on "
        f"PublishLayerVersion, add to the identity's IAM policy: {policy}"
    )
    if source is None:
        return Finding(
            "lambda",
            "info",
            f"lambda:PublishLayerVersion was not checked: the policy simulator cannot evaluate {aws.who}",
            unknown_fix,
        )
    try:
        answer = aws.client("iam", region="us-east-1", attempts=1).simulate_principal_policy(
            PolicySourceArn=source, ActionNames=["lambda:PublishLayerVersion"], ResourceArns=[layers]
        )
        decision = str(answer["EvaluationResults"][0]["EvalDecision"])
    except (ClientError, BotoCoreError, KeyError, IndexError) as error:
        why = aws.redact(str(error)).splitlines()[0][:200]
        return Finding(
            "lambda",
            "info",
            f"lambda:PublishLayerVersion could not be checked without publishing (IAM's policy simulator "
            f"answered: {why})",
            unknown_fix,
        )
    if decision == "allowed":
        return Finding(
            "lambda", "ok", f"{aws.who} may publish layer versions in {aws.region} (IAM policy simulator)"
        )
    return Finding(
        "lambda",
        "error",
        f"access denied: {aws.who} lacks lambda:PublishLayerVersion in {aws.region} (IAM policy simulator: "
        f"{decision})",
        f"add to the identity's IAM policy: {policy}. {_PROPAGATION}",
    )


def _policy_source(arn: str) -> str | None:
    """The ARN the IAM simulator takes: a user as is, an assumed role as its role; else None."""
    user = re.fullmatch(r"arn:(aws[\w-]*):iam::(\d{12}):user/.+", arn)
    if user:
        return arn
    role = re.fullmatch(r"arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/.+", arn)
    if role:
        return f"arn:{role.group(1)}:iam::{role.group(2)}:role/{role.group(3)}"
    return None


# ---------------------------------------------------------------------------------------------------
# Line endings


LineKind = Literal["script", "lock", "recipe"]
_SCRIPT_SUFFIXES = frozenset({".sh", ".bash", ".zsh", ".ksh", ".bats"})
_LOCK_NAMES = frozenset({"Pipfile.lock", "poetry.lock", "uv.lock", "pdm.lock"})
_LOCK_PATTERN = re.compile(r"(.*\.lock(\.json|\.hcl)?|(requirements|constraints)[\w.-]*\.(txt|in))$")


def line_kind(relative: str, path: Path) -> LineKind | None:
    """Which files CRLF breaks or disturbs: shell and shebang scripts, lock files, recipes and TOML."""
    name = relative.rsplit("/", 1)[-1]
    suffix = Path(name).suffix.lower()
    if suffix in _SCRIPT_SUFFIXES:
        return "script"
    if name in _LOCK_NAMES or _LOCK_PATTERN.fullmatch(name):
        return "lock"
    if suffix == ".toml":
        return "recipe"
    if not suffix and _starts_with_shebang(path):
        return "script"
    return None


def _starts_with_shebang(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(2) == b"#!"
    except OSError:
        return False


def has_crlf(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return b"\r\n" in stream.read(_MAX_BYTES_READ)
    except OSError:
        return False


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, timeout=_TOOL_TIMEOUT * 3, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "surrogateescape") if done.returncode == 0 else None


def _repository_files(repo: Path) -> tuple[Path, list[str], bool]:
    """(root, relative posix paths, whether root is a git work tree). Git's list skips ignored files."""
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top and top.strip():
        root = Path(top.strip())
        listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard") or ""
        return root, sorted({name for name in listed.split("\0") if name}), True
    return repo, list(_walk(repo)), False


def _walk(root: Path) -> Iterator[str]:
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            count += 1
            if count > _MAX_WALK_FILES:
                return
            yield (Path(folder) / name).relative_to(root).as_posix()


_KIND_TEXT: dict[LineKind, tuple[Severity, str, str]] = {
    "script": (
        "error",
        "script",
        "Linux reads the \\r as part of each line, so they fail in CI, in containers and on Lambda with "
        "`/bin/bash^M: bad interpreter` or `$'\\r': command not found`",
    ),
    "lock": (
        "warning",
        "lock file",
        "layerforge reads them fine, but their bytes differ between Windows and Linux checkouts: a cache "
        "or CI step keyed on the file's hash misses, and every line shows as changed in a diff",
    ),
    "recipe": (
        "warning",
        "recipe or TOML file",
        "layerforge reads them fine, but every line shows as changed in a diff with an LF copy, and tools "
        "that hash the file disagree across machines",
    ),
}


def gitattributes_pattern(relative: str) -> str:
    """The .gitattributes pattern that covers a file like this one: by suffix, or by its own name."""
    name = relative.rsplit("/", 1)[-1]
    for compound in (".lock.json", ".lock.hcl"):
        if name.endswith(compound):
            return f"*{compound}"
    if re.fullmatch(r"(requirements|constraints)[\w.-]*\.(txt|in)", name):
        return f"{name.split('.')[0].split('-')[0]}*.{name.rsplit('.', 1)[1]}"
    suffix = Path(name).suffix
    return f"*{suffix}" if suffix else f"/{relative}"


def check_line_endings(repo: Path) -> list[Finding]:
    """CRLF in scripts, lock files and recipes; a missing .gitattributes; Git converting on checkout."""
    if not repo.is_dir():
        return [
            Finding(
                "line-endings", "error", f"{repo} is not a folder", "pass --repo with a repository folder"
            )
        ]
    root, files, is_git = _repository_files(repo.resolve())
    crlf: dict[LineKind, list[str]] = {"script": [], "lock": [], "recipe": []}
    checked = 0
    for relative in files:
        path = root / relative
        kind = line_kind(relative, path)
        if kind is None or not path.is_file():
            continue
        checked += 1
        if has_crlf(path):
            crlf[kind].append(relative)
    findings = [_crlf_finding(kind, paths) for kind, paths in crlf.items() if paths]
    if not findings:
        findings.append(
            Finding(
                "line-endings",
                "ok",
                f"no CRLF line endings in {checked} scripts, lock files and recipes under {root}",
            )
        )
    if is_git:
        findings += _git_settings(root)
    else:
        findings.append(
            Finding(
                "gitattributes",
                "info",
                f"{root} is not a Git repository: its files were checked as they are",
                "nothing to do; in a repository, a .gitattributes keeps line endings alike on every machine",
            )
        )
    return findings


def _crlf_finding(kind: LineKind, paths: list[str]) -> Finding:
    severity, noun, why = _KIND_TEXT[kind]
    patterns = list(dict.fromkeys(gitattributes_pattern(path) for path in paths))[:3]
    attributes = ", ".join(f"`{pattern} text eol=lf`" for pattern in patterns)
    shown = ", ".join(paths[:_SHOWN]) + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")
    plural = "s" if len(paths) > 1 else ""
    example = paths[0]
    return Finding(
        "line-endings",
        severity,
        f"{len(paths)} {noun}{plural} with Windows line endings (CRLF): {shown}. {why}",
        f"convert to LF: `sed -i 's/\\r$//' {example}` (or `dos2unix {example}`, or set your editor's line "
        f"endings to LF), add {attributes} to .gitattributes so Git keeps them LF on every machine, then "
        '`git add --renormalize . && git commit -m "Normalize line endings"`',
        tuple(paths),
    )


GITATTRIBUTES_TEMPLATE = (
    "* text=auto eol=lf\n*.sh text eol=lf\n*.ps1 text eol=crlf\n*.zip binary\n*.whl binary\n"
)


def _git_settings(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    if (root / ".gitattributes").is_file():
        findings.append(
            Finding("gitattributes", "ok", f"{root / '.gitattributes'} sets the repository's line endings")
        )
    else:
        findings.append(
            Finding(
                "gitattributes",
                "warning",
                f"the repository at {root} has no .gitattributes, so each clone's line endings depend on "
                "that machine's Git settings (on Windows, Git usually turns LF into CRLF when it checks "
                "files out, and shell scripts then break on Linux)",
                "create .gitattributes at the top of the repository with these lines: "
                + " | ".join(GITATTRIBUTES_TEMPLATE.strip().splitlines())
                + " ; then `git add .gitattributes && git add --renormalize . && git commit -m "
                '"Normalize line endings"`',
            )
        )
    autocrlf = (_git(root, "config", "--get", "core.autocrlf") or "").strip().lower()
    if autocrlf == "true":
        findings.append(
            Finding(
                "autocrlf",
                "warning",
                "Git on this machine turns LF into CRLF when it checks files out (core.autocrlf=true)",
                "`git config --global core.autocrlf input` (Git then converts only CRLF to LF on commit); "
                "a .gitattributes with `* text=auto eol=lf` overrides it for everyone",
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------------
# Built artifacts


_EXTENSIONS_TO_SNIFF = frozenset({".so", ".pyd", ".dll", ".dylib", ".exe", ""})
_WINDOWS_SUFFIXES = frozenset({".pyd", ".dll", ".exe"})
_MAX_PE_OFFSET = 1 << 16


def _worth_sniffing(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return Path(base).suffix.lower() in _EXTENSIONS_TO_SNIFF or ".so." in base


def _foreign_kind(name: str, head_kind: str) -> str | None:
    """'windows', 'macos' or None, by magic bytes first and by the names audit.py also trusts."""
    suffix = Path(name).suffix.lower()
    if head_kind == "pe" or suffix in _WINDOWS_SUFFIXES:
        return "windows"
    if head_kind == "macho" or suffix == ".dylib":
        return "macos"
    return None


def _sniff_stream(stream: IO[bytes]) -> str:
    """binfmt.sniff for a stream (a zip member): PE needs a look at the offset its header points to."""
    head = stream.read(64)
    if head.startswith(b"MZ") and len(head) >= 0x40:
        offset = int.from_bytes(head[0x3C:0x40], "little")
        if 0x40 <= offset < _MAX_PE_OFFSET:
            rest = stream.read(offset + 4 - len(head))
            data = head + rest
            return "pe" if data[offset : offset + 4] == b"PE\0\0" else "other"
        return "other"
    return sniff_bytes(head).kind


@dataclass
class _Foreign:
    windows: list[str] = field(default_factory=list)
    macos: list[str] = field(default_factory=list)
    extension_modules: int = 0  # .pyd/.so among them: imports that fail, not dead weight

    def add(self, name: str, kind: str) -> None:
        (self.windows if kind == "windows" else self.macos).append(name)
        if name.lower().endswith((".pyd", ".so")):
            self.extension_modules += 1


def check_dist(dist: Path, target: Target) -> list[Finding]:
    """Zips and folders in dist/ that hold Windows or macOS binaries, or were zipped by Windows tools."""
    if not dist.is_dir():
        return []
    findings: list[Finding] = []
    artifacts = 0
    for item in sorted(dist.iterdir()):
        if item.name.startswith("."):
            continue  # a build's staging folder
        if item.suffix.lower() == ".zip" and item.is_file():
            artifacts += 1
            findings += _check_zip(item, target)
        elif item.is_dir():
            artifacts += 1
            findings += _report_foreign(item, _scan_folder(item), target)
    if not findings and artifacts:
        findings.append(
            Finding("dist", "ok", f"{artifacts} artifact(s) in {dist} hold no Windows or macOS binaries")
        )
    return findings


def _scan_folder(folder: Path) -> _Foreign:
    found = _Foreign()
    for relative, path in iter_files(folder):
        if _worth_sniffing(relative):
            kind = _foreign_kind(relative, sniff(path).kind)
            if kind:
                found.add(relative, kind)
    return found


def _check_zip(path: Path, target: Target) -> list[Finding]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            found = _Foreign()
            for info in archive.infolist():
                if info.is_dir() or not _worth_sniffing(info.filename):
                    continue
                with archive.open(info) as stream:
                    kind = _foreign_kind(info.filename, _sniff_stream(stream))
                if kind:
                    found.add(info.filename, kind)
    except (zipfile.BadZipFile, OSError, RuntimeError) as error:
        return [
            Finding(
                "dist",
                "error",
                f"{path} is not a readable zip: {error}",
                "rebuild it with `layerforge build`",
            )
        ]
    findings = _report_foreign(path, found, target)
    backslashed = [name for name in names if "\\" in name]
    if backslashed:
        findings.append(
            Finding(
                "dist",
                "error",
                f"{path} was zipped by a Windows tool that writes '\\' in entry names ({backslashed[0]!r}"
                f"{_more(len(backslashed) - 1)}): Lambda unpacks them as single files named with "
                "backslashes, not as folders, so nothing imports",
                "make the zip with `layerforge build` (or `python -m zipfile -c out.zip python/`, or 7-Zip), "
                "never with PowerShell's Compress-Archive from Windows PowerShell 5",
                tuple(backslashed),
            )
        )
    return findings


def _more(count: int) -> str:
    return f" and {count} more" if count > 0 else ""


def _report_foreign(artifact: Path, found: _Foreign, target: Target) -> list[Finding]:
    if not found.windows and not found.macos:
        return []
    parts = [
        f"{len(names)} {label} binar{'y' if len(names) == 1 else 'ies'}"
        for label, names in (("Windows", found.windows), ("macOS", found.macos))
        if names
    ]
    every = found.windows + found.macos
    shown = ", ".join(every[:_SHOWN]) + (f" and {len(every) - _SHOWN} more" if len(every) > _SHOWN else "")
    pip_flags = (
        f"--platform manylinux2014_{target.machine} --only-binary=:all: --python-version "
        f"{target.python_dotted} --implementation cp"
    )
    fix = (
        f"rebuild it with `layerforge build RECIPE --runtime {target.runtime} --arch {target.arch}`, which "
        f"picks Linux wheels on any machine; if you run pip yourself, add `{pip_flags}`"
    )
    if found.extension_modules:
        return [
            Finding(
                "dist",
                "error",
                f"{artifact} holds {' and '.join(parts)} ({shown}): built on Windows or macOS, or from "
                "wheels for them. Lambda runs Linux and cannot load them: the import fails with "
                '"No module named ..."',
                fix,
                tuple(every),
            )
        ]
    return [
        Finding(
            "dist",
            "warning",
            f"{artifact} holds {' and '.join(parts)} ({shown}) that Linux never loads, such as launchers "
            "shipped by pure-Python packages: dead weight rather than a broken import",
            "nothing breaks; to save space, remove them with a `[strip] remove` rule in the recipe",
            tuple(every),
        )
    ]
