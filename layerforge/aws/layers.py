"""Lambda layer versions: publish only what is new, grant use, and point functions at a version.

Every function here takes a boto3 Lambda client and is safe to run again: a version whose CodeSha256
matches is reused, a permission statement that exists is left alone, and a function that already
uses the version is not updated.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..errors import PublishError
from ..limits import MAX_LAYERS
from .explain import error_code, is_not_found

LAYER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,140}$")
DESCRIPTION_MAX = 256
LICENSE_INFO_MAX = 512
# Lambda's statement ids allow only these characters, up to 100 of them.
_STATEMENT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_STATEMENT_ID_MAX = 100
_ACCOUNT = re.compile(r"^\d{12}$")
_ACCOUNT_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:root$")
_ORGANIZATION = re.compile(r"^o-[a-z0-9]{10,32}$")


@dataclass(frozen=True)
class LayerSpec:
    """What a new layer version is published with."""

    name: str
    description: str
    runtimes: tuple[str, ...]
    architectures: tuple[str, ...]
    license_info: str | None = None

    def publish_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "LayerName": self.name,
            "Description": self.description,
            "CompatibleRuntimes": list(self.runtimes),
            "CompatibleArchitectures": list(self.architectures),
        }
        if self.license_info:
            args["LicenseInfo"] = self.license_info
        return args


@dataclass(frozen=True)
class LayerVersion:
    layer_arn: str
    arn: str
    version: int
    code_sha256: str


def sanitize_layer_name(text: str) -> str:
    """A legal layer name from free text: dots dropped (python3.11 -> python311), others to '-'."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text.replace(".", "")).strip("-")
    return name[:140]


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def direct_request_bytes(zip_size: int, spec: LayerSpec) -> int:
    """The body of a PublishLayerVersion that carries the zip."""
    return request_bytes(spec.publish_args() | {"Content": {"ZipFile": ""}}, zip_size)


def request_bytes(envelope: dict[str, Any], zip_size: int) -> int:
    """A Lambda request that carries a zip: the JSON around it, and the zip in base64 (4 bytes per 3)."""
    return len(json.dumps(envelope).encode()) + 4 * math.ceil(zip_size / 3)


def _as_version(response: dict[str, Any]) -> LayerVersion:
    return LayerVersion(
        layer_arn=str(response["LayerArn"]),
        arn=str(response["LayerVersionArn"]),
        version=int(response["Version"]),
        code_sha256=str(response.get("Content", {}).get("CodeSha256", "")),
    )


def matching_version(client: Any, spec: LayerSpec, code_sha256: str) -> LayerVersion | None:
    """The latest version when it holds this zip for the same runtimes and architectures."""
    # Lambda lists versions newest first; the first page holds the latest.
    listed = client.list_layer_versions(LayerName=spec.name).get("LayerVersions", [])
    if not listed:
        return None
    latest = max(listed, key=lambda entry: int(entry["Version"]))
    # Same bytes with other compatibility metadata is a different publication: the user changed it.
    if set(latest.get("CompatibleRuntimes", [])) != set(spec.runtimes):
        return None
    if set(latest.get("CompatibleArchitectures", [])) != set(spec.architectures):
        return None
    found = _as_version(client.get_layer_version(LayerName=spec.name, VersionNumber=int(latest["Version"])))
    return found if found.code_sha256 == code_sha256 else None


def publish_version(client: Any, spec: LayerSpec, content: dict[str, Any], code_sha256: str) -> LayerVersion:
    """Publish a new version and check that Lambda read the very zip that was hashed."""
    published = _as_version(client.publish_layer_version(Content=content, **spec.publish_args()))
    if published.code_sha256 != code_sha256:
        raise PublishError(
            f"Lambda stored version {published.version} with CodeSha256 {published.code_sha256}, "
            f"but the zip's is {code_sha256}: the object Lambda read is not this zip",
            hint=f"delete {published.arn} and publish again; check that nothing else writes the key",
        )
    return published


@dataclass(frozen=True)
class Grant:
    principal: str
    statement_id: str
    added: bool


def statement_id(principal: str) -> str:
    """A stable statement id per principal, so that granting again finds the earlier statement."""
    if principal == "*":
        return "layerforge-public"
    return ("layerforge-" + _STATEMENT_ID_UNSAFE.sub("-", principal))[:_STATEMENT_ID_MAX]


def check_principal(principal: str) -> None:
    if principal == "*" or _ACCOUNT.match(principal) or _ACCOUNT_ARN.match(principal):
        return
    if _ORGANIZATION.match(principal):
        return
    raise ValueError(
        f"principal {principal!r} is not '*', a 12-digit account id, an account root ARN "
        "or an organization id (o-...)"
    )


def _existing_statements(client: Any, name: str, version: int) -> set[str]:
    try:
        policy = client.get_layer_version_policy(LayerName=name, VersionNumber=version)
    except ClientError as error:
        if is_not_found(error):
            return set()
        raise
    document = json.loads(policy.get("Policy") or "{}")
    return {str(statement.get("Sid")) for statement in document.get("Statement", [])}


def grant_use(client: Any, name: str, version: int, principal: str) -> Grant:
    """Allow `principal` to use the version (lambda:GetLayerVersion); nothing if already allowed."""
    sid = statement_id(principal)
    if sid in _existing_statements(client, name, version):
        return Grant(principal, sid, added=False)
    args: dict[str, Any] = {
        "LayerName": name,
        "VersionNumber": version,
        "StatementId": sid,
        "Action": "lambda:GetLayerVersion",
        "Principal": principal,
    }
    if _ORGANIZATION.match(principal):
        # An organization is granted as everyone, narrowed by OrganizationId.
        args |= {"Principal": "*", "OrganizationId": principal}
    try:
        client.add_layer_version_permission(**args)
    except ClientError as error:
        # Another run added the same statement between our read and our write.
        if error_code(error) == "ResourceConflictException":
            return Grant(principal, sid, added=False)
        raise
    return Grant(principal, sid, added=True)


@dataclass(frozen=True)
class FunctionUpdate:
    function: str
    layers_before: tuple[str, ...]
    layers_after: tuple[str, ...]
    memory_mb: int | None = None  # the function's MemorySize

    @property
    def updated(self) -> bool:
        return self.layers_before != self.layers_after


def layer_arn_of(version_arn: str) -> str:
    """arn:aws:lambda:REGION:ACCOUNT:layer:NAME:7 -> arn:aws:lambda:REGION:ACCOUNT:layer:NAME."""
    return version_arn.rsplit(":", 1)[0]


def merge_layers(current: Sequence[str], version_arn: str) -> tuple[str, ...]:
    """The function's layers with an older version of this layer replaced in place, else appended.

    Order matters: later layers overwrite earlier ones in /opt, so every other layer keeps its slot.
    """
    target = layer_arn_of(version_arn)
    merged = [version_arn if layer_arn_of(arn) == target else arn for arn in current]
    if version_arn not in merged:
        merged.append(version_arn)
    # A function listing the same layer twice keeps one entry, in the first slot.
    return tuple(dict.fromkeys(merged))


def point_function(client: Any, function: str, version_arn: str) -> FunctionUpdate:
    """Make `function` use `version_arn`, keeping its other layers and their order."""
    config = client.get_function_configuration(FunctionName=function)
    before = tuple(str(layer["Arn"]) for layer in config.get("Layers", []))
    after = merge_layers(before, version_arn)
    if len(after) > MAX_LAYERS:
        raise PublishError(
            f"function {function} would have {len(after)} layers; Lambda allows {MAX_LAYERS}",
            hint="remove a layer from the function, or merge two layers into one",
        )
    if after != before:
        args: dict[str, Any] = {"FunctionName": function, "Layers": list(after)}
        if config.get("RevisionId"):
            # Refuse to overwrite a change someone made since we read the configuration.
            args["RevisionId"] = config["RevisionId"]
        client.update_function_configuration(**args)
    memory = config.get("MemorySize")
    return FunctionUpdate(function, before, after, memory if isinstance(memory, int) else None)
