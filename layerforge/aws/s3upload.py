"""Content-addressed upload of a layer zip to S3: hash once, skip what is there, send the rest verified.

The key is derived from the zip's sha256, so an object under that key with that checksum is the zip:
nothing is sent again. Uploads go through boto3's transfer manager (multipart above a threshold), with
SHA-256 checksums that S3 verifies per request, and retries done by botocore's retry mode on the client.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.s3.transfer import ProgressCallbackInvoker, TransferConfig, create_transfer_manager
from botocore.exceptions import ClientError

from .explain import is_not_found

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_MULTIPART_CHUNKSIZE = 8 * MiB
# S3 refuses parts under 5 MiB (except the last one).
MIN_PART_BYTES = 5 * MiB
# Stored as x-amz-meta-layerforge-sha256: a multipart object's checksum is a checksum of part
# checksums, which cannot be compared with the zip's own sha256.
META_SHA256 = "layerforge-sha256"
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ZipDigest:
    """The zip's size and sha256, computed once and used for the key, S3 and Lambda."""

    size: int
    sha256_hex: str

    @property
    def sha256_b64(self) -> str:
        """The form S3's ChecksumSHA256 and Lambda's CodeSha256 use."""
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode("ascii")


def digest_file(path: Path) -> ZipDigest:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return ZipDigest(size=size, sha256_hex=sha.hexdigest())


def object_key(prefix: str, layer_name: str, sha256_hex: str, suffix: str = ".zip") -> str:
    """`<prefix>/<layer name>/<sha256>.zip`: the same content always lands on the same key (and the
    zip's SBOM beside it, `<sha256>.cdx.json`)."""
    parts = [part for part in (prefix.strip("/"), layer_name, f"{sha256_hex}{suffix}") if part]
    return "/".join(parts)


@dataclass(frozen=True)
class UploadProgress:
    """Bytes sent for one object. `advanced` is negative when a retried request rewinds its body."""

    target: str
    advanced: int
    total: int


ProgressCallback = Callable[[UploadProgress], None]


@dataclass(frozen=True)
class TransferSettings:
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE
    max_concurrency: int = 8


@dataclass(frozen=True)
class UploadOutcome:
    """What happened to one S3 object."""

    bucket: str
    key: str
    uploaded: bool
    uploaded_bytes: int
    multipart: bool

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def find_existing(client: Any, bucket: str, key: str, digest: ZipDigest) -> str | None:
    """How an object at `key` was recognised as this zip, or None when absent or different."""
    try:
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    if int(head.get("ContentLength", -1)) != digest.size:
        return None
    checksum = str(head.get("ChecksumSHA256") or "")
    if checksum and not _is_composite(head, checksum):
        return "checksum" if checksum == digest.sha256_b64 else None
    metadata = {name.lower(): value for name, value in (head.get("Metadata") or {}).items()}
    return "metadata" if metadata.get(META_SHA256) == digest.sha256_hex else None


def _is_composite(head: dict[str, Any], checksum: str) -> bool:
    # S3 writes a multipart checksum as "<b64>-<parts>"; some stores (moto) drop the suffix, but a
    # multipart ETag still ends in "-<parts>".
    etag = str(head.get("ETag", "")).strip('"')
    return "-" in checksum or head.get("ChecksumType") == "COMPOSITE" or "-" in etag


def upload_file(
    client: Any,
    path: Path,
    *,
    bucket: str,
    key: str,
    digest: ZipDigest,
    settings: TransferSettings,
    on_progress: ProgressCallback | None = None,
    content_type: str = "application/zip",
) -> UploadOutcome:
    """Send the zip with SHA-256 checksums; multipart at or above the threshold."""
    multipart = digest.size >= settings.multipart_threshold
    extra_args: dict[str, Any] = {
        "ChecksumAlgorithm": "SHA256",
        "ContentType": content_type,
        "Metadata": {META_SHA256: digest.sha256_hex},
    }
    if not multipart:
        # S3 then checks the bytes it stored against the hash taken before the upload: a zip that
        # changed on disk in between is refused rather than published.
        extra_args["ChecksumSHA256"] = digest.sha256_b64
    config = TransferConfig(
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        max_concurrency=settings.max_concurrency,
        # The classic manager sends its requests through this client, so its retry mode applies.
        preferred_transfer_client="classic",
    )
    target = f"s3://{bucket}/{key}"
    subscribers = []
    if on_progress is not None:
        callback = on_progress

        def report(advanced: int) -> None:
            callback(UploadProgress(target=target, advanced=advanced, total=digest.size))

        subscribers.append(ProgressCallbackInvoker(report))
    with create_transfer_manager(client, config) as manager:
        future = manager.upload(str(path), bucket, key, extra_args=extra_args, subscribers=subscribers)
        future.result()
    return UploadOutcome(bucket, key, uploaded=True, uploaded_bytes=digest.size, multipart=multipart)


def ensure_object(
    client: Any,
    path: Path,
    *,
    bucket: str,
    key: str,
    digest: ZipDigest,
    settings: TransferSettings,
    on_progress: ProgressCallback | None = None,
    content_type: str = "application/zip",
) -> UploadOutcome:
    """Upload the zip (or its SBOM) unless the object is already there with the same sha256."""
    if find_existing(client, bucket, key, digest) is not None:
        return UploadOutcome(bucket, key, uploaded=False, uploaded_bytes=0, multipart=False)
    return upload_file(
        client,
        path,
        bucket=bucket,
        key=key,
        digest=digest,
        settings=settings,
        on_progress=on_progress,
        content_type=content_type,
    )
