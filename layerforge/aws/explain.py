"""Turn botocore's failures into messages a user can act on, and keep secrets out of them.

An AWS error that reaches a user says which call failed, why, and what to do; AccessDenied names the
IAM permission that was missing and the identity that lacked it. Every message passes through a
`Redactor` first: botocore errors and hostile or buggy servers can echo headers, query strings or
presigned URLs, and none of that may reach a terminal or a CI log.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

# The IAM action each API call needs. Several S3 calls of one upload share s3:PutObject.
PERMISSIONS: dict[str, str] = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PublishLayerVersion": "lambda:PublishLayerVersion",
    "ListLayerVersions": "lambda:ListLayerVersions",
    "GetLayerVersion": "lambda:GetLayerVersion",
    "GetLayerVersionPolicy": "lambda:GetLayerVersionPolicy",
    "AddLayerVersionPermission": "lambda:AddLayerVersionPermission",
    "GetFunctionConfiguration": "lambda:GetFunctionConfiguration",
    "UpdateFunctionConfiguration": "lambda:UpdateFunctionConfiguration",
    "GetFunction": "lambda:GetFunction",
    "UpdateFunctionCode": "lambda:UpdateFunctionCode",
    "CreateFunction": "lambda:CreateFunction",
}
# A call that needs a second permission AWS may not name in a bare "Access Denied": creating a
# function hands it a role, which takes iam:PassRole on that role.
ALSO_NEEDED: dict[str, str] = {"CreateFunction": "iam:PassRole on the function's role"}
# Calls that make Lambda read the zip from S3 with the caller's rights.
_READS_S3 = frozenset({"PublishLayerVersion", "UpdateFunctionCode", "CreateFunction"})

# S3 answers a HEAD without a body, so botocore sees only the status as the code ("403").
_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "Forbidden", "403"})
# These are 403s too, but the credentials themselves were refused: no policy change will help.
_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)
_THROTTLING = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
)
# AWS's own wording: "User: arn:... is not authorized to perform: lambda:X on resource: ...".
_NOT_AUTHORIZED = re.compile(r"User: (?P<who>\S+) is not authorized to perform: (?P<action>[\w-]+:\w+)")

REDACTED = "<redacted>"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Access key ids (long-term AKIA, temporary ASIA) name an identity and half a credential.
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    # SigV4 in headers (Credential=..., Signature=...) and presigned query strings (X-Amz-*).
    (re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"'<]+"), r"\1" + REDACTED),
    (re.compile(r"(Credential=)[^,\s\"'<]+"), r"\1" + REDACTED),
    (re.compile(r"(Signature=)[^,\s\"'<&]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(x-amz-security-token[\"']?\s*[:=]\s*[\"']?)[^\s,\"'<]+"), r"\1" + REDACTED),
    (
        re.compile(r"(?i)((?:aws_)?(?:secret_access_key|session_token|SecretAccessKey|SessionToken)\W+)\S+"),
        r"\1" + REDACTED,
    ),
)


class Redactor:
    """Removes known secret values and credential-shaped text from anything shown to a user."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so that a secret containing another is removed whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class IdentityLookup:
    """The caller's ARN from STS, asked at most once per run and only when an error needs it."""

    def __init__(self, get_caller_identity: Callable[[], dict[str, Any]]) -> None:
        self._call = get_caller_identity
        self._lock = threading.Lock()
        self._done = False
        self._arn: str | None = None

    def __call__(self) -> str | None:
        with self._lock:
            if not self._done:
                self._done = True
                try:
                    self._arn = str(self._call()["Arn"])
                except Exception:
                    # STS may be denied or unreachable too; the message then says "the credentials".
                    self._arn = None
            return self._arn


@dataclass(frozen=True)
class Explanation:
    """What failed and why, and what to do next: the parts of a LayerforgeError."""

    message: str
    hint: str | None = None


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def http_status(error: ClientError) -> int | None:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def attempts(error: ClientError) -> int:
    """How many times botocore sent the request (RetryAttempts counts the retries only)."""
    return int(error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1


def is_not_found(error: ClientError) -> bool:
    return error_code(error) in {"404", "NoSuchKey", "NotFound", "ResourceNotFoundException"}


def is_access_denied(error: ClientError) -> bool:
    code = error_code(error)
    if code in _BAD_CREDENTIALS:
        return False
    return code in _ACCESS_DENIED or http_status(error) == 403


def explain(error: BaseException, identity: Callable[[], str | None]) -> Explanation:
    """A user-facing explanation of any exception an AWS call raised."""
    if isinstance(error, ClientError):
        return _explain_client_error(error, identity)
    if isinstance(error, NoCredentialsError):
        return Explanation(
            "no AWS credentials found",
            hint="set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(error, BotoCoreError):
        return Explanation(
            f"{error}", hint="check the network and the endpoint; retries were exhausted (--max-attempts)"
        )
    return Explanation(f"{type(error).__name__}: {error}")


def _explain_client_error(error: ClientError, identity: Callable[[], str | None]) -> Explanation:
    operation = error.operation_name
    code = error_code(error)
    message = str(error.response.get("Error", {}).get("Message", "")) or "no message"
    if code in _BAD_CREDENTIALS:
        return Explanation(
            f"{operation}: the credentials were rejected ({code}: {message})",
            hint="check which AWS credentials are in use (AWS_PROFILE, --profile, the environment)",
        )
    if is_access_denied(error) or _s3_read_denied(operation, message):
        return _explain_access_denied(operation, message, identity)
    tries = attempts(error)
    after = f" after {tries} attempts" if tries > 1 else ""
    text = f"{operation} failed{after}: {code} (HTTP {http_status(error)}): {message}"
    if code in _THROTTLING or (http_status(error) or 0) >= 500:
        return Explanation(text, hint="the service kept failing: try again later, or raise --max-attempts")
    if code == "NoSuchBucket":
        return Explanation(text, hint="create the bucket in the region it serves, or correct --bucket")
    if code == "RequestEntityTooLargeException" or http_status(error) == 413:
        return Explanation(text, hint="publish through S3 with --bucket instead of --direct")
    return Explanation(text, hint=_function_hint(code, message))


def _function_hint(code: str, message: str) -> str | None:
    if code == "InvalidParameterValueException" and "cannot be assumed by Lambda" in message:
        # IAM is eventually consistent: a role made seconds ago is often not usable yet.
        return (
            "the role's trust policy must allow lambda.amazonaws.com to assume it; "
            "a role created moments ago may need a few seconds: run again"
        )
    if code == "ResourceConflictException":
        return "another change to the function is in progress: run again when it has finished"
    return None


def _s3_read_denied(operation: str, message: str) -> bool:
    # Lambda reads the zip from S3 with the caller's rights and reports S3's refusal in its message.
    return operation in _READS_S3 and "S3 Error Code: AccessDenied" in message


def _explain_access_denied(operation: str, message: str, identity: Callable[[], str | None]) -> Explanation:
    stated = _NOT_AUTHORIZED.search(message)
    if _s3_read_denied(operation, message):
        permission = "s3:GetObject"
    elif stated:
        permission = stated.group("action")
    else:
        permission = PERMISSIONS.get(operation, f"the permission for {operation}")
    who = stated.group("who") if stated else identity()
    subject, verb = (who, "lacks") if who else ("the current credentials", "lack")
    # AWS named the action, or the call needs only one: that is the permission. Otherwise say both.
    also = None if stated else ALSO_NEEDED.get(operation)
    missing, needed = (f"{permission} or {also}", f"{permission} and {also}") if also else (permission,) * 2
    # Only S3 has resource policies a user is likely to own; Lambda and IAM actions go on the identity.
    where = "an IAM policy on the identity"
    if permission.startswith("s3:"):
        where += ", or the bucket's policy"
    return Explanation(
        f"access denied: {subject} {verb} {missing} (needed by {operation})",
        hint=f"grant {needed} to {subject} ({where})",
    )
