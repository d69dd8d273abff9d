"""The zip child, run by zip_apart.py (`python -c`, with the folder that holds layerforge and a work folder
as arguments), not imported otherwise.

Started ahead of its work, it waits for the line GO on its input; before it, each line `prepare N` has it
prove the cached streams of the members the file `prepare-N.json` names ({"cache_dir", "members":
[[sha256, size], ...]}) while the build still works on the tree (or pip still resolves), reading the cache
and not the tree. Then it reads its request
from REQUEST in the work folder: {"root", "destination", "jobs", "cache_dir"
(or null), "proven": [[device, inode, size, mtime_ns, sha256], ...], "counted": [folder, ...]}. Writes
progress lines on stdout ("advance BYTES", short enough for one atomic write to a pipe) and, at the end,
ANSWER in the work folder: the ZipResult's fields and "opens", how often it opened or listed each
path under the `counted` folders (the verification cache's watch sets those apart). Request and answer
are files: a line of hundreds of kilobytes through a pipe arrived torn once, under a profiler's
interruptions, and cost the build.

The parent keeps stdin open until this process has ended: end of input means the parent is gone (killed,
SIGKILL included), and so is this process, leaving its temporary files as a killed build would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..cache import note_proven
from ..fsutil import atomic_write_text, audited_open
from ..member_cache import MemberCache
from .archive import Proved, prepare_member, write_zip

_REPORT_EVERY_BYTES = 4 * 1024 * 1024


REQUEST = "request.json"
ANSWER = "answer.json"
GO = "go\n"
PREPARE = "prepare"


def prepared_name(number: int) -> str:
    """The file that the line `prepare <number>` names."""
    return f"prepare-{number}.json"


def main() -> None:
    work = Path(sys.argv[2])
    prepared = _wait_for_go(work)
    threading.Thread(target=_end_with_parent, daemon=True).start()
    request = json.loads((work / REQUEST).read_text(encoding="utf-8"))
    note_proven(request["proven"])
    opens = _count_opens(tuple(os.path.abspath(folder) + os.sep for folder in request["counted"]))
    pending = [0]

    def advance(amount: int) -> None:
        pending[0] += amount
        if pending[0] >= _REPORT_EVERY_BYTES:
            print(f"advance {pending[0]}", flush=True)
            pending[0] = 0

    cache_dir = request["cache_dir"]
    result = write_zip(
        Path(request["root"]),
        Path(request["destination"]),
        jobs=request["jobs"],
        progress=advance,
        cache=MemberCache(Path(cache_dir)) if cache_dir is not None else None,
        prepared=prepared,
    )
    for waiting in prepared.values():  # a member slimming removed since: not proved at exit's expense
        waiting.cancel()
    print(f"advance {pending[0]}", flush=True)
    answer = {**dataclasses.asdict(result), "path": str(result.path), "opens": dict(opens)}
    atomic_write_text(work / ANSWER, json.dumps(answer))
    # The build waits for this process to end, not only for its answer: nothing is left to do that the
    # interpreter's finalization (atexit handlers, module teardown) would add, so it is skipped.
    sys.stdout.flush()
    os._exit(0)


def _wait_for_go(work: Path) -> dict[str, Future[Proved | None]]:
    """Started ahead of its work (zip_apart.ZipChild), the child reads its input line by line: `prepare N`
    starts proving the cached streams of the members `prepare-N.json` names, GO ends the waiting. An input
    that ends first means the parent is gone, or had no zip to write after all."""
    prepared: dict[str, Future[Proved | None]] = {}
    # One thread, in the order asked: the build's own process keeps the other core busy meanwhile.
    preparing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
    while True:
        line = sys.stdin.readline()
        if line == GO:
            return prepared
        word, _, number = line.partition(" ")
        if word != PREPARE or not number.strip().isdigit():
            os._exit(1)
        request = json.loads((work / prepared_name(int(number))).read_text(encoding="utf-8"))
        cache = MemberCache(Path(request["cache_dir"]))
        for sha256, size in request["members"]:
            if sha256 not in prepared:
                prepared[sha256] = preparing.submit(prepare_member, cache, sha256, size)


def _end_with_parent() -> None:
    sys.stdin.read()
    os._exit(1)


def _count_opens(prefixes: tuple[str, ...]) -> Counter[str]:
    """What this process opens and lists under `prefixes`, counted as verify/opens.py counts its own."""
    opens: Counter[str] = Counter()

    def hook(event: str, args: tuple[object, ...]) -> None:
        path = audited_open(event, args)
        if path is not None and (path + os.sep).startswith(prefixes):
            opens[path] += 1

    if prefixes:
        sys.addaudithook(hook)
    return opens


if __name__ == "__main__":
    main()
