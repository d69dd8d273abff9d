"""`layerforge doctor` against real things: git repositories made here, zips with real PE and Mach-O
headers, a moto server on 127.0.0.1 (behind the fault proxy to answer 403s), real interpreters.

The only mock is FakeDockerClient (from tests/verify/test_container.py), for the engine these machines lack.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from layerforge.doctor.aws import PROBE_PREFIX, check_aws
from layerforge.doctor.findings import DoctorOptions, Finding
from layerforge.doctor.host import check_docker, check_host, check_interpreter, check_tools
from layerforge.doctor.repository import check_dist, check_line_endings, line_kind
from layerforge.runners.docker import DockerError
from layerforge.runners.interpreters import find_interpreter
from layerforge.target import Target, host_machine
from tests.support.aws import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, AwsServer
from tests.support.faultproxy import Fault, FaultProxy, Rule, access_denied, running
from tests.verify.test_container import FakeDockerClient

TARGET = Target("python3.11", "x86_64")
BUCKET = "doctor-bucket"


# --------------------------------------------------------------------------------------------------
# Helpers


def run_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerforge", "doctor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Doctor Test", "-c", "user.email=doctor@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def make_repo(root: Path, files: Mapping[str, bytes]) -> Path:
    """A real git repository holding exactly these bytes (no conversion on add)."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    git(root, "config", "core.autocrlf", "false")
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "files as a Windows editor left them")
    return root


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own Git settings (a global core.autocrlf, say) must not change what tests see."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture()
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """No AWS credentials anywhere: no variables, no files, no instance role to ask."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def by_check(findings: list[dict[str, Any]] | tuple[Finding, ...], check: str) -> list[Any]:
    return [f for f in findings if (f["check"] if isinstance(f, dict) else f.check) == check]


def pe_bytes() -> bytes:
    """A minimal Windows PE header: "MZ", e_lfanew at 0x3C pointing to "PE\\0\\0"."""
    head = bytearray(b"MZ" + b"\0" * 0x7E)
    struct.pack_into("<I", head, 0x3C, 0x40)
    head[0x40:0x44] = b"PE\0\0"
    return bytes(head) + b"\0" * 64


MACHO = b"\xcf\xfa\xed\xfe" + b"\0" * 60  # a 64-bit little-endian Mach-O header's magic


def make_zip(path: Path, members: Mapping[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


# --------------------------------------------------------------------------------------------------
# The command, end to end


WINDOWS_REPO = {
    "build.sh": b"#!/bin/bash\r\nset -e\r\necho building\r\n",
    "scripts/deploy": b"#!/usr/bin/env bash\r\necho deploying\r\n",
    "scripts/fine.sh": b"#!/bin/sh\necho fine\n",
    "requirements.txt": b"numpy==1.26.4\r\npandas==2.2.2\r\n",
    "recipes/model.toml": b'name = "model"\r\nrequirements = ["numpy"]\r\n',
    "app/handler.py": b"def handler(event, context):\r\n    return 1\r\n",  # CRLF in Python is harmless
}


def test_crlf_scripts_no_gitattributes_and_no_credentials_each_reported_with_a_fix_exit_1(
    tmp_path: Path, no_aws: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo", WINDOWS_REPO)
    completed = run_cli("--json", cwd=repo, env=no_aws)  # the current folder is the repository
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    report = json.loads(completed.stdout)
    findings = report["findings"]
    assert report["ok"] is False and report["exit_code"] == 1

    [scripts] = [f for f in by_check(findings, "line-endings") if f["severity"] == "error"]
    assert scripts["paths"] == ["build.sh", "scripts/deploy"]
    assert "bad interpreter" in scripts["summary"]
    assert "sed -i 's/\\r$//' build.sh" in scripts["fix"] and "*.sh text eol=lf" in scripts["fix"]
    assert "git add --renormalize ." in scripts["fix"]
    warnings = {tuple(f["paths"]) for f in by_check(findings, "line-endings") if f["severity"] == "warning"}
    assert warnings == {("requirements.txt",), ("recipes/model.toml",)}

    [attributes] = by_check(findings, "gitattributes")
    assert attributes["severity"] == "warning" and "no .gitattributes" in attributes["summary"]
    assert "* text=auto eol=lf" in attributes["fix"]

    [aws] = by_check(findings, "aws")
    assert aws["severity"] == "warning" and "no AWS credentials found" in aws["summary"]
    assert "aws configure" in aws["fix"] and "aws sso login" in aws["fix"]

    # The same, for a person: each finding and its fix on stderr, and only JSON on stdout.
    assert "fix:" in completed.stderr and "problems to fix" in completed.stderr


def test_with_a_bucket_missing_credentials_are_an_error(tmp_path: Path, no_aws: dict[str, str]) -> None:
    options = DoctorOptions(target=TARGET, repo=tmp_path, bucket=BUCKET)
    [finding] = check_aws(options)
    assert finding.severity == "error" and "no AWS credentials" in finding.summary


def test_human_output_and_quiet(tmp_path: Path, no_aws: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", WINDOWS_REPO)
    loud = run_cli("--repo", str(repo), cwd=tmp_path, env=no_aws)
    assert loud.returncode == 1 and loud.stdout == ""
    assert " error " in loud.stderr and "line-endings" in loud.stderr and "ok" in loud.stderr
    quiet = run_cli("--repo", str(repo), "--quiet", cwd=tmp_path, env=no_aws)
    assert quiet.returncode == 1
    assert "  ok  " not in quiet.stderr and "line-endings" in quiet.stderr


# --------------------------------------------------------------------------------------------------
# AWS against the moto server


CLEAN_REPO = {
    ".gitattributes": b"* text=auto eol=lf\n*.sh text eol=lf\n",
    "build.sh": b"#!/bin/bash\necho building\n",
}


def test_against_moto_whoami_and_bucket_probe_ok(tmp_path: Path, aws_server: AwsServer) -> None:
    aws_server.client("s3").create_bucket(Bucket=BUCKET)
    repo = make_repo(tmp_path / "repo", CLEAN_REPO)
    completed = run_cli(
        "--repo", str(repo), "--bucket", BUCKET, "--region", "us-east-1",
        "--endpoint-url", aws_server.endpoint_url, "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    findings = json.loads(completed.stdout)["findings"]
    [aws] = by_check(findings, "aws")
    assert aws["severity"] == "ok"
    assert "signed in as arn:aws:sts::123456789012:user/moto (account 123456789012" in aws["summary"]
    [s3] = by_check(findings, "s3")
    assert s3["severity"] == "ok" and f"s3://{BUCKET}" in s3["summary"]
    lambda_findings = by_check(findings, "lambda")
    assert lambda_findings[0]["severity"] == "ok"  # ListLayerVersions answered
    # moto has no IAM policy simulator: publishing cannot be checked without publishing, and it says so.
    assert lambda_findings[1]["severity"] == "info"
    assert "lambda:PublishLayerVersion" in lambda_findings[1]["fix"]
    # The probe object is gone, and no secret reached either stream.
    listed = aws_server.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=PROBE_PREFIX)
    assert listed.get("KeyCount", 0) == 0
    for stream in (completed.stdout, completed.stderr):
        assert FAKE_SECRET_KEY not in stream and FAKE_ACCESS_KEY not in stream


def test_a_bucket_that_does_not_exist(tmp_path: Path, aws_server: AwsServer) -> None:
    options = DoctorOptions(
        target=TARGET,
        repo=tmp_path,
        bucket="no-such-bucket",
        region="us-east-1",
        endpoint_url=aws_server.endpoint_url,
    )
    [s3] = by_check(tuple(check_aws(options)), "s3")
    assert s3.severity == "error" and "does not exist" in s3.summary
    assert "aws s3 mb s3://no-such-bucket --region us-east-1" in s3.fix


@pytest.fixture()
def proxy(aws_server: AwsServer) -> Iterator[FaultProxy]:
    aws_server.client("s3").create_bucket(Bucket=BUCKET)
    with running(aws_server.endpoint_url) as fault_proxy:
        yield fault_proxy


@pytest.mark.parametrize(
    ("op", "service", "check", "permission"),
    [
        ("PutObject", "s3", "s3", "s3:PutObject"),
        ("GetObject", "s3", "s3", "s3:GetObject"),
        ("HeadObject", "s3", "s3", "s3:ListBucket"),
        ("ListLayerVersions", "lambda", "lambda", "lambda:ListLayerVersions"),
    ],
)
def test_a_403_is_explained_with_the_missing_permission(
    tmp_path: Path, proxy: FaultProxy, op: str, service: str, check: str, permission: str
) -> None:
    proxy.add(Rule(op=op, service=service, fault=access_denied(), times=None))
    options = DoctorOptions(
        target=TARGET, repo=tmp_path, bucket=BUCKET, region="us-east-1", endpoint_url=proxy.url
    )
    findings = tuple(check_aws(options))
    [denied] = [f for f in by_check(findings, check) if f.severity == "error"]
    assert permission in denied.summary and "arn:aws:sts::123456789012:user/moto" in denied.summary
    assert permission in denied.fix and "30 seconds" in denied.fix
    assert proxy.count(op, status=403) >= 1


def test_a_403_on_put_skips_the_rest_and_leaves_nothing_behind(tmp_path: Path, proxy: FaultProxy) -> None:
    proxy.add(Rule(op="PutObject", fault=access_denied(), times=None))
    options = DoctorOptions(
        target=TARGET, repo=tmp_path, bucket=BUCKET, region="us-east-1", endpoint_url=proxy.url
    )
    check_aws(options)
    assert proxy.count("GetObject") == 0 and proxy.count("DeleteObject") == 0


def test_expired_credentials_say_to_log_in_again(tmp_path: Path, proxy: FaultProxy) -> None:
    expired = Fault(403, "ExpiredToken", "The security token included in the request is expired")
    proxy.add(Rule(op="GetCallerIdentity", service="sts", fault=expired, times=None))
    options = DoctorOptions(
        target=TARGET, repo=tmp_path, bucket=BUCKET, region="us-east-1", endpoint_url=proxy.url
    )
    findings = check_aws(options)
    [aws] = by_check(tuple(findings), "aws")
    assert aws.severity == "error" and "expired" in aws.summary and "aws sso login" in aws.fix
    assert not by_check(tuple(findings), "s3")  # nothing else is asked of refused credentials


# --------------------------------------------------------------------------------------------------
# Line endings, one check at a time


def test_line_kinds() -> None:
    here = Path(os.devnull)
    assert line_kind("ci/build.sh", here) == "script"
    assert line_kind("dist/sklearn-python3.11-x86_64.lock.json", here) == "lock"
    assert line_kind("requirements-dev.txt", here) == "lock"
    assert line_kind("uv.lock", here) == "lock"
    assert line_kind(".terraform.lock.hcl", here) == "lock"
    assert line_kind("recipes/sklearn.toml", here) == "recipe"
    assert line_kind("README.md", here) is None


def test_a_clean_repository_is_ok(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", CLEAN_REPO)
    findings = tuple(check_line_endings(repo))
    assert [f.severity for f in findings] == ["ok", "ok"]


def test_autocrlf_true_is_a_warning(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", CLEAN_REPO)
    git(repo, "config", "core.autocrlf", "true")
    [autocrlf] = by_check(tuple(check_line_endings(repo)), "autocrlf")
    assert autocrlf.severity == "warning" and "core.autocrlf input" in autocrlf.fix


def test_a_folder_that_is_not_a_repository_is_still_checked(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_bytes(b"#!/bin/sh\r\necho\r\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "activate.sh").write_bytes(b"x\r\n")  # not the project's
    findings = tuple(check_line_endings(tmp_path))
    [scripts] = by_check(findings, "line-endings")
    assert scripts.severity == "error" and scripts.paths == ("run.sh",)
    assert by_check(findings, "gitattributes")[0].severity == "info"


def test_a_missing_repo_folder_is_an_error(tmp_path: Path) -> None:
    [finding] = check_line_endings(tmp_path / "nowhere")
    assert finding.severity == "error"


# --------------------------------------------------------------------------------------------------
# dist/


def test_dist_windows_macos_and_backslash_zips(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    make_zip(
        dist / "win.zip",
        {"python/numpy/_core.cp311-win_amd64.pyd": pe_bytes(), "python/numpy/__init__.py": b""},
    )
    make_zip(dist / "mac.zip", {"python/fast/_speed.cpython-311-darwin.so": MACHO})
    make_zip(dist / "powershell.zip", {"python\\pkg\\__init__.py": b""})
    make_zip(dist / "launchers.zip", {"python/setuptools/cli-64.exe": pe_bytes()})
    make_zip(
        dist / "good.zip", {"python/good/__init__.py": b"", "python/good/_c.so": b"\x7fELF" + b"\0" * 60}
    )
    folder = dist / "unzipped" / "python" / "lib"
    folder.mkdir(parents=True)
    (folder / "thing.pyd").write_bytes(pe_bytes())
    findings = {Path(f.summary.split(" ", 1)[0]).name: f for f in check_dist(dist, TARGET)}
    assert findings["win.zip"].severity == "error" and "1 Windows binary" in findings["win.zip"].summary
    assert "--platform manylinux2014_x86_64" in findings["win.zip"].fix
    assert findings["mac.zip"].severity == "error" and "1 macOS binary" in findings["mac.zip"].summary
    assert (
        findings["powershell.zip"].severity == "error"
        and "Compress-Archive" in findings["powershell.zip"].fix
    )
    assert findings["launchers.zip"].severity == "warning"  # Linux never loads it: dead weight
    assert findings["unzipped"].severity == "error" and findings["unzipped"].paths == (
        "python/lib/thing.pyd",
    )
    assert "good.zip" not in findings


def test_a_clean_dist_is_ok_and_a_missing_one_is_silent(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    make_zip(dist / "good.zip", {"python/good/__init__.py": b""})
    [finding] = check_dist(dist, TARGET)
    assert finding.severity == "ok"
    assert check_dist(tmp_path / "none", TARGET) == []


# --------------------------------------------------------------------------------------------------
# Host, interpreter, tools, Docker


def test_host_checks() -> None:
    [linux] = check_host(TARGET, system="Linux", machine="x86_64", python=(3, 11))
    assert linux.severity == "ok"
    [mac] = check_host(TARGET, system="Darwin", machine="arm64", python=(3, 12))
    assert mac.severity == "info" and "Docker" in mac.fix and "manylinux" in mac.fix
    [windows] = check_host(TARGET, system="Windows", machine="AMD64", python=(3, 11))
    assert "WSL" in windows.fix
    [other_arch] = check_host(Target("python3.11", "arm64"), system="Linux", machine="x86_64", python=(3, 11))
    assert other_arch.severity == "info" and "Graviton" in other_arch.fix


def test_interpreter_checks(tmp_path: Path) -> None:
    def hidden(target: Target, *, explicit: Path | None = None) -> Any:
        return find_interpreter(
            target, explicit=explicit, search_path="", home=tmp_path, environ={}, include_current=False
        )

    host_arch = "arm64" if host_machine() == "aarch64" else "x86_64"
    foreign_arch = "x86_64" if host_arch == "arm64" else "arm64"
    missing, have = check_interpreter(Target("python3.11", host_arch), None, hidden)
    assert missing.severity == "warning" and not have and "uv python install 3.11" in missing.fix
    # No interpreter installed here can import the other architecture's extension modules.
    foreign, have = check_interpreter(Target("python3.11", foreign_arch), None, hidden)
    assert foreign.severity == "warning" and not have
    assert "python install" not in foreign.fix and "emulation" in foreign.fix
    bad, _ = check_interpreter(TARGET, tmp_path / "no-python", find_interpreter)
    assert bad.severity == "error" and "no such file" in bad.summary
    found, have = check_interpreter(TARGET, None, find_interpreter)
    assert found.severity == "ok" and have


def test_tool_checks() -> None:
    pip, uv = check_tools(pip_version=lambda: "24.0", which=lambda _name: None)
    assert pip.severity == "warning" and "pip install --upgrade" in pip.fix
    assert uv.severity == "info"

    def no_pip() -> str:
        raise __import__("importlib.metadata").metadata.PackageNotFoundError("pip")

    [pip, _] = check_tools(pip_version=no_pip, which=lambda _name: None)
    assert pip.severity == "error" and "ensurepip" in pip.fix
    [pip, _] = check_tools()
    assert pip.severity == "ok"


class VersionedFake(FakeDockerClient):
    def version(self) -> dict[str, str]:
        self.calls.append(("version", {}))
        return {"Version": "27.3.1", "Os": "linux", "Arch": "amd64"}


def test_docker_checks() -> None:
    engine = VersionedFake()
    assert check_docker(TARGET, lambda: engine, have_local=True).severity == "ok"
    emulated = check_docker(Target("python3.11", "arm64"), lambda: engine, have_local=False)
    assert emulated.severity == "info" and "tonistiigi/binfmt --install arm64" in emulated.fix

    def absent() -> Any:
        raise DockerError("no Docker engine answered: nothing listens at unix:///var/run/docker.sock")

    assert check_docker(TARGET, absent, have_local=True).severity == "info"
    alone = check_docker(TARGET, absent, have_local=False)
    assert alone.severity == "warning" and "static audit" in alone.summary

    def broken() -> Any:
        raise docker.errors.DockerException("Error while fetching server API version: Connection refused")

    assert "refused" in check_docker(TARGET, broken, have_local=True).summary
