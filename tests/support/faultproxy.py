"""A reverse proxy on 127.0.0.1 between boto3 and moto that injects faults by rule.

    proxy = FaultProxy(upstream="http://127.0.0.1:5000").start()
    proxy.add(Rule(op="UploadPart", fault=slowdown(), nth=2, times=1))   # 2nd UploadPart: 503 once
    ... point boto3's endpoint_url at proxy.url ...
    proxy.count("UploadPart")                                             # requests seen, faults included
    proxy.stop()

Each request is named by its API operation (from the method, the path, the query and the SigV4
credential scope), so rules and counts read like the AWS docs. Faults: an error status with the
service's own error body (S3 XML, Lambda JSON with `x-amzn-ErrorType`, STS query XML), a dropped
connection, or a delay before forwarding. The proxy is bounded: request bodies are capped, sockets time
out, and `stop()` ends the server thread.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY_BYTES = 256 * 1024 * 1024
SOCKET_TIMEOUT = 30.0
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-length",
}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


@dataclass(frozen=True)
class Request:
    """What the proxy saw of one request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    service: str
    region: str
    op: str


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) forwarding: an error response, a drop, or a delay."""

    status: int = 0
    code: str = ""
    message: str = ""
    drop: bool = False
    delay: float = 0.0
    # Put the request's Authorization header into the error message: a server that leaks secrets.
    echo_authorization: bool = False

    @property
    def forwards(self) -> bool:
        return self.status == 0 and not self.drop


def slowdown() -> Fault:
    return Fault(503, "SlowDown", "Please reduce your request rate.")


def server_error() -> Fault:
    return Fault(500, "InternalError", "We encountered an internal error. Please try again.")


def throttle(status: int = 429) -> Fault:
    code = "TooManyRequestsException" if status == 429 else "ThrottlingException"
    return Fault(status, code, "Rate exceeded")


def too_large() -> Fault:
    return Fault(413, "RequestEntityTooLargeException", "Request must be smaller than 70167211 bytes")


def access_denied(message: str = "Access Denied") -> Fault:
    return Fault(403, "AccessDenied", message)


def drop() -> Fault:
    return Fault(drop=True)


def slow(seconds: float) -> Fault:
    return Fault(delay=seconds)


@dataclass
class Rule:
    """Fault the `nth` matching request and the `times - 1` matching requests after it (None: all)."""

    fault: Fault
    op: str | None = None
    region: str | None = None
    service: str | None = None
    nth: int = 1
    times: int | None = 1
    when: Callable[[Request], bool] | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, request: Request) -> bool:
        return (
            (self.op is None or self.op == request.op)
            and (self.region is None or self.region == request.region)
            and (self.service is None or self.service == request.service)
            and (self.when is None or self.when(request))
        )

    def take(self) -> bool:
        """Count one matching request; true when this one gets the fault."""
        self.seen += 1
        if self.seen < self.nth or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass(frozen=True)
class Seen:
    op: str
    service: str
    region: str
    method: str
    path: str
    status: int  # 0 for a dropped connection


@dataclass
class _State:
    upstream: tuple[str, int]
    rules: list[Rule] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault_for(self, request: Request) -> Fault | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(request) and rule.take():
                    return rule.fault
        return None

    def record(self, request: Request, status: int) -> None:
        with self.lock:
            self.log.append(
                Seen(request.op, request.service, request.region, request.method, request.path, status)
            )


def operation(method: str, path: str, query: dict[str, list[str]], service: str, body: bytes) -> str:
    """The API operation a request stands for (path-style S3, Lambda REST, query-protocol STS/IAM)."""
    if service in {"sts", "iam"}:
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        return action or f"{method} {path}"
    if service == "lambda":
        return _lambda_operation(method, path)
    return _s3_operation(method, path, query)


def _s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    has_key = len(path.strip("/").split("/", 1)) == 2
    if method == "PUT" and "partNumber" in query:
        return "UploadPart"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in query:
        return "AbortMultipartUpload"
    names = {
        ("PUT", True): "PutObject",
        ("PUT", False): "CreateBucket",
        ("HEAD", True): "HeadObject",
        ("HEAD", False): "HeadBucket",
        ("GET", True): "GetObject",
        ("GET", False): "ListObjects",
        ("DELETE", True): "DeleteObject",
    }
    return names.get((method, has_key), f"{method} {path}")


_LAMBDA_ROUTES = (
    ("POST", r"/2018-10-31/layers/[^/]+/versions", "PublishLayerVersion"),
    ("GET", r"/2018-10-31/layers/[^/]+/versions", "ListLayerVersions"),
    ("GET", r"/2018-10-31/layers/[^/]+/versions/\d+", "GetLayerVersion"),
    ("POST", r"/2018-10-31/layers/[^/]+/versions/\d+/policy", "AddLayerVersionPermission"),
    ("GET", r"/2018-10-31/layers/[^/]+/versions/\d+/policy", "GetLayerVersionPolicy"),
    ("GET", r"/2015-03-31/functions/[^/]+/configuration", "GetFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/[^/]+/configuration", "UpdateFunctionConfiguration"),
    ("POST", r"/2015-03-31/functions", "CreateFunction"),
)


def _lambda_operation(method: str, path: str) -> str:
    for route_method, pattern, name in _LAMBDA_ROUTES:
        if method == route_method and re.fullmatch(pattern + "/?", path):
            return name
    return f"{method} {path}"


def error_body(service: str, fault: Fault, message: str) -> tuple[dict[str, str], bytes]:
    """The error response each protocol's parser in botocore expects."""
    if service == "lambda":
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": fault.code}
        return headers, json.dumps({"message": message, "Type": "User"}).encode()
    if service in {"sts", "iam"}:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{fault.code}</Code>"
            f"<Message>{_xml(message)}</Message></Error><RequestId>faultproxy</RequestId></ErrorResponse>"
        )
        return {"Content-Type": "text/xml"}, body.encode()
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code>'
        f"<Message>{_xml(message)}</Message><RequestId>faultproxy</RequestId></Error>"
    )
    return {"Content-Type": "application/xml"}, body.encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects from S3
    timeout = SOCKET_TIMEOUT
    state: _State  # set on the per-proxy subclass

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the log is kept in `state.log` instead."""

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _handle(self) -> None:
        request = self._read_request()
        fault = self.state.fault_for(request)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            self.state.record(request, 0)
            self._drop()
            return
        if fault is not None and not fault.forwards:
            self._send_fault(request, fault)
            return
        self._forward(request)

    def _read_request(self) -> Request:
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        body = self._read_body()
        headers = {name: value for name, value in self.headers.items()}
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        service = scope.group("service") if scope else "unknown"
        region = scope.group("region") if scope else "unknown"
        op = operation(self.command, split.path, query, service, body)
        return Request(self.command, split.path, query, headers, body, service, region, op)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body of {length} bytes is over the proxy's bound")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Trailers (if any) end with an empty line.
                while self.rfile.readline().strip():
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("chunked request body is over the proxy's bound")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_fault(self, request: Request, fault: Fault) -> None:
        message = fault.message
        if fault.echo_authorization:
            message = f"{message} (request was signed with: {request.headers.get('Authorization', '')})"
        headers, body = error_body(request.service, fault, message)
        self.state.record(request, fault.status)
        self.send_response(fault.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if request.method != "HEAD":
            self.wfile.write(body)

    def _forward(self, request: Request) -> None:
        host, port = self.state.upstream
        connection = http.client.HTTPConnection(host, port, timeout=SOCKET_TIMEOUT)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(request.body))
            connection.request(request.method, self.path, body=request.body, headers=headers)
            response = connection.getresponse()
            body = response.read()
            upstream_headers = response.getheaders()
        finally:
            connection.close()
        self.state.record(request, response.status)
        self.send_response(response.status, response.reason)
        for name, value in upstream_headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        # A HEAD response's Content-Length is the object's size: S3 clients read it from there.
        length = dict((k.lower(), v) for k, v in upstream_headers).get("content-length", "0")
        self.send_header("Content-Length", length if request.method == "HEAD" else str(len(body)))
        self.end_headers()
        if request.method != "HEAD":
            self.wfile.write(body)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        split = urlsplit(upstream)
        assert split.hostname and split.port
        self._state = _State(upstream=(split.hostname, split.port))
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="faultproxy", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add(self, rule: Rule) -> Rule:
        with self._state.lock:
            self._state.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._state.lock:
            self._state.rules.clear()
            self._state.log.clear()

    @property
    def log(self) -> list[Seen]:
        with self._state.lock:
            return list(self._state.log)

    def count(self, op: str, *, status: int | None = None, region: str | None = None) -> int:
        return sum(
            1
            for seen in self.log
            if seen.op == op
            and (status is None or seen.status == status)
            and (region is None or seen.region == region)
        )


@contextmanager
def running(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
