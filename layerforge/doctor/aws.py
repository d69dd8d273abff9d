"""AWS: credentials and who they are; with --bucket, a probe object in S3 and Lambda's layer calls."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .findings import DoctorOptions, Finding, Severity

_AWS_CONNECT_TIMEOUT = 5
_AWS_READ_TIMEOUT = 15
PROBE_PREFIX = "layerforge-doctor/"
PROBE_BODY = b"layerforge doctor probe\n"


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
