"""Read a remote zip's central directory with HTTP range requests, never the whole zip.

GetLayerVersion gives a published layer's zip size and a presigned URL (valid for about ten minutes),
never its unzipped size. The unzipped sizes live in the central directory at the zip's tail, so:

1. one suffix range request (``Range: bytes=-N``) fetches the tail, which holds the End Of Central
   Directory record and, for ZIP64, the locator and ZIP64 record that sit right before it; its
   ``Content-Range`` also tells the zip's size, so no HEAD request (which a presigned GET URL refuses);
2. the standard library's ``zipfile`` parses all of it from a lazy file object (``RangeFile``) and
   asks for exactly the central directory range, one more request;
3. a few small members (``RECORD``, ``top_level.txt``) may then be read by their own ranges.

No zip parsing here: ``zipfile`` does it, this module only serves bytes and counts them.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..errors import InputError, LayerforgeError
from ..rangefile import DEFAULT_TAIL_BYTES, RangeFile, RangeReadError, shown_url
from .explain import error_code

_LAYER_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"layer:(?P<name>[A-Za-z0-9_-]+):(?P<version>\d+)$"
)


# A published zip that could not be read by ranges (exit 1): the range reader's own error.
RemoteZipError = RangeReadError


@dataclass(frozen=True)
class LayerArn:
    """The parts of a layer version ARN."""

    arn: str
    region: str
    layer_arn: str
    name: str
    version: int

    @classmethod
    def parse(cls, arn: str) -> LayerArn:
        match = _LAYER_ARN.match(arn.strip())
        if not match:
            raise InputError(
                f"not a layer version ARN: {arn!r}",
                hint="expected arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION",
            )
        layer_arn = arn.strip().rsplit(":", 1)[0]
        return cls(arn.strip(), match["region"], layer_arn, match["name"], int(match["version"]))


@dataclass(frozen=True)
class PublishedLayer:
    """What GetLayerVersion tells about one layer version."""

    arn: str
    location: str


def locate_layer(arn: str, *, endpoint_url: str | None = None, client: Any = None) -> PublishedLayer:
    """Ask the Lambda API where a layer version's zip is.

    GetLayerVersion with the layer's ARN as LayerName is the same call, and the same IAM action
    (lambda:GetLayerVersion), as GetLayerVersionByArn; it is used because local Lambda emulators
    (moto) implement only this one.
    """
    parsed = LayerArn.parse(arn)
    if client is None:
        client = _lambda_client(parsed.region, endpoint_url)
    response = _get_layer_version(client, parsed)
    content = response.get("Content", {})
    location = str(content.get("Location", ""))
    if not location.startswith(("https://", "http://")):
        raise RemoteZipError(
            f"GetLayerVersion of {arn} gave Location {location!r}, not an HTTP URL",
            hint="AWS gives a presigned https URL; a local emulator may need a proxy that presigns one",
        )
    return PublishedLayer(arn=parsed.arn, location=location)


def _lambda_client(region: str, endpoint_url: str | None) -> Any:
    config = Config(retries={"total_max_attempts": 3, "mode": "standard"})
    return boto3.client("lambda", region_name=region, endpoint_url=endpoint_url, config=config)


def _get_layer_version(client: Any, parsed: LayerArn) -> dict[str, Any]:
    try:
        response: dict[str, Any] = client.get_layer_version(
            LayerName=parsed.layer_arn, VersionNumber=parsed.version
        )
    except NoCredentialsError as error:
        raise LayerforgeError(
            f"cannot read layer {parsed.arn}: no AWS credentials",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ) from error
    except ClientError as error:
        code = error_code(error)
        if code == "ResourceNotFoundException":
            raise InputError(
                f"layer version {parsed.arn} does not exist",
                hint="check the ARN's region, name and version (aws lambda list-layer-versions)",
            ) from error
        raise LayerforgeError(
            f"GetLayerVersion of {parsed.arn} failed: {code or error}",
            hint="the caller needs lambda:GetLayerVersion on the layer (or the layer a permission for it)",
        ) from error
    except BotoCoreError as error:
        raise LayerforgeError(f"GetLayerVersion of {parsed.arn} failed: {error}") from error
    return response


def open_remote_zip(url: str, *, tail_bytes: int = DEFAULT_TAIL_BYTES) -> tuple[zipfile.ZipFile, RangeFile]:
    """The zip at URL, with only its tail and central directory fetched."""
    handle = RangeFile(url, tail_bytes=tail_bytes)
    try:
        return zipfile.ZipFile(handle), handle
    except zipfile.BadZipFile as error:
        raise RemoteZipError(f"{shown_url(url)} is not a readable zip: {error}") from error
