"""size-report --layer-arn: a published layer's sizes from its central directory, read by HTTP ranges.

moto serves the Lambda API and S3 on 127.0.0.1, but its GetLayerVersion answers ``Location: s3://``,
while AWS answers a presigned https URL of the zip. A small proxy in front of moto stands in for that
part of AWS: it rewrites the Location into a presigned GET of the S3 object, through the proxy itself,
and counts every byte of the object it serves. layerforge itself only ever sees an HTTP URL, as on AWS.
"""

from __future__ import annotations

import http.client
import io
import json
import random
import re
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from layerforge.aws.remote_zip import RemoteZipError, open_remote_zip
from layerforge.cli import main
from layerforge.rangefile import RangeFile
from tests.support.aws import AwsServer
from tests.support.size_zips import Zeros, dist, entry_sizes, write_zip

BUCKET = "layerforge-test-layers"
_GET_LAYER_VERSION = re.compile(r"^/2018-10-31/layers/[^/]+/versions/\d+$")


@dataclass
class _Traffic:
    object_bytes: int = 0
    object_requests: list[str | None] = field(default_factory=list)  # each request's Range header
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Proxy

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length) if length else None
        upstream = urlsplit(self.server.upstream)
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        connection.request(self.command, self.path, body=request_body, headers=headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        body = self.server.rewrite(self.command, self.path, response.status, body)
        self.server.count(self.command, self.path, self.headers.get("Range"), len(body))
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, aws: AwsServer, key: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = aws.endpoint_url
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.key = key
        self.traffic = _Traffic()
        # Presigned through the proxy, so that the zip's bytes are counted on their way.
        self._s3 = AwsServer(self.url).client("s3")

    def rewrite(self, method: str, path: str, status: int, body: bytes) -> bytes:
        if method != "GET" or status != 200 or not _GET_LAYER_VERSION.match(path.split("?", 1)[0]):
            return body
        answer = json.loads(body)
        answer["Content"]["Location"] = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": self.key}, ExpiresIn=600
        )
        return json.dumps(answer).encode()

    def count(self, method: str, path: str, byte_range: str | None, size: int) -> None:
        if method == "GET" and path.startswith(f"/{BUCKET}/{self.key}"):
            with self.traffic.lock:
                self.traffic.object_bytes += size
                self.traffic.object_requests.append(byte_range)


Publish = Callable[..., tuple[str, "_Proxy"]]
Serve = Callable[..., "_RangeServer"]


@pytest.fixture()
def publish(aws_server: AwsServer) -> Iterator[Publish]:
    """Publish a zip as a layer version in moto (from S3, as for a big layer); yield (arn, proxy)."""
    proxies: list[_Proxy] = []

    def _publish(zip_path: Path, name: str = "sklearn") -> tuple[str, _Proxy]:
        s3 = aws_server.client("s3")
        if not proxies:
            s3.create_bucket(Bucket=BUCKET)
        key = f"layers/{name}.zip"
        s3.put_object(Bucket=BUCKET, Key=key, Body=zip_path.read_bytes())
        arn = aws_server.client("lambda").publish_layer_version(
            LayerName=name, Content={"S3Bucket": BUCKET, "S3Key": key}, CompatibleRuntimes=["python3.11"]
        )["LayerVersionArn"]
        proxy = _Proxy(aws_server, key)
        threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        proxies.append(proxy)
        return arn, proxy

    yield _publish
    for proxy in proxies:
        proxy.shutdown()
        proxy.server_close()


def _random_layer(path: Path) -> Path:
    # Random bytes do not compress: the zip is as big as its content, about 3 MB.
    rnd = random.Random(7)
    entries = dist(
        "numpy",
        "2.2.6",
        {"numpy/__init__.py": b"import os\n" * 50, "numpy/core/_umath.so": rnd.randbytes(1_500_000)},
        top_level=["numpy"],
        extra={"numpy/__pycache__/__init__.cpython-311.pyc": b"\x00" * 700},
    )
    entries |= dist(
        "scipy", "1.14.1", {"scipy/linalg/_flapack.so": rnd.randbytes(1_200_000)}, top_level=["scipy"]
    )
    entries |= dist("six", "1.16.0", {"six.py": rnd.randbytes(40_000)})
    return write_zip(path, entries)


def test_layer_arn_reads_only_the_central_directory(publish: Publish, tmp_path: Path) -> None:
    zip_path = _random_layer(tmp_path / "layer.zip")
    arn, proxy = publish(zip_path)

    result = CliRunner().invoke(
        main, ["size-report", "--layer-arn", arn, "--endpoint-url", proxy.url, "--json", "--quiet"]
    )

    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    unzipped, compressed, files = entry_sizes(zip_path)
    source = report["sources"][0]
    assert (report["unzipped_bytes"], source["compressed_bytes"], source["files"]) == (
        unzipped,
        compressed,
        files,
    )
    assert source["origin"] == "layer_arn" and source["location"] == arn and source["kind"] == "layer"
    assert source["zipped_bytes"] == zip_path.stat().st_size
    sizes = {d["name"]: d["unzipped_bytes"] for d in report["distributions"]}
    assert sizes["numpy"] > 1_500_000 and sizes["scipy"] > 1_200_000 and "six" in sizes
    assert sum(sizes.values()) == unzipped
    # What crossed the wire: every request ranged, and a tiny part of the zip in all.
    traffic = proxy.traffic
    assert traffic.object_requests and all(r and r.startswith("bytes=") for r in traffic.object_requests)
    assert traffic.object_bytes == source["fetched_bytes"]
    assert traffic.object_bytes < zip_path.stat().st_size // 50, traffic
    assert len(traffic.object_requests) == source["fetch_requests"] <= 4
    # The presigned URL is a credential: it never appears in the report.
    assert "Signature=" not in result.stdout + result.stderr


def test_function_zip_and_published_layer_over_the_limit_exit_3(publish: Publish, tmp_path: Path) -> None:
    layer = write_zip(
        tmp_path / "torch.zip", dist("torch", "2.5.1", {"torch/lib/libtorch_cpu.so": Zeros(180_000_000)})
    )
    function = write_zip(tmp_path / "function.zip", {"app.py": b"x", "model/weights.bin": Zeros(90_000_000)})
    arn, proxy = publish(layer, "torch")

    result = CliRunner().invoke(
        main, ["size-report", str(function), "--layer-arn", arn, "--endpoint-url", proxy.url, "--quiet"]
    )

    assert result.exit_code == 3, result.output + result.stderr
    assert "biggest zips: torch:1 (layer" in result.stderr
    assert "torch 171.7 MiB" in result.stderr
    assert proxy.traffic.object_bytes < 64 * 1024


def test_a_location_that_is_not_http_is_explained(aws_server: AwsServer, tmp_path: Path) -> None:
    # Straight to moto, with no proxy: its Location is "s3://", which no HTTP client can read.
    zip_path = _random_layer(tmp_path / "layer.zip")
    aws_server.client("s3").create_bucket(Bucket=BUCKET)
    aws_server.client("s3").put_object(Bucket=BUCKET, Key="l.zip", Body=zip_path.read_bytes())
    arn = aws_server.client("lambda").publish_layer_version(
        LayerName="plain", Content={"S3Bucket": BUCKET, "S3Key": "l.zip"}
    )["LayerVersionArn"]

    result = CliRunner().invoke(
        main, ["size-report", "--layer-arn", arn, "--endpoint-url", aws_server.endpoint_url]
    )

    assert result.exit_code == 1
    assert "not an HTTP URL" in result.stderr


def test_an_unknown_layer_version_is_bad_input(aws_server: AwsServer) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:layer:missing:3"
    result = CliRunner().invoke(
        main, ["size-report", "--layer-arn", arn, "--endpoint-url", aws_server.endpoint_url]
    )
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_a_malformed_arn_is_bad_input() -> None:
    result = CliRunner().invoke(main, ["size-report", "--layer-arn", "arn:aws:lambda:us-east-1:layer:x"])
    assert result.exit_code == 2
    assert "not a layer version ARN" in result.stderr


# --------------------------------------------------------------------------------------------------
# RangeFile against a plain range-serving HTTP server


class _RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RangeServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        data = self.server.data
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if not match or not self.server.ranges:
            self._send(200, data, {})
            return
        first, last = match.groups()
        start = max(0, len(data) - int(last)) if not first else int(first)
        end = len(data) - 1 if not first or not last else min(int(last), len(data) - 1)
        self._send(206, data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.server.served += len(body)
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data: bytes, *, ranges: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.data = data
        self.ranges = ranges
        self.served = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}/layer.zip"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up on a body it refused is expected here


@pytest.fixture()
def serve() -> Iterator[Serve]:
    servers: list[_RangeServer] = []

    def _serve(data: bytes, *, ranges: bool = True) -> _RangeServer:
        server = _RangeServer(data, ranges=ranges)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _as_zip64(data: bytes) -> bytes:
    """The same zip, its end record deferring to a ZIP64 end record and locator.

    zipfile writes exactly this once a zip passes 65,535 entries or 4 GiB; making one that big
    takes seconds, so the test writes the records around a small zip's own central directory.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        count = len(archive.infolist())
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<LL", data[eocd + 12 : eocd + 20])
    body = data[: cd_offset + cd_size]
    zip64_offset = len(body)
    record = struct.pack("<4sqhhLLqqqq", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
    locator = struct.pack("<4sLqL", b"PK\x06\x07", 0, zip64_offset, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + end


def test_range_file_reads_a_zip64_central_directory(serve: Serve, tmp_path: Path) -> None:
    rnd = random.Random(3)
    entries = {f"python/pkg/m{i}.bin": rnd.randbytes(20_000) for i in range(100)}
    data = _as_zip64(write_zip(tmp_path / "z.zip", entries).read_bytes())
    assert data.rfind(b"PK\x06\x06") > 0
    server = serve(data)

    archive, handle = open_remote_zip(server.url, tail_bytes=4096)

    assert sum(info.file_size for info in archive.infolist()) == 100 * 20_000
    assert len(archive.infolist()) == 100 + 2  # and the directory entries python/ and python/pkg/
    # The tail, then the central directory: two requests, a small part of the zip.
    assert handle.requests == 2
    assert handle.bytes_fetched == server.served < len(data) // 50
    assert archive.read("python/pkg/m7.bin") == entries["python/pkg/m7.bin"]


def test_range_file_refuses_a_server_that_ignores_ranges(serve: Serve) -> None:
    # Reading on would download the whole zip, the one thing this reader exists to avoid.
    server = serve(bytes(200_000), ranges=False)
    with pytest.raises(RemoteZipError, match="ignored the Range header"):
        RangeFile(server.url, tail_bytes=4096)


def test_range_file_takes_a_whole_zip_smaller_than_the_tail(serve: Serve, tmp_path: Path) -> None:
    data = write_zip(tmp_path / "small.zip", {"python/a.py": b"a = 1\n"}).read_bytes()
    server = serve(data, ranges=False)
    archive, handle = open_remote_zip(server.url)
    assert archive.namelist() == ["python/", "python/a.py"]
    assert handle.requests == 1
