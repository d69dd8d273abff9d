"""A real S3 and Lambda API (moto in server mode) on 127.0.0.1, started by the tests."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

# Fake credentials: the server accepts any, and secret-leak tests search output for these values.
FAKE_ACCESS_KEY = "AKIAFAKELAYERFORGE01"
FAKE_SECRET_KEY = "fake/secret/Key+layerforge+0123456789abcdef"


@dataclass(frozen=True)
class AwsServer:
    endpoint_url: str

    def client(self, service: str, region: str = "us-east-1"):  # type: ignore[no-untyped-def]
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_SECRET_KEY,
            config=Config(retries={"total_max_attempts": 1}),
        )


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in the environment, and no profile or config file of the host's."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture()
def aws_server(aws_env: None) -> Iterator[AwsServer]:
    """A fresh moto server per test, so that no state leaks between tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its state per process, not per server: reset it so no test sees another's buckets.
    urllib.request.urlopen(
        urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10
    ).close()
    try:
        yield AwsServer(endpoint_url=endpoint)
    finally:
        server.stop()
