"""`layerforge publish` end to end: the CLI against moto in server mode, through a fault proxy.

boto3 -> FaultProxy (127.0.0.1) -> moto. The proxy names each request by its API operation, so a
test can count UploadPart requests or fail the 2nd of them with a 503, as S3 would.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from layerforge.cli import main
from layerforge.limits import DIRECT_UPLOAD_REQUEST_BYTES, recommended_memory_mb
from tests.support.aws import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, AwsServer
from tests.support.faultproxy import (
    Fault,
    FaultProxy,
    Rule,
    access_denied,
    drop,
    running,
    server_error,
    slowdown,
    throttle,
)

MiB = 1024 * 1024
BUCKET = "layers-test"
LOCK_HASH = "ab" * 32
LAYER = "demo-python311-x86_64"  # what the manifest below names the layer by default


def make_zip(path: Path, files: dict[str, bytes], *, compress: bool = True) -> Path:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return path


def write_manifest(zip_path: Path, *, recipe: str = "demo") -> dict[str, Any]:
    """A build manifest as docs/manifest.md describes it, beside the zip."""
    data = zip_path.read_bytes()
    manifest = {
        "schema_version": 1,
        "kind": "layer",
        "layerforge_version": "0.1.0",
        "recipe": recipe,
        "description": "a test layer",
        "runtime": "python3.11",
        "arch": "x86_64",
        "compatible_runtimes": ["python3.11"],
        "compatible_architectures": ["x86_64"],
        "zip": zip_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "zipped_bytes": len(data),
        "unzipped_bytes": 0,
        "lock": zip_path.stem + ".lock.json",
        "lock_hash": LOCK_HASH,
        "license": "MIT",
        "packages": [],
        "removed_bytes": 0,
        "verified": None,
        "limits": [],
    }
    zip_path.with_name(zip_path.stem + ".manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    return manifest


@pytest.fixture()
def small_zip(tmp_path: Path) -> Path:
    path = make_zip(tmp_path / "demo-python3.11-x86_64.zip", {"python/x.py": b"X = 1\n"})
    write_manifest(path)
    return path


@pytest.fixture(scope="session")
def big_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over 50 MiB of incompressible data: only S3 can carry it. Written once per session."""
    folder = tmp_path_factory.mktemp("big")
    path = make_zip(
        folder / "demo-python3.11-x86_64.zip", {"python/blob.bin": os.urandom(51 * MiB)}, compress=False
    )
    assert path.stat().st_size > 50 * MiB
    write_manifest(path)
    return path


@pytest.fixture()
def proxy(aws_server: AwsServer) -> Iterator[FaultProxy]:
    # moto's backends live in the process, not in the server: a new server still holds the buckets
    # and layers of earlier tests until it is reset.
    reset = urllib.request.Request(f"{aws_server.endpoint_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    with running(aws_server.endpoint_url) as fault_proxy:
        yield fault_proxy


def make_bucket(aws: AwsServer, name: str = BUCKET, region: str = "us-east-1") -> None:
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    aws.client("s3", region).create_bucket(**kwargs)


def publish(proxy: FaultProxy, zip_path: Path, *args: str, bucket: str | None = BUCKET) -> Result:
    """Run `layerforge publish` with both endpoints through the proxy; stdout and stderr apart."""
    argv = ["publish", str(zip_path), "--endpoint-url", proxy.url, "--lambda-endpoint-url", proxy.url]
    if bucket is not None:
        argv += ["--bucket", bucket]
    if "--region" not in args:
        argv += ["--region", "us-east-1"]
    return CliRunner().invoke(main, [*argv, *args], catch_exceptions=False)


def as_json(result: Result) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def words(text: str) -> str:
    """Rich wraps lines to the terminal's width: compare text with its whitespace collapsed."""
    return " ".join(text.split())


def test_same_zip_twice_uploads_nothing_and_publishes_nothing_new(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    make_bucket(aws_server)
    first = publish(proxy, small_zip, "--json")
    assert first.exit_code == 0, first.stderr
    one = as_json(first)
    digest = hashlib.sha256(small_zip.read_bytes()).hexdigest()
    assert one["key"] == f"layerforge/{LAYER}/{digest}.zip"
    assert (one["uploaded"], one["uploaded_bytes"]) == (True, small_zip.stat().st_size)
    assert one["regions"][0]["published"] is True
    assert one["regions"][0]["version"] == 1

    proxy.clear()
    second = publish(proxy, small_zip, "--json")
    assert second.exit_code == 0, second.stderr
    two = as_json(second)
    assert (two["uploaded"], two["uploaded_bytes"]) == (False, 0)
    region = two["regions"][0]
    assert (region["published"], region["status"], region["error"]) == (False, "ok", None)
    assert region["layer_version_arn"] == one["regions"][0]["layer_version_arn"]
    assert proxy.count("PutObject") == 0 and proxy.count("PublishLayerVersion") == 0
    layer_versions = aws_server.client("lambda").list_layer_versions(LayerName=LAYER)["LayerVersions"]
    assert len(layer_versions) == 1

    human = words(publish(proxy, small_zip).stderr)
    assert "already there with this sha256: uploaded 0 bytes" in human
    assert "version 1 already holds this zip, published nothing new" in human


def test_layer_description_license_and_runtimes_come_from_the_manifest(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    make_bucket(aws_server)
    assert publish(proxy, small_zip).exit_code == 0
    version = aws_server.client("lambda").get_layer_version(LayerName=LAYER, VersionNumber=1)
    assert "recipe demo" in version["Description"] and LOCK_HASH in version["Description"]
    assert version["LicenseInfo"] == "MIT"
    assert version["CompatibleRuntimes"] == ["python3.11"]
    assert version["CompatibleArchitectures"] == ["x86_64"]
    digest = hashlib.sha256(small_zip.read_bytes()).hexdigest()
    head = aws_server.client("s3").head_object(
        Bucket=BUCKET, Key=f"layerforge/{LAYER}/{digest}.zip", ChecksumMode="ENABLED"
    )
    assert head["Metadata"]["layerforge-sha256"] == digest
    assert head["ChecksumSHA256"]


def test_large_layer_publishes_through_s3_in_parts(
    aws_server: AwsServer, proxy: FaultProxy, big_zip: Path
) -> None:
    make_bucket(aws_server)
    result = publish(
        proxy, big_zip, "--multipart-threshold", "8MiB", "--multipart-chunksize", "8MiB", "--json"
    )
    assert result.exit_code == 0, result.stderr
    payload = as_json(result)
    assert payload["uploaded_bytes"] == big_zip.stat().st_size
    parts = -(-big_zip.stat().st_size // (8 * MiB))
    assert proxy.count("CreateMultipartUpload") == 1
    assert proxy.count("UploadPart", status=200) == parts == 7
    assert proxy.count("CompleteMultipartUpload") == 1
    assert proxy.count("PutObject") == 0
    assert payload["regions"][0]["published"] is True

    # The object's checksum is composite (per part): the second run recognises it by its metadata.
    proxy.clear()
    again = as_json(publish(proxy, big_zip, "--multipart-threshold", "8MiB", "--json"))
    assert (again["uploaded"], again["regions"][0]["published"]) == (False, False)
    assert proxy.count("UploadPart") == 0


def test_direct_refuses_a_zip_over_the_limits_with_the_reason(proxy: FaultProxy, big_zip: Path) -> None:
    result = publish(proxy, big_zip, "--direct", bucket=None)
    assert result.exit_code == 3
    message = words(result.stderr)
    size = big_zip.stat().st_size
    assert f"the zip is {size:,} bytes, over the 52,428,800-byte (50 MiB) limit" in message
    assert f"over Lambda's {DIRECT_UPLOAD_REQUEST_BYTES:,}-byte request limit" in message
    assert "base64" in message and "--bucket" in message
    assert proxy.log == []  # refused before any request


def test_direct_publishes_a_small_zip_in_the_request(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    result = publish(proxy, small_zip, "--direct", "--json", bucket=None)
    assert result.exit_code == 0, result.stderr
    payload = as_json(result)
    assert (payload["direct"], payload["bucket"], payload["key"], payload["uploaded"]) == (
        True,
        None,
        None,
        False,
    )
    assert payload["regions"][0]["published"] is True
    assert proxy.count("PutObject") == 0 and proxy.count("PublishLayerVersion") == 1


def test_slowdown_in_the_middle_of_a_multipart_upload_is_retried(
    aws_server: AwsServer, proxy: FaultProxy, big_zip: Path
) -> None:
    make_bucket(aws_server)
    proxy.add(Rule(op="UploadPart", fault=slowdown(), nth=2, times=1))
    result = publish(proxy, big_zip, "--multipart-threshold", "8MiB", "--json")
    assert result.exit_code == 0, result.stderr
    assert proxy.count("UploadPart", status=503) == 1
    assert proxy.count("UploadPart", status=200) == 7
    assert as_json(result)["regions"][0]["status"] == "ok"


@pytest.mark.parametrize(
    ("op", "fault", "step"),
    [("PutObject", server_error(), "upload"), ("PublishLayerVersion", throttle(429), "publish")],
)
def test_a_persistent_error_fails_naming_the_region_and_the_step(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path, op: str, fault: Fault, step: str
) -> None:
    make_bucket(aws_server)
    proxy.add(Rule(op=op, fault=fault, times=None))
    result = publish(proxy, small_zip, "--max-attempts", "3", "--json")
    assert result.exit_code == 1
    assert proxy.count(op) == 3  # botocore's retry mode: 3 attempts in all
    region = as_json(result)["regions"][0]
    assert (region["region"], region["status"], region["step"]) == ("us-east-1", "failed", step)
    assert region["published"] is False and region["layer_version_arn"] is None
    assert fault.code in region["error"] and "after 3 attempts" in region["error"]
    message = words(result.stderr)
    assert f"us-east-1 (step {step})" in message and "Succeeded in: none" in message
    record = json.loads(small_zip.with_name(small_zip.stem + ".publish.json").read_text())
    assert record["regions"][0]["status"] == "failed"


@pytest.mark.parametrize(
    ("op", "fault"),
    [("PutObject", drop()), ("PublishLayerVersion", throttle(429)), ("ListLayerVersions", throttle(400))],
)
def test_a_transient_fault_is_retried_by_botocore(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path, op: str, fault: Fault
) -> None:
    make_bucket(aws_server)
    proxy.add(Rule(op=op, fault=fault, times=1))
    result = publish(proxy, small_zip, "--json")
    assert result.exit_code == 0, result.stderr
    assert proxy.count(op) == 2
    assert as_json(result)["regions"][0]["published"] is True


def test_a_persistent_slowdown_in_a_multipart_upload_fails_and_aborts_it(
    aws_server: AwsServer, proxy: FaultProxy, big_zip: Path
) -> None:
    make_bucket(aws_server)
    proxy.add(Rule(op="UploadPart", fault=slowdown(), nth=3, times=None))
    result = publish(proxy, big_zip, "--multipart-threshold", "8MiB", "--max-attempts", "2", "--json")
    assert result.exit_code == 1
    region = as_json(result)["regions"][0]
    assert (region["region"], region["status"], region["step"]) == ("us-east-1", "failed", "upload")
    assert "UploadPart failed after 2 attempts: SlowDown" in region["error"]
    assert region["layer_version_arn"] is None
    assert "us-east-1 (step upload)" in words(result.stderr)
    # The transfer manager aborts the upload, so no orphaned parts keep costing storage.
    assert proxy.count("AbortMultipartUpload") == 1
    assert proxy.count("PublishLayerVersion") == 0


REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")


def test_three_regions_give_three_arns_in_the_record(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    for region in REGIONS:
        make_bucket(aws_server, f"layers-{region}", region)
    region_args = [arg for region in REGIONS for arg in ("--region", region)]
    result = publish(proxy, small_zip, *region_args, "--json", bucket="layers-{region}")
    assert result.exit_code == 0, result.stderr
    record = json.loads(small_zip.with_name(small_zip.stem + ".publish.json").read_text())
    arns = {entry["region"]: entry["layer_version_arn"] for entry in record["regions"]}
    assert set(arns) == set(REGIONS)
    for region, arn in arns.items():
        assert arn == f"arn:aws:lambda:{region}:123456789012:layer:{LAYER}:1"
    assert {entry["bucket"] for entry in record["regions"]} == {f"layers-{region}" for region in REGIONS}
    assert record["sha256"] == hashlib.sha256(small_zip.read_bytes()).hexdigest()
    assert record["lock_hash"] == LOCK_HASH
    assert proxy.count("PutObject") == 3  # one bucket per region


def test_one_failed_region_is_named_and_the_others_reported(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    for region in REGIONS:
        make_bucket(aws_server, f"layers-{region}", region)
    proxy.add(Rule(op="PublishLayerVersion", region="eu-west-1", fault=server_error(), times=None))
    region_args = [arg for region in REGIONS for arg in ("--region", region)]
    result = publish(
        proxy, small_zip, *region_args, "--max-attempts", "2", "--json", bucket="layers-{region}"
    )
    assert result.exit_code == 1
    status = {entry["region"]: entry for entry in as_json(result)["regions"]}
    assert status["eu-west-1"]["status"] == "failed" and status["eu-west-1"]["layer_version_arn"] is None
    assert status["eu-west-1"]["step"] == "publish"
    assert all(status[region]["status"] == "ok" for region in ("us-east-1", "ap-southeast-2"))
    message = words(result.stderr)
    assert "publish failed in 1 of 3 regions: eu-west-1 (step publish)" in message
    assert "Succeeded in: us-east-1, ap-southeast-2" in message


@pytest.mark.parametrize(
    ("op", "permission", "extra"),
    [
        ("PutObject", "s3:PutObject", []),
        ("HeadObject", "s3:GetObject", []),
        ("AddLayerVersionPermission", "lambda:AddLayerVersionPermission", ["--public"]),
    ],
)
def test_access_denied_names_the_missing_permission_and_the_identity(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path, op: str, permission: str, extra: list[str]
) -> None:
    make_bucket(aws_server)
    proxy.add(Rule(op=op, fault=access_denied(), times=None))
    result = publish(proxy, small_zip, *extra, "--json")
    assert result.exit_code == 1
    region = as_json(result)["regions"][0]
    # moto's STS answers get_caller_identity with this ARN.
    assert f"arn:aws:sts::123456789012:user/moto lacks {permission}" in region["error"]
    assert f"grant {permission}" in region["hint"]
    assert proxy.count(op) == 1  # AccessDenied is not retried
    assert permission in words(result.stderr)


def test_access_denied_uses_the_identity_that_aws_names(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    make_bucket(aws_server)
    message = (
        "User: arn:aws:iam::111122223333:user/ci is not authorized to perform: lambda:PublishLayerVersion "
        "on resource: arn:aws:lambda:us-east-1:111122223333:layer:x"
    )
    proxy.add(Rule(op="PublishLayerVersion", fault=Fault(403, "AccessDeniedException", message), times=None))
    result = publish(proxy, small_zip, "--json")
    assert result.exit_code == 1
    error = as_json(result)["regions"][0]["error"]
    assert "arn:aws:iam::111122223333:user/ci lacks lambda:PublishLayerVersion" in error
    assert proxy.count("GetCallerIdentity") == 0  # AWS said who it was


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return 1\n")
    return buffer.getvalue()


def test_function_keeps_its_other_layers_and_their_order(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path, tmp_path: Path
) -> None:
    make_bucket(aws_server)
    lam = aws_server.client("lambda")
    content = {"ZipFile": make_zip(tmp_path / "other.zip", {"python/o.py": b""}).read_bytes()}
    first = lam.publish_layer_version(LayerName="first", Content=content)["LayerVersionArn"]
    old = lam.publish_layer_version(LayerName=LAYER, Content=content)["LayerVersionArn"]
    last = lam.publish_layer_version(LayerName="last", Content=content)["LayerVersionArn"]
    role = aws_server.client("iam").create_role(
        RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    for name, layers in (("replaces", [first, old, last]), ("appends", [first, last])):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": _function_zip()},
            Layers=layers,
        )

    result = publish(proxy, small_zip, "--function", "replaces", "--function", "appends", "--json")
    assert result.exit_code == 0, result.stderr
    new = as_json(result)["regions"][0]["layer_version_arn"]
    assert new.endswith(f":layer:{LAYER}:2")

    def layers_of(function: str) -> list[str]:
        return [layer["Arn"] for layer in lam.get_function_configuration(FunctionName=function)["Layers"]]

    assert layers_of("replaces") == [first, new, last]  # the older version replaced in its slot
    assert layers_of("appends") == [first, last, new]
    assert proxy.count("UpdateFunctionConfiguration") == 2

    # Already pointing at the version: nothing to update.
    proxy.clear()
    again = publish(proxy, small_zip, "--function", "replaces")
    assert again.exit_code == 0 and proxy.count("UpdateFunctionConfiguration") == 0
    assert "function replaces already uses layers" in words(again.stderr)


def test_a_function_with_less_memory_than_the_layers_import_needs_is_warned_about(
    aws_server: AwsServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    zip_path = make_zip(tmp_path / "demo-python3.11-x86_64.zip", {"python/x.py": b"X = 1\n"})
    manifest = write_manifest(zip_path)
    peak = 200 * MiB  # what the build measured when it verified the layer
    manifest["verification"] = {"peak_rss_bytes": peak}
    zip_path.with_name(zip_path.stem + ".manifest.json").write_text(json.dumps(manifest))
    wanted = recommended_memory_mb(peak)
    make_bucket(aws_server)
    lam = aws_server.client("lambda")
    role = aws_server.client("iam").create_role(
        RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    for name, memory in (("small", 128), ("roomy", wanted)):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": _function_zip()},
            MemorySize=memory,
        )

    result = publish(proxy, zip_path, "--function", "small", "--function", "roomy", "--json")
    assert result.exit_code == 0, result.stderr
    region = as_json(result)["regions"][0]
    assert {f["function"]: f["memory_mb"] for f in region["functions"]} == {"small": 128, "roomy": wanted}
    (warning,) = region["warnings"]
    assert warning.startswith("function small has 128 MB of memory, below what this layer needs")
    assert f"--function-name small --memory-size {wanted}" in warning
    said = words(result.stderr)
    assert "warning: us-east-1: function small has 128 MB" in said and "function roomy has" not in said


def test_grants_use_once_per_principal(aws_server: AwsServer, proxy: FaultProxy, small_zip: Path) -> None:
    make_bucket(aws_server)
    args = ("--public", "--principal", "210987654321", "--json")
    grants = as_json(publish(proxy, small_zip, *args))["regions"][0]["grants"]
    assert [(g["statement_id"], g["added"]) for g in grants] == [
        ("layerforge-public", True),
        ("layerforge-210987654321", True),
    ]
    policy = json.loads(
        aws_server.client("lambda").get_layer_version_policy(LayerName=LAYER, VersionNumber=1)["Policy"]
    )
    assert {statement["Sid"] for statement in policy["Statement"]} == {
        "layerforge-public",
        "layerforge-210987654321",
    }
    proxy.clear()
    again = as_json(publish(proxy, small_zip, *args))["regions"][0]["grants"]
    assert [g["added"] for g in again] == [False, False]
    assert proxy.count("AddLayerVersionPermission") == 0


def test_no_secret_in_any_output(aws_server: AwsServer, proxy: FaultProxy, small_zip: Path) -> None:
    make_bucket(aws_server)
    outputs = [publish(proxy, small_zip), publish(proxy, small_zip, "--json")]
    # A server that echoes the request's signature (and the access key id in it) into its error.
    leaky = Fault(400, "InvalidRequest", "bad request", echo_authorization=True)
    proxy.add(Rule(op="ListLayerVersions", fault=leaky, times=None))
    failed = [publish(proxy, small_zip, "--json"), publish(proxy, small_zip, "--layer-name", "other")]
    assert all(result.exit_code == 1 for result in failed)
    assert "<redacted>" in failed[0].stdout  # the echo did happen, and was scrubbed
    for result in outputs + failed:
        for text in (result.stdout, result.stderr):
            assert FAKE_SECRET_KEY not in text
            assert FAKE_ACCESS_KEY not in text
            assert "Signature=" not in text or "Signature=<redacted>" in text


def test_without_a_manifest_the_layer_name_runtime_and_arch_are_required(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    bare = make_zip(tmp_path / "bare.zip", {"python/x.py": b""})
    result = publish(proxy, bare)
    assert result.exit_code == 2
    assert "--layer-name, --runtime, --arch must be given" in words(result.stderr)
    assert proxy.log == []


def test_a_manifest_of_another_zip_is_refused(proxy: FaultProxy, small_zip: Path, tmp_path: Path) -> None:
    other = make_zip(tmp_path / "other.zip", {"python/y.py": b"Y = 2\n"})
    result = publish(proxy, other, "--manifest", str(small_zip.with_name(small_zip.stem + ".manifest.json")))
    assert result.exit_code == 2
    assert "describes a zip with sha256" in words(result.stderr)


def test_many_regions_need_a_bucket_per_region(proxy: FaultProxy, small_zip: Path) -> None:
    result = publish(proxy, small_zip, "--region", "us-east-1", "--region", "eu-west-1")
    assert result.exit_code == 2
    assert "{region}" in words(result.stderr)


def test_the_sbom_goes_beside_the_zip_under_the_same_prefix_and_the_record_names_its_key(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    from layerforge.sbom.from_zip import sbom_for_zip

    sbom = small_zip.with_name(small_zip.stem + ".cdx.json")
    sbom.write_text(sbom_for_zip(small_zip).document)
    manifest_path = small_zip.with_name(small_zip.stem + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest | {"sbom": sbom.name}))
    make_bucket(aws_server)
    result = publish(proxy, small_zip, "--json")
    assert result.exit_code == 0, result.stderr
    payload = as_json(result)
    digest = hashlib.sha256(small_zip.read_bytes()).hexdigest()
    assert payload["sbom_key"] == f"layerforge/{LAYER}/{digest}.cdx.json"
    stored = aws_server.client("s3").get_object(Bucket=BUCKET, Key=payload["sbom_key"])
    assert stored["Body"].read() == sbom.read_bytes()
    assert stored["ContentType"] == "application/vnd.cyclonedx+json"
    record = json.loads(small_zip.with_name(small_zip.stem + ".publish.json").read_text())
    assert record["sbom_key"] == payload["sbom_key"]

    proxy.clear()
    assert publish(proxy, small_zip).exit_code == 0
    assert proxy.count("PutObject") == 0, "an SBOM already there is not sent again"

    sbom.unlink()
    refused = publish(proxy, small_zip)
    assert refused.exit_code == 2 and "names the SBOM" in words(refused.stderr)


def test_without_an_sbom_the_record_says_none(
    aws_server: AwsServer, proxy: FaultProxy, small_zip: Path
) -> None:
    make_bucket(aws_server)
    result = publish(proxy, small_zip, "--json")
    assert result.exit_code == 0, result.stderr
    assert as_json(result)["sbom_key"] is None
