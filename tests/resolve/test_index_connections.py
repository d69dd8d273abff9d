"""How layerforge's HTTP ends are set up: one TLS context for the process, and the local index's replies
sent without Nagle's delay. Both were found costing a sklearn resolution time (benchmarks/bench_resolve.py
measures the second against the first's baseline)."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from layerforge.cache import WheelCache
from layerforge.resolve import index, local_index
from layerforge.resolve.local_index import LocalIndex
from layerforge.target import Target


def test_page_readers_that_start_together_share_one_tls_context() -> None:
    index._one_tls_context.cache_clear()
    together = threading.Barrier(8)

    def first_context() -> int:
        together.wait()
        return id(index._tls_context())

    with ThreadPoolExecutor(max_workers=8) as pool:
        contexts = set(pool.map(lambda _: first_context(), range(8)))
    assert len(contexts) == 1


def test_the_local_index_replies_without_waiting_for_the_ack_of_its_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each reply is two writes (headers, then body); with Nagle's algorithm on, the body waits for pip's
    # delayed ACK of the headers, up to 40 ms per request, and pip asks one request at a time.
    seen: list[int] = []
    made = local_index._handler_for

    def recording(index: LocalIndex) -> type[BaseHTTPRequestHandler]:
        class Recording(made(index)):  # type: ignore[misc]
            def setup(self) -> None:
                super().setup()
                seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        return Recording

    monkeypatch.setattr(local_index, "_handler_for", recording)
    upstream = "http://127.0.0.1:9/simple/"  # never asked: the request below is for no page
    with LocalIndex(upstream, WheelCache(tmp_path), Target("python3.11", "x86_64")) as local:
        port = urlsplit(local.url).port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(100).startswith(b"HTTP/1.1 404")
    assert seen and all(seen)
