"""No secret reaches the terminal, a log, an error or `--json` output, even with debug output on.

Every command runs as a real process with fake AWS credentials in its environment (access key, secret
key and session token), `LAYERFORGE_DEBUG=1`, and a failure to report. The failures are chosen to put
secrets in harm's way: an index URL with a token in it, a lock whose wheel URL carries credentials and
a presigned query, an AWS endpoint that echoes every header it was sent (Authorization and
X-Amz-Security-Token included) into its error message, and a layer Location that is a presigned S3 URL
which then fails. All of stdout and stderr, and every file the command wrote, is searched for each
secret, also with all whitespace removed (so that a wrapped line cannot hide one).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from layerforge.resolve.lock import resolve
from layerforge.target import Target
from tests.support.aws import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, AwsServer
from tests.support.faultproxy import Fault, Rule, error_body, running
from tests.support.index import LocalIndex

SESSION_TOKEN = "FwoGZXIvYXdzEFAKEsessionTOKENlayerforge0123456789abcdef"
INDEX_TOKEN = "pypi-AgEIcHlwaS5vcmcFAKEindexTOKEN"
INDEX_USER = "deploy-bot"
SIGNATURE = "d3adb33fd3adb33fd3adb33fd3adb33fd3adb33fd3adb33fd3adb33fd3adb33f"
# A presigned URL's or a signed request's credentials, with a value that is not a redaction mark.
SIGNED_VALUE = re.compile(
    r"(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId)=(?!<)[^&\s'\",]{6,}"
)
LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:secretive:1"


def secrets() -> list[str]:
    return [FAKE_ACCESS_KEY, FAKE_SECRET_KEY, SESSION_TOKEN, INDEX_TOKEN, SIGNATURE]


@dataclass(frozen=True)
class Run:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    files: dict[str, str]


def assert_no_secret(run: Run, *extra: str) -> None:
    texts = {"stdout": run.stdout, "stderr": run.stderr, **run.files}
    for where, text in texts.items():
        squeezed = re.sub(r"\s+", "", text)
        for secret in [*secrets(), *extra]:
            assert secret not in text and secret not in squeezed, f"{secret!r} leaked in {where}:\n{text}"
        signed = SIGNED_VALUE.search(text)
        assert signed is None, f"a signature or presigned URL ({signed.group(0)}) leaked in {where}:\n{text}"
        assert "Traceback" not in text, f"a traceback in {where}:\n{text}"


@pytest.fixture()
def secret_env(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of every command here: fake AWS credentials with a session token, debug on."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "LAYERFORGE_"))}
    env["LAYERFORGE_DEBUG"] = "1"
    return env


@pytest.fixture()
def run_cli(secret_env: dict[str, str], tmp_path: Path) -> Callable[..., Run]:
    def run(*args: str, expect: int) -> Run:
        command = [sys.executable, "-m", "layerforge", *args]
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path, env=secret_env
        )
        files = {
            str(path): path.read_text("utf-8", "replace")
            for path in tmp_path.rglob("*")
            if path.is_file() and path.suffix in (".json", ".txt", ".log", ".html", ".md")
        }
        result = Run(command, completed.returncode, completed.stdout, completed.stderr, files)
        assert completed.returncode == expect, f"{command}\n{completed.stdout}\n{completed.stderr}"
        return result

    return run


# ---- an AWS endpoint that leaks everything it is sent ---------------------------------------------------

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/(?P<service>[^/]+)/aws4_request")
_GET_LAYER_VERSION = re.compile(r"^/2018-10-31/layers/[^/]+/versions/\d+$")


class _LeakyHandler(BaseHTTPRequestHandler):
    server: LeakyEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if self.server.location is not None and self.command == "GET" and _GET_LAYER_VERSION.match(path):
            answer = {
                "LayerVersionArn": LAYER_ARN,
                "Version": 1,
                "Content": {"Location": self.server.location, "CodeSize": 123_456},
            }
            self._send(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())
            return
        authorization = self.headers.get("Authorization", "")
        self.server.signatures += re.findall(r"Signature=([0-9a-f]{64})", authorization)
        scope = _SCOPE.search(authorization)
        service = scope["service"] if scope else "s3"
        everything = (
            f"{self.command} {self.path} {dict(self.headers.items())} {body.decode('utf-8', 'replace')}"
        )
        headers, payload = error_body(service, Fault(403, "AccessDenied", ""), f"denied: {everything}")
        self._send(403, headers, payload)

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class LeakyEndpoint(ThreadingHTTPServer):
    """Answers every AWS call with an error quoting all it received; optionally, GetLayerVersion with a
    Location (a presigned URL back to itself, which then fails the same way)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LeakyHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.location: str | None = None
        self.signatures: list[str] = []  # of every signed request it received


@pytest.fixture()
def leaky(secret_env: dict[str, str]) -> Iterator[LeakyEndpoint]:
    endpoint = LeakyEndpoint()
    threading.Thread(target=endpoint.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield endpoint
    endpoint.shutdown()
    endpoint.server_close()


def presigned_url(endpoint: str) -> str:
    """A real presigned GET, signed with the fake credentials and session token of the environment."""
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_ACCESS_KEY,
        aws_secret_access_key=FAKE_SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        config=Config(signature_version="s3v4"),
    )
    url: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "layers", "Key": "l.zip"}, ExpiresIn=600
    )
    return url


# ---- size-report --layer-arn ----------------------------------------------------------------------------


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_size_report_with_a_failing_endpoint_behind_moto_leaks_nothing(
    json_mode: bool, run_cli: Callable[..., Run], aws_server: AwsServer, tmp_path: Path
) -> None:
    leaky = Fault(500, "ServiceException", "internal failure", echo_authorization=True)
    with running(aws_server.endpoint_url) as proxy:
        proxy.add(Rule(fault=leaky, op="GetLayerVersion", times=None))
        run = run_cli(
            "size-report",
            "--layer-arn",
            LAYER_ARN,
            "--endpoint-url",
            proxy.url,
            *(["--json"] if json_mode else []),
            expect=1,
        )
        assert proxy.count("GetLayerVersion") >= 1  # the call was made, signed, and refused
    assert "GetLayerVersion" in run.stderr and LAYER_ARN in run.stderr
    if json_mode:
        assert json.loads(run.stdout)["exit_code"] == 1
    assert_no_secret(run)


def test_size_report_with_an_endpoint_that_echoes_every_header_leaks_nothing(
    run_cli: Callable[..., Run], leaky: LeakyEndpoint
) -> None:
    run = run_cli("size-report", "--layer-arn", LAYER_ARN, "--endpoint-url", leaky.url, "--json", expect=1)
    assert json.loads(run.stdout)["exit_code"] == 1
    assert leaky.signatures
    assert_no_secret(run, *leaky.signatures)


def test_size_report_with_a_presigned_location_that_fails_leaks_nothing(
    run_cli: Callable[..., Run], leaky: LeakyEndpoint
) -> None:
    leaky.location = presigned_url(leaky.url)
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", leaky.location)
    assert signature and SESSION_TOKEN.split("TOKEN", maxsplit=1)[0] in leaky.location.replace("%2F", "/")
    run = run_cli("size-report", "--layer-arn", LAYER_ARN, "--endpoint-url", leaky.url, expect=1)
    assert f"{leaky.url}/layers/l.zip" in run.stderr  # the URL is named, without its query
    assert_no_secret(run, signature.group(1))


# ---- doctor ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_doctor_with_an_endpoint_that_echoes_every_header_leaks_nothing(
    json_mode: bool, run_cli: Callable[..., Run], leaky: LeakyEndpoint, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    run = run_cli(
        "doctor",
        "--endpoint-url",
        leaky.url,
        "--region",
        "us-east-1",
        "--bucket",
        "layers-{region}",
        "--repo",
        str(repo),
        *(["--json"] if json_mode else []),
        expect=1,
    )
    assert "aws" in run.stdout + run.stderr and leaky.signatures
    assert_no_secret(run, *leaky.signatures)


def test_doctor_against_moto_with_a_missing_bucket_leaks_nothing(
    run_cli: Callable[..., Run], aws_server: AwsServer, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    run = run_cli(
        "doctor",
        "--endpoint-url",
        aws_server.endpoint_url,
        "--region",
        "us-east-1",
        "--bucket",
        "no-such-bucket",
        "--repo",
        str(repo),
        "--json",
        expect=1,
    )
    assert_no_secret(run)


# ---- build ----------------------------------------------------------------------------------------------


@pytest.fixture()
def index_with_token(local_index: LocalIndex) -> tuple[LocalIndex, str]:
    local_index.add_wheel("purelib", "1.0", files={"purelib/__init__.py": "x = 1\n"})
    local_index.add_wheel("helper", "1.0", files={"helper/__init__.py": "y = 1\n"})
    return local_index, local_index.url.replace("http://", f"http://{INDEX_USER}:{INDEX_TOKEN}@")


def recipe(tmp_path: Path, *requirements: str) -> Path:
    path = tmp_path / "secretive.toml"
    path.write_text(
        f'name = "secretive"\nrequirements = {json.dumps(list(requirements))}\n', encoding="utf-8"
    )
    return path


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_a_build_from_an_index_url_with_a_token_keeps_it_out_of_output_lock_and_manifest(
    json_mode: bool, run_cli: Callable[..., Run], index_with_token: tuple[LocalIndex, str], tmp_path: Path
) -> None:
    index, url = index_with_token
    run = run_cli(
        "build",
        str(recipe(tmp_path, "purelib")),
        "--index-url",
        url,
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-verify",
        *(["--json"] if json_mode else []),
        expect=0,
    )
    lock = json.loads((tmp_path / "out" / "secretive-python3.11-x86_64.lock.json").read_text())
    assert lock["index_url"] == index.url  # the index is named, without the credentials
    assert_no_secret(run, INDEX_USER)


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_a_failing_build_from_an_index_url_with_a_token_leaks_nothing(
    json_mode: bool, run_cli: Callable[..., Run], index_with_token: tuple[LocalIndex, str], tmp_path: Path
) -> None:
    index, url = index_with_token
    index.serve_metadata = True  # pip reads metadata only; the wheel itself fails for layerforge
    index.fail("helper-1.0-py3-none-any.whl", 404)
    run = run_cli(
        "build",
        str(recipe(tmp_path, "purelib", "helper")),
        "--index-url",
        url,
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-verify",
        *(["--json"] if json_mode else []),
        expect=1,
    )
    assert "helper-1.0-py3-none-any.whl" in run.stderr and "HTTP 404" in run.stderr
    assert_no_secret(run, INDEX_USER)


def test_a_build_that_cannot_resolve_from_an_index_url_with_a_token_leaks_nothing(
    run_cli: Callable[..., Run], index_with_token: tuple[LocalIndex, str], tmp_path: Path
) -> None:
    index, url = index_with_token
    index.fail("/simple/purelib/", 403)
    run = run_cli(
        "build",
        str(recipe(tmp_path, "purelib")),
        "--index-url",
        url,
        "--out",
        str(tmp_path / "out"),
        "--json",
        expect=1,
    )
    assert "HTTP 403" in run.stderr and index.url in run.stderr  # an index failure, said as one
    assert_no_secret(run, INDEX_USER)


def test_a_failing_build_from_a_lock_with_credentials_in_its_urls_leaks_nothing(
    run_cli: Callable[..., Run], index_with_token: tuple[LocalIndex, str], tmp_path: Path
) -> None:
    index, _ = index_with_token
    lock = resolve("secretive", ["purelib"], Target("python3.11", "x86_64"), index_url=index.url).as_dict()
    wheel = lock["packages"][0]["wheel"]
    lock["packages"][0]["url"] = (
        index.file_url(wheel).replace("http://", f"http://{INDEX_USER}:{INDEX_TOKEN}@")
        + f"?X-Amz-Credential={FAKE_ACCESS_KEY}&X-Amz-Security-Token={SESSION_TOKEN}"
        + f"&X-Amz-Signature={SIGNATURE}"
    )
    lock["index_url"] = index.url.replace("http://", f"http://{INDEX_USER}:{INDEX_TOKEN}@")
    lock_path = tmp_path / "hand-written.lock.json"
    lock_path.write_text(json.dumps(lock))
    index.fail(wheel, 500)
    run = run_cli(
        "build",
        str(recipe(tmp_path, "purelib")),
        "--lock",
        str(lock_path),
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-verify",
        "--json",
        expect=1,
    )
    assert index.file_url(wheel) in run.stderr and "HTTP 500" in run.stderr
    # The locks hold the wheel URLs the user wrote, as they must to be built again; their index URL is
    # only a label, and loses its credentials on the way.
    copied = json.loads((tmp_path / "out" / "secretive-python3.11-x86_64.lock.json").read_text())
    assert copied["index_url"] == index.url
    files = {k: v for k, v in run.files.items() if not k.endswith(".lock.json")}
    assert_no_secret(Run(run.command, run.returncode, run.stdout, run.stderr, files), INDEX_USER)


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_lock_from_an_index_url_with_a_token_keeps_it_out_of_output_and_the_lock(
    json_mode: bool, run_cli: Callable[..., Run], index_with_token: tuple[LocalIndex, str], tmp_path: Path
) -> None:
    index, url = index_with_token
    run = run_cli(
        "lock",
        str(recipe(tmp_path, "purelib")),
        "--index-url",
        url,
        "--out",
        str(tmp_path / "out"),
        *(["--json"] if json_mode else []),
        expect=0,
    )
    if json_mode:
        assert json.loads(run.stdout)["index_url"] == index.url
    assert_no_secret(run, INDEX_USER)
