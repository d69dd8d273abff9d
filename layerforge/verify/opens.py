"""Every open of a file or folder under some folders, by any code in any process: Linux's inotify.

The verification cache (proofs.py) must know everything a check read, and the check's own audit hook sees
only what Python opens. A C library that reads a data file beside itself (OpenSSL a CA bundle, a BLAS its
config), or the dynamic loader a library, opens it from C; inotify reports those too. The cache counts
the opens it sees here against the ones the check processes reported and the ones this process made (its
own audit hook counts them: the build zips and audits the tree while the checks run), and takes whatever
is left over into the record of every run in the window.

The count of this process's opens is exact only if no thread of it reads the folders while the watch is
set up or ends: whoever opens the window must start the tree's other readers inside it and let them
finish before it closes (build.py does). Where inotify cannot be had (not Linux, the watch limit reached,
the event queue overflowed) the watch is incomplete, and nothing that ran under it is filed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ..fsutil import audited_open

_IN_OPEN = 0x00000020
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name, NUL-padded to len
_READ_EVERY_SECONDS = 0.05


class OpenWatch:
    """A context manager; inside it, `note_processes` adds what check processes said they opened, and
    `when_closed` queues work for after the last event is read (filing proofs). A folder's own opens
    (its listings) are counted from its own watch, not again from its parent's."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self.opens: Counter[str] = Counter()  # what inotify saw, by absolute path
        self.own: Counter[str] = Counter()  # this process's opens and listings under the roots
        self.processes: Counter[str] = Counter()  # what the check processes accounted for
        self.complete = False
        self.why_incomplete = ""
        self._fd = -1
        self._folders: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prefixes = tuple(os.path.abspath(root) + os.sep for root in roots)
        self._closing: list[Callable[[], None]] = []

    def __enter__(self) -> OpenWatch:
        libc = _libc()
        if libc is None:
            self.why_incomplete = "inotify is not available on this system"
            return self
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            self.why_incomplete = f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}"
            return self
        self._fd = fd
        for root in self.roots:
            for folder, _, _ in os.walk(os.path.abspath(root)):
                wd = libc.inotify_add_watch(fd, os.fsencode(folder), _IN_OPEN)
                if wd < 0:
                    self.why_incomplete = f"inotify_add_watch failed: {os.strerror(ctypes.get_errno())}"
                    return self
                self._folders[wd] = folder
        self.complete = True
        _start_counting(self)
        self._thread = threading.Thread(target=self._read, name="layerforge-opens", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        _stop_counting(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd >= 0:
            self._drain()  # what every process did before it ended is queued by now
            os.close(self._fd)
            self._fd = -1
        for work in self._closing:
            work()

    def note_processes(self, counts: Counter[str]) -> None:
        self.processes.update(counts)

    def when_closed(self, work: Callable[[], None]) -> None:
        self._closing.append(work)

    def unexplained(self) -> set[str] | None:
        """Paths opened more often than this process and the check processes account for: C code's
        opens. None when the watch was incomplete."""
        if not self.complete:
            return None
        return {path for path, n in self.opens.items() if n > self.own[path] + self.processes[path]}

    def _own_open(self, path: str) -> None:
        if (path + os.sep).startswith(self._prefixes):
            self.own[path] += 1

    def _read(self) -> None:
        # In batches, not at every event: a thread woken per open would take the GIL thousands of times
        # a second from the zip and the audit (1 s of a warm build). The queue holds 16,384 events.
        while not self._stop.wait(_READ_EVERY_SECONDS):
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            self._count(data)

    def _count(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                self.complete = False
                self.why_incomplete = "the inotify queue overflowed"
                continue
            folder = self._folders.get(wd)
            if folder is None or mask & _IN_IGNORED or not mask & _IN_OPEN:
                continue
            name = os.fsdecode(raw.rstrip(b"\0"))
            if not name:
                self.opens[folder] += 1
            elif not mask & _IN_ISDIR:  # a subfolder's opens come from its own watch
                self.opens[os.path.join(folder, name)] += 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 - absent on some libcs
    except (OSError, AttributeError):
        return None
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


# ---------------------------------------------------------------------------------------------------
# This process's own opens, counted by an audit hook (installed once: hooks cannot be removed)

_WATCHES: list[OpenWatch] = []
_HOOK = {"installed": False}
_HOOK_LOCK = threading.Lock()


def _own_hook(event: str, args: tuple[object, ...]) -> None:
    if not _WATCHES:
        return
    path = audited_open(event, args)
    if path is not None:
        for watch in list(_WATCHES):
            watch._own_open(path)


def _start_counting(watch: OpenWatch) -> None:
    with _HOOK_LOCK:
        if not _HOOK["installed"]:
            sys.addaudithook(_own_hook)
            _HOOK["installed"] = True
        _WATCHES.append(watch)


def _stop_counting(watch: OpenWatch) -> None:
    with _HOOK_LOCK:
        if watch in _WATCHES:
            _WATCHES.remove(watch)
