"""`layerforge publish FUNCTION.zip`: a function zip's code to Lambda, against moto through the fault proxy.

The zips are written by the real `layerforge package-function` (no requirements, so no index): a zip
and a manifest of kind "function" beside it. The proxy names the Lambda calls it knows (CreateFunction);
the others (GetFunction, UpdateFunctionCode) are found here by method and path.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import WaiterError
from click.testing import CliRunner

from layerforge.aws.publish_function import FunctionSettings, make_function_plan, wait_ready
from layerforge.aws.publish_plan import PublishOptions
from layerforge.cli import main
from layerforge.errors import InputError, PublishError, SizeLimitError
from tests.aws.test_publish import BUCKET, as_json, make_bucket, make_zip, proxy, publish, words  # noqa: F401
from tests.support.aws import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, AwsServer
from tests.support.faultproxy import Fault, FaultProxy, Request, Rule, access_denied

NAME = "demo-fn"
STEM = f"{NAME}-python3.11-x86_64"
ACCOUNT = "123456789012"
SECRET_VALUE = "s3cr3t-env-value-do-not-print"


def package(tmp_path: Path, body: str = "return 1") -> Path:
    """A function zip and its manifest, as `layerforge package-function` writes them."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "app.py").write_text(f"import json\n\n\ndef handler(event, context):\n    {body}\n")
    result = CliRunner().invoke(
        main,
        ["package-function", str(src), "--handler", "app.handler", "--name", NAME,
         "--runtime", "python3.11", "--arch", "x86_64", "--out", str(tmp_path / "out"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return tmp_path / "out" / f"{STEM}.zip"


def code_sha256(zip_path: Path) -> str:
    return base64.b64encode(hashlib.sha256(zip_path.read_bytes()).digest()).decode()


def manifest_of(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.stem + ".manifest.json")


def edit_manifest(zip_path: Path, **changes: Any) -> None:
    path = manifest_of(zip_path)
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def make_role(aws: AwsServer) -> str:
    # moto checks that a function's role exists in IAM, as Lambda checks that it can assume it.
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    created = aws.client("iam").create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(trust))
    role: str = created["Role"]["Arn"]
    return role


def make_layer(aws: AwsServer, tmp_path: Path, name: str = "deps", region: str = "us-east-1") -> str:
    content = {"ZipFile": make_zip(tmp_path / f"{name}.zip", {"python/deps.py": b""}).read_bytes()}
    arn: str = aws.client("lambda", region).publish_layer_version(LayerName=name, Content=content)[
        "LayerVersionArn"
    ]
    return arn


def create_function_directly(aws: AwsServer, role: str, tmp_path: Path) -> None:
    """A function that exists before layerforge sees it, with other code."""
    other = make_zip(tmp_path / "other.zip", {"app.py": b"def handler(event, context):\n    return 0\n"})
    aws.client("lambda").create_function(
        FunctionName=NAME,
        Runtime="python3.11",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": other.read_bytes()},
        Architectures=["x86_64"],
    )


def is_call(method: str, suffix: str) -> Callable[[Request], bool]:
    def matches(request: Request) -> bool:
        return request.service == "lambda" and request.method == method and request.path.endswith(suffix)

    return matches


def calls(proxy: FaultProxy, method: str, suffix: str) -> int:  # noqa: F811
    return sum(1 for seen in proxy.log if seen.method == method and seen.path.endswith(suffix))


def update_code_calls(proxy: FaultProxy) -> int:  # noqa: F811
    return calls(proxy, "PUT", f"/functions/{NAME}/code")


CREATE = ("--create", "--role", f"arn:aws:iam::{ACCOUNT}:role/fn-role")


def test_same_function_zip_twice_uploads_nothing_and_updates_nothing(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_bucket(aws_server)
    create_function_directly(aws_server, make_role(aws_server), tmp_path)
    zip_path = package(tmp_path)

    first = publish(proxy, zip_path, "--json")
    assert first.exit_code == 0, first.stderr
    one = as_json(first)
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert one["zip_kind"] == "function" and one["function_name"] == NAME
    assert one["key"] == f"layerforge/{NAME}/{digest}.zip"
    assert (one["uploaded"], one["uploaded_bytes"]) == (True, zip_path.stat().st_size)
    region = one["regions"][0]
    assert (region["status"], region["updated"], region["created"]) == ("ok", True, False)
    assert region["code_sha256"] == code_sha256(zip_path)
    assert region["function_arn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{NAME}"
    assert update_code_calls(proxy) == 1

    proxy.clear()
    second = publish(proxy, zip_path, "--json")
    assert second.exit_code == 0, second.stderr
    two = as_json(second)
    assert (two["uploaded"], two["uploaded_bytes"]) == (False, 0)
    assert (two["regions"][0]["updated"], two["regions"][0]["error"]) == (False, None)
    assert proxy.count("PutObject") == 0 and update_code_calls(proxy) == 0

    human = words(publish(proxy, zip_path).stderr)
    assert "already there with this sha256: uploaded 0 bytes" in human
    assert "the function already runs this zip, updated nothing" in human
    record = json.loads(zip_path.with_name(f"{STEM}.publish.json").read_text())
    assert record["kind"] == "publish" and record["zip_kind"] == "function"
    assert record["regions"][0]["function_arn"] == region["function_arn"]
    assert record["regions"][0]["code_sha256"] == code_sha256(zip_path)


def test_create_makes_the_function_with_its_handler_runtime_layers_and_settings(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_bucket(aws_server)
    make_role(aws_server)
    layer = make_layer(aws_server, tmp_path)
    zip_path = package(tmp_path)
    args = (*CREATE, "--layer-arn", layer, "--memory", "256", "--timeout", "30")
    env = ("--env", "STAGE=test", "--env", f"TOKEN={SECRET_VALUE}")

    result = publish(proxy, zip_path, *args, *env, "--json")
    assert result.exit_code == 0, result.stderr
    payload = as_json(result)
    region = payload["regions"][0]
    assert (region["created"], region["updated"], region["status"]) == (True, True, "ok")
    assert payload["layers"] == [layer] and payload["handler"] == "app.handler"
    assert payload["environment"] == ["STAGE", "TOKEN"]  # the names, never the values
    assert proxy.count("CreateFunction") == 1

    config = aws_server.client("lambda").get_function_configuration(FunctionName=NAME)
    assert (config["Handler"], config["Runtime"], config["Architectures"]) == (
        "app.handler",
        "python3.11",
        ["x86_64"],
    )
    assert [entry["Arn"] for entry in config["Layers"]] == [layer]
    assert (config["MemorySize"], config["Timeout"]) == (256, 30)
    assert config["Environment"]["Variables"] == {"STAGE": "test", "TOKEN": SECRET_VALUE}
    assert config["Role"] == CREATE[2]
    assert config["CodeSha256"] == code_sha256(zip_path)
    assert f"us-east-1: created function: {region['function_arn']}" in words(result.stderr)

    # Created once: the same command again finds it with this code and does nothing.
    proxy.clear()
    again = publish(proxy, zip_path, *args, *env, "--json")
    assert again.exit_code == 0, again.stderr
    assert as_json(again)["regions"][0]["created"] is False
    assert proxy.count("CreateFunction") == 0 and update_code_calls(proxy) == 0
    record_text = zip_path.with_name(f"{STEM}.publish.json").read_text()
    for text in (result.stdout, result.stderr, again.stdout, again.stderr, record_text):
        assert SECRET_VALUE not in text


def test_a_changed_zip_updates_the_code_sha256(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_bucket(aws_server)
    make_role(aws_server)
    first_zip = package(tmp_path)
    assert publish(proxy, first_zip, *CREATE).exit_code == 0
    first_sha = code_sha256(first_zip)

    changed = package(tmp_path, body="return 2")
    assert code_sha256(changed) != first_sha
    result = publish(proxy, changed, "--publish-version", "--json")
    assert result.exit_code == 0, result.stderr
    region = as_json(result)["regions"][0]
    assert (region["updated"], region["created"]) == (True, False)
    assert region["code_sha256"] == code_sha256(changed)
    assert region["version"] == "1"  # --publish-version: the code as a numbered version
    config = aws_server.client("lambda").get_function_configuration(FunctionName=NAME)
    assert config["CodeSha256"] == code_sha256(changed)
    assert as_json(result)["key"].endswith(f"{hashlib.sha256(changed.read_bytes()).hexdigest()}.zip")


def test_a_missing_function_without_create_fails_naming_the_region_and_the_step(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_bucket(aws_server)
    zip_path = package(tmp_path)
    result = publish(proxy, zip_path, "--json")
    assert result.exit_code == 1
    region = as_json(result)["regions"][0]
    assert (region["status"], region["step"], region["function_arn"]) == ("failed", "lookup", None)
    assert f"function {NAME} does not exist in us-east-1" in region["error"]
    assert "--create --role ARN" in region["hint"]
    message = words(result.stderr)
    assert "us-east-1 (step lookup)" in message and "Succeeded in: none" in message
    assert proxy.count("CreateFunction") == 0


@pytest.mark.parametrize(
    ("rule", "step", "expected", "extra"),
    [
        (
            Rule(fault=access_denied(), when=is_call("PUT", f"/functions/{NAME}/code"), times=None),
            "update",
            "lacks lambda:UpdateFunctionCode (needed by UpdateFunctionCode)",
            (),
        ),
        (
            Rule(fault=access_denied(), when=is_call("GET", f"/functions/{NAME}"), times=None),
            "lookup",
            "lacks lambda:GetFunction (needed by GetFunction)",
            (),
        ),
        (
            Rule(op="CreateFunction", fault=access_denied(), times=None),
            "create",
            "lacks lambda:CreateFunction or iam:PassRole on the function's role",
            CREATE,
        ),
        (
            Rule(
                op="CreateFunction",
                fault=Fault(
                    403,
                    "AccessDeniedException",
                    f"User: arn:aws:iam::{ACCOUNT}:user/ci is not authorized to perform: iam:PassRole "
                    f"on resource: arn:aws:iam::{ACCOUNT}:role/fn-role",
                ),
                times=None,
            ),
            "create",
            f"arn:aws:iam::{ACCOUNT}:user/ci lacks iam:PassRole (needed by CreateFunction)",
            CREATE,
        ),
    ],
    ids=["UpdateFunctionCode", "GetFunction", "CreateFunction", "PassRole"],
)
def test_access_denied_names_the_missing_permission(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
    rule: Rule,
    step: str,
    expected: str,
    extra: tuple[str, ...],
) -> None:
    make_bucket(aws_server)
    role = make_role(aws_server)
    if not extra:
        create_function_directly(aws_server, role, tmp_path)
    zip_path = package(tmp_path)
    proxy.add(rule)
    result = publish(proxy, zip_path, *extra, "--json")
    assert result.exit_code == 1
    region = as_json(result)["regions"][0]
    assert (region["status"], region["step"]) == ("failed", step)
    assert expected in region["error"]
    permission = expected.split("lacks ", 1)[1].split(" (needed", 1)[0].replace(" or ", " and ")
    assert f"grant {permission}" in region["hint"]
    assert f"us-east-1 (step {step})" in words(result.stderr)
    assert rule.fired == 1  # AccessDenied is not retried


def test_direct_sends_the_zip_in_the_request(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_role(aws_server)
    zip_path = package(tmp_path)
    result = publish(proxy, zip_path, *CREATE, "--direct", "--json", bucket=None)
    assert result.exit_code == 0, result.stderr
    payload = as_json(result)
    assert (payload["direct"], payload["bucket"], payload["key"], payload["uploaded"]) == (
        True,
        None,
        None,
        False,
    )
    assert payload["regions"][0]["code_sha256"] == code_sha256(zip_path)
    assert proxy.count("PutObject") == 0 and proxy.count("CreateFunction") == 1


def test_direct_refuses_a_function_zip_over_the_request_limit(
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.zip"
    with big.open("wb") as stream:
        stream.truncate(51 * 1024 * 1024)  # only its size and hash matter before the upload
    result = publish(proxy, big, "--kind", "function", "--function-name", "big", "--direct", bucket=None)
    assert result.exit_code == 3
    message = words(result.stderr)
    assert "--direct cannot publish this zip" in message and "70,167,211-byte request limit" in message
    assert proxy.log == []


def test_function_and_layers_over_the_unzipped_limit_are_refused_before_any_upload(
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    zip_path = package(tmp_path)
    layer = {"label": "big", "origin": "zip", "location": "big.zip", "unzipped_bytes": 200_000_000}
    edit_manifest(zip_path, unzipped_bytes=70_000_000, layers=[layer])
    result = publish(proxy, zip_path, "--json")
    assert result.exit_code == 3
    message = words(result.stderr)
    assert "unzip to 270,000,000 bytes (function 70,000,000, layers 200,000,000)" in message
    assert "over Lambda's 262,144,000-byte limit" in message
    assert as_json(result)["exit_code"] == 3
    assert proxy.log == []


def test_no_secret_in_any_output(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_bucket(aws_server)
    make_role(aws_server)
    zip_path = package(tmp_path)
    env = ("--env", f"TOKEN={SECRET_VALUE}")
    outputs = [publish(proxy, zip_path, *CREATE, *env), publish(proxy, zip_path, *CREATE, *env, "--json")]
    # A server that echoes the request's signature (and the access key id in it) into its error.
    leaky = Fault(400, "InvalidRequest", "bad request", echo_authorization=True)
    proxy.add(Rule(fault=leaky, when=is_call("GET", f"/functions/{NAME}"), times=None))
    failed = [publish(proxy, zip_path, *CREATE, *env, "--json"), publish(proxy, zip_path)]
    assert all(result.exit_code == 1 for result in failed)
    assert "<redacted>" in failed[0].stdout  # the echo did happen, and was scrubbed
    record = zip_path.with_name(f"{STEM}.publish.json").read_text()
    texts = [text for result in outputs + failed for text in (result.stdout, result.stderr)]
    for text in [*texts, record]:
        assert FAKE_SECRET_KEY not in text
        assert FAKE_ACCESS_KEY not in text
        assert SECRET_VALUE not in text
        assert "Signature=" not in text or "Signature=<redacted>" in text


def test_two_regions_take_one_layer_arn_per_region(
    aws_server: AwsServer,
    proxy: FaultProxy,  # noqa: F811
    tmp_path: Path,
) -> None:
    regions = ("us-east-1", "eu-west-1")
    for region in regions:
        make_bucket(aws_server, f"fn-{region}", region)
        make_layer(aws_server, tmp_path, region=region)
    make_role(aws_server)
    zip_path = package(tmp_path)
    layer = f"arn:aws:lambda:{{region}}:{ACCOUNT}:layer:deps:1"
    region_args = [arg for region in regions for arg in ("--region", region)]
    result = publish(
        proxy, zip_path, *region_args, *CREATE, "--layer-arn", layer, "--json", bucket="fn-{region}"
    )
    assert result.exit_code == 0, result.stderr
    arns = {entry["region"]: entry["function_arn"] for entry in as_json(result)["regions"]}
    assert arns == {region: f"arn:aws:lambda:{region}:{ACCOUNT}:function:{NAME}" for region in regions}
    for region in regions:
        config = aws_server.client("lambda", region).get_function_configuration(FunctionName=NAME)
        assert [entry["Arn"] for entry in config["Layers"]] == [layer.replace("{region}", region)]
    assert proxy.count("PutObject") == 2  # one bucket per region


# --------------------------------------------------------------------------------------------------
# The plan: input errors before any request (no server needed)


def plan_for(zip_path: Path, settings: FunctionSettings | None = None, **options: Any) -> Any:
    values: dict[str, Any] = {"zip_path": zip_path, "regions": ("us-east-1",), "bucket": BUCKET} | options
    return make_function_plan(PublishOptions(**values), settings or FunctionSettings())


def test_the_plan_takes_name_runtime_arch_and_handler_from_the_manifest(tmp_path: Path) -> None:
    zip_path = package(tmp_path)
    plan = plan_for(zip_path, FunctionSettings(create=True, role=CREATE[2]))
    assert (plan.name, plan.runtime, plan.architecture) == (NAME, "python3.11", "x86_64")
    assert plan.create.handler == "app.handler" and plan.create.layer_arns == ()
    assert plan_for(zip_path, FunctionSettings(function_name="other")).name == "other"


def test_create_defaults_to_the_published_layers_of_the_manifest(tmp_path: Path) -> None:
    zip_path = package(tmp_path)
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:deps:3"
    layers = [
        {"label": "deps:3", "origin": "layer_arn", "location": arn, "unzipped_bytes": 10},
        {"label": "local.zip", "origin": "zip", "location": "/x/local.zip", "unzipped_bytes": 10},
    ]
    edit_manifest(zip_path, layers=layers)
    plan = plan_for(zip_path, FunctionSettings(create=True, role=CREATE[2]))
    assert plan.create.layer_arns == (arn,)
    assert any("local.zip" in warning and "--layer-arn" in warning for warning in plan.warnings)


@pytest.mark.parametrize(
    ("settings", "options", "message"),
    [
        (FunctionSettings(create=True), {}, "--create needs --role"),
        (FunctionSettings(create=True, role="my-role"), {}, "is not an IAM role ARN"),
        (FunctionSettings(memory=512), {}, "--memory is used only to create a function"),
        (FunctionSettings(), {"public": True}, "--public applies to a layer zip"),
        (FunctionSettings(function_name="no spaces"), {}, "function name 'no spaces' is not valid"),
        (FunctionSettings(), {"runtimes": ("python3.11", "python3.12")}, "takes one --runtime"),
        (
            FunctionSettings(
                create=True, role=CREATE[2], layer_arns=("arn:aws:lambda:eu-west-1:1:layer:x:1",)
            ),
            {},
            "is not a layer version ARN",
        ),
        (
            FunctionSettings(
                create=True, role=CREATE[2], layer_arns=(f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:x:1",)
            ),
            {},
            "is in eu-west-1, but the function is published to us-east-1",
        ),
        (FunctionSettings(create=True, role=CREATE[2], environment=("1BAD=x",)), {}, "1BAD=... is not"),
    ],
)
def test_bad_input_is_refused_by_the_plan(
    tmp_path: Path, settings: FunctionSettings, options: dict[str, Any], message: str
) -> None:
    zip_path = package(tmp_path)
    with pytest.raises(InputError) as raised:
        plan_for(zip_path, settings, **options)
    assert message in str(raised.value)


def test_an_env_value_without_a_key_is_refused_without_quoting_it(tmp_path: Path) -> None:
    zip_path = package(tmp_path)
    with pytest.raises(InputError) as raised:
        plan_for(zip_path, FunctionSettings(create=True, role=CREATE[2], environment=(SECRET_VALUE,)))
    assert SECRET_VALUE not in str(raised.value)
    assert SECRET_VALUE not in repr(FunctionSettings(environment=(f"K={SECRET_VALUE}",)))


def test_the_combined_size_check_counts_the_manifest_layers(tmp_path: Path) -> None:
    zip_path = package(tmp_path)
    edit_manifest(zip_path, unzipped_bytes=262_144_000, layers=[])
    plan_for(zip_path)  # exactly at the limit is allowed
    edit_manifest(zip_path, layers=[{"origin": "zip", "label": "x", "unzipped_bytes": 1}])
    with pytest.raises(SizeLimitError):
        plan_for(zip_path)


def test_function_flags_with_a_layer_zip_are_refused(proxy: FaultProxy, tmp_path: Path) -> None:  # noqa: F811
    layer = make_zip(tmp_path / "layer.zip", {"python/x.py": b""})
    result = publish(proxy, layer, "--layer-name", "x", "--runtime", "python3.11", "--arch", "x86_64",
                     "--create", "--role", CREATE[2])  # fmt: skip
    assert result.exit_code == 2
    assert "--create, --role apply to a function zip" in words(result.stderr)
    assert proxy.log == []


def test_a_function_manifest_is_not_taken_as_a_layer(proxy: FaultProxy, tmp_path: Path) -> None:  # noqa: F811
    zip_path = package(tmp_path)
    result = publish(proxy, zip_path, "--kind", "layer")
    assert result.exit_code == 2
    assert "is kind 'function'" in words(result.stderr)


def test_a_failed_update_is_reported_with_lambdas_reason() -> None:
    # moto finishes every update at once; Lambda may fail one after accepting it.
    last = {"Configuration": {"LastUpdateStatus": "Failed", "LastUpdateStatusReason": "layer too big"}}

    class Waiter:
        def wait(self, **_: Any) -> None:
            raise WaiterError("FunctionUpdatedV2", "Waiter encountered a terminal failure state", last)

    class Client:
        def get_waiter(self, name: str) -> Waiter:
            assert name == "function_updated_v2"
            return Waiter()

    with pytest.raises(PublishError, match=f"function {NAME} did not become ready: layer too big"):
        wait_ready(Client(), NAME, created=False)
