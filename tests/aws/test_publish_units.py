"""The pieces of `publish` that need no server: names, limits, layer order, errors and redaction."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from layerforge.aws.explain import REDACTED, Redactor, explain
from layerforge.aws.layers import (
    LayerSpec,
    direct_request_bytes,
    merge_layers,
    sanitize_layer_name,
    statement_id,
)
from layerforge.aws.publish_plan import PublishOptions, check_direct, make_plan
from layerforge.aws.s3upload import META_SHA256, ZipDigest, find_existing, object_key
from layerforge.errors import InputError, SizeLimitError
from layerforge.limits import DIRECT_UPLOAD_REQUEST_BYTES, DIRECT_UPLOAD_ZIP_BYTES

SPEC = LayerSpec("demo", "layerforge recipe demo", ("python3.11",), ("x86_64",), "MIT")
ARN = "arn:aws:lambda:us-east-1:123456789012:layer:{}:{}"


def test_merge_layers_replaces_an_older_version_in_its_slot() -> None:
    current = [ARN.format("a", 1), ARN.format("demo", 3), ARN.format("b", 9)]
    assert merge_layers(current, ARN.format("demo", 4)) == (
        ARN.format("a", 1),
        ARN.format("demo", 4),
        ARN.format("b", 9),
    )


def test_merge_layers_appends_a_new_layer_and_keeps_the_order() -> None:
    current = [ARN.format("b", 1), ARN.format("a", 1)]
    assert merge_layers(current, ARN.format("demo", 1))[-1] == ARN.format("demo", 1)
    assert merge_layers(current, ARN.format("demo", 1))[:2] == tuple(current)


def test_merge_layers_does_not_confuse_a_layer_whose_name_extends_another() -> None:
    current = [ARN.format("demo-extra", 2)]
    assert merge_layers(current, ARN.format("demo", 1)) == (
        ARN.format("demo-extra", 2),
        ARN.format("demo", 1),
    )


def test_statement_ids_are_stable_and_legal() -> None:
    assert statement_id("*") == "layerforge-public"
    assert statement_id("123456789012") == "layerforge-123456789012"
    assert statement_id("arn:aws:iam::123456789012:root") == "layerforge-arn-aws-iam--123456789012-root"


def test_layer_names_from_free_text() -> None:
    assert sanitize_layer_name("sklearn-python3.11-x86_64") == "sklearn-python311-x86_64"
    assert sanitize_layer_name("my layer/v2") == "my-layer-v2"


def test_object_key_is_content_addressed() -> None:
    assert object_key("layerforge", "demo", "ab" * 32) == f"layerforge/demo/{'ab' * 32}.zip"
    assert object_key("/team/layers/", "demo", "cd") == "team/layers/demo/cd.zip"
    assert object_key("", "demo", "cd") == "demo/cd.zip"


def test_direct_request_size_counts_base64_and_the_json_around_it() -> None:
    body = direct_request_bytes(3_000_000, SPEC)
    assert body > 4_000_000  # 4 bytes of base64 for every 3 of zip
    assert body - 4_000_000 < 400  # plus the parameters


def test_direct_accepts_50_mib_exactly_and_refuses_a_byte_more() -> None:
    check_direct(ZipDigest(DIRECT_UPLOAD_ZIP_BYTES, "00" * 32), SPEC)
    with pytest.raises(SizeLimitError, match="50 MiB"):
        check_direct(ZipDigest(DIRECT_UPLOAD_ZIP_BYTES + 1, "00" * 32), SPEC)


def test_direct_refuses_a_request_over_lambdas_byte_limit() -> None:
    # Under 50 MiB, but with parameters so large that the request passes 70,167,211 bytes.
    huge = LayerSpec("demo", "x" * 400_000, ("python3.11",), ("x86_64",), None)
    size = DIRECT_UPLOAD_ZIP_BYTES - 1
    assert direct_request_bytes(size, huge) > DIRECT_UPLOAD_REQUEST_BYTES
    with pytest.raises(SizeLimitError, match="request would be") as raised:
        check_direct(ZipDigest(size, "00" * 32), huge)
    assert raised.value.exit_code == 3


class _Head:
    """A stand-in S3 client answering head_object with a fixed response."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response

    def head_object(self, **_: Any) -> dict[str, Any]:
        return self.response


DIGEST = ZipDigest(10, hashlib.sha256(b"0123456789").hexdigest())


def test_an_object_with_the_same_checksum_is_recognised() -> None:
    head = {"ContentLength": 10, "ChecksumSHA256": DIGEST.sha256_b64, "ETag": '"abc"'}
    assert find_existing(_Head(head), "b", "k", DIGEST) == "checksum"


def test_a_multipart_object_is_recognised_by_its_metadata_not_its_composite_checksum() -> None:
    composite = base64.b64encode(b"x" * 32).decode()
    head = {
        "ContentLength": 10,
        "ChecksumSHA256": f"{composite}-7",
        "Metadata": {META_SHA256: DIGEST.sha256_hex},
    }
    assert find_existing(_Head(head), "b", "k", DIGEST) == "metadata"
    # moto drops the "-N" suffix; the multipart ETag still tells.
    moto_like = head | {"ChecksumSHA256": composite, "ETag": '"0123-7"'}
    assert find_existing(_Head(moto_like), "b", "k", DIGEST) == "metadata"


def test_an_object_with_another_checksum_or_size_is_not_the_zip() -> None:
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    # A whole-object checksum that differs wins over metadata that claims a match.
    head = {"ContentLength": 10, "ChecksumSHA256": other, "Metadata": {META_SHA256: DIGEST.sha256_hex}}
    assert find_existing(_Head(head), "b", "k", DIGEST) is None
    assert (
        find_existing(_Head({"ContentLength": 11, "ChecksumSHA256": DIGEST.sha256_b64}), "b", "k", DIGEST)
        is None
    )


def _client_error(code: str, status: int, operation: str, message: str = "Access Denied") -> ClientError:
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def test_access_denied_without_a_known_identity_names_the_permission() -> None:
    explanation = explain(_client_error("AccessDenied", 403, "UploadPart"), lambda: None)
    assert (
        explanation.message
        == "access denied: the current credentials lack s3:PutObject (needed by UploadPart)"
    )


def test_lambda_denied_reading_the_zip_names_s3_get_object() -> None:
    error = _client_error(
        "AccessDeniedException",
        403,
        "PublishLayerVersion",
        "Error occurred while GetObject. S3 Error Code: AccessDenied. S3 Error Message: Access Denied",
    )
    assert "lacks s3:GetObject" in explain(error, lambda: "arn:aws:iam::1:user/x").message


def test_rejected_credentials_are_not_reported_as_a_missing_permission() -> None:
    explanation = explain(_client_error("InvalidAccessKeyId", 403, "PutObject"), lambda: None)
    assert "credentials were rejected" in explanation.message and "lacks" not in explanation.message


def test_redactor_removes_known_secrets_and_signature_material() -> None:
    redact = Redactor(["fake/secret/Key+layerforge+0123456789abcdef"])
    text = (
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAFAKELAYERFORGE01/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=0123abcd; secret fake/secret/Key+layerforge+0123456789abcdef; "
        "url https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature=ffee&X-Amz-Security-Token=tok"
    )
    cleaned = redact(text)
    for secret in ("AKIAFAKELAYERFORGE01", "0123abcd", "fake/secret", "ffee", "=tok"):
        assert secret not in cleaned
    assert cleaned.count(REDACTED) >= 5


def _zip(tmp_path: Path) -> Path:
    path = tmp_path / "layer.zip"
    path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bucket": "b"}, "--layer-name, --runtime, --arch must be given"),
        ({"layer_name": "x", "runtimes": ("python3.11",), "architectures": ("x86_64",)}, "needs --bucket"),
        (
            {
                "bucket": "b",
                "layer_name": "bad name!",
                "runtimes": ("python3.11",),
                "architectures": ("x86_64",),
            },
            "not valid",
        ),
        (
            {"bucket": "b{x}", "layer_name": "x", "runtimes": ("python3.11",), "architectures": ("x86_64",)},
            "placeholder",
        ),
        ({"bucket": "b", "regions": ("moon-1",)}, "not an AWS region"),
        ({"bucket": "b", "multipart_chunksize": 1024}, "5 MiB"),
        (
            {
                "bucket": "b",
                "layer_name": "x",
                "runtimes": ("python3.11",),
                "architectures": ("x86_64",),
                "principals": ("everyone",),
            },
            "principal",
        ),
    ],
)
def test_plan_refuses_bad_input_before_any_request(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    options = PublishOptions(zip_path=_zip(tmp_path), regions=("us-east-1",))
    values = {**options.__dict__, **changes}
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as raised:
        make_plan(PublishOptions(**values))
    assert raised.value.exit_code == 2


def test_license_info_is_cut_to_lambdas_limit(tmp_path: Path) -> None:
    options = PublishOptions(
        zip_path=_zip(tmp_path),
        regions=("us-east-1",),
        bucket="b",
        layer_name="x",
        runtimes=("python3.12",),
        architectures=("arm64",),
        license_info="MIT; " * 200,
    )
    plan = make_plan(options)
    assert plan.spec.license_info is not None and len(plan.spec.license_info) == 512
    assert any("512" in warning for warning in plan.warnings)
    assert plan.spec.description.startswith("layerforge layer; zip sha256:")
