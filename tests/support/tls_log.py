"""Imported by a pip fork server under test (added to its preload): its import, and every CA bundle loaded
into a TLS context in the server or in any child it forks, are logged with the process's pid to the file
that LAYERFORGE_TEST_TLS_LOG names (`imported PID`, `load PID`). OpenSSL opens the bundle from C, which no
audit event tells, so the load is seen where Python asks for it."""

from __future__ import annotations

import os
import ssl
from typing import Any

_LOG = os.environ["LAYERFORGE_TEST_TLS_LOG"]
_load = ssl.SSLContext.load_verify_locations


def _note(what: str) -> None:
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{what} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _logged(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
    _note("load")
    _load(self, *args, **kwargs)


ssl.SSLContext.load_verify_locations = _logged  # type: ignore[method-assign]
_note("imported")
