"""The layer's zip, written by a process of its own while the build does its other work on the tree.

write_zip's reading, its members' bookkeeping and its cache lookups are Python. In the build's process
they hold the GIL against the audit and the verification cache's checks, which run at the same time: a
warm build's zip took 4.3 s there and 1.6 s alone. A child has a GIL of its own. The bytes are write_zip's
either way, and the digests this process proved (cache.py) go with the request, so the child hashes no
more than the build would have.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..cache import known_sha256, proven_digests
from ..errors import BuildError
from ._zip_child import ANSWER, GO, PREPARE, REQUEST, prepared_name
from .archive import CACHE_FLOOR, ZipResult
from .unpack import LayerTree

# Imports the child module from the very package this process runs, wherever it lives (an install, a
# checkout on PYTHONPATH), not whatever `-m` would find first on the child's path.
_START = "import sys; sys.path.insert(0, sys.argv[1]); from layerforge.tree._zip_child import main; main()"


class ZipChild:
    """A zip child started ahead: its interpreter and imports (0.17 s of CPU) overlap the build's last
    steps on the tree, not the checks; it waits for one line on its input before it reads its request.
    A context manager: one never given a zip to write is killed, and its work folder removed.

    The work folder (request, answer, the child's stderr) is made inside `scratch_in`: the build's staging
    folder, which a later build sweeps away when this one is killed outright, never the system's /tmp."""

    def __init__(self, scratch_in: Path) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="zip-", dir=scratch_in)
        self.work = Path(self._scratch.name)
        package_parent = str(Path(__file__).resolve().parents[2])
        try:
            with open(self.work / "stderr", "wb") as errors:  # the child writes to its own copy
                self.process = subprocess.Popen(
                    [sys.executable, "-c", _START, package_parent, str(self.work)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                )
        except BaseException:
            self._scratch.cleanup()
            raise
        self._asking = threading.Lock()  # the head start's thread and the build's both ask
        self._asked = 0

    def __enter__(self) -> ZipChild:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        self._scratch.cleanup()

    def prepare(self, cache_dir: Path, tree: LayerTree) -> None:
        """Have the child prove the cached streams of the tree's large members whose digests a checkout
        proved, now, while the build still works on the tree; the zip then copies each one whose member
        still has that digest."""
        self.prove(cache_dir, _proven_large_members(tree))

    def prove(self, cache_dir: Path, members: list[list[str | int]]) -> None:
        """Have the child prove the cached streams of these [sha256, size], in the order asked, beside
        whatever the build does meanwhile; one asked for before is not proved again."""
        if not members:
            return
        # Only ever speed: a child that died is found out when it is given the zip.
        with self._asking, contextlib.suppress(OSError):
            self._asked += 1
            (self.work / prepared_name(self._asked)).write_text(
                json.dumps({"cache_dir": str(cache_dir), "members": members}), encoding="utf-8"
            )
            assert self.process.stdin is not None
            self.process.stdin.write(f"{PREPARE} {self._asked}\n")
            self.process.stdin.flush()

    def errors(self) -> str:
        return (self.work / "stderr").read_text(errors="replace")


class ZipChildSlot:
    """A zip child started on first use: by the head start, so that it proves cached streams while pip
    resolves, or by the build once it knows it has a zip to write. A build that reuses its output never
    starts one. Only the build's own thread starts it; close it when the build ends. Its work folder goes
    in `scratch_in` (see ZipChild)."""

    def __init__(self, scratch_in: Path) -> None:
        self._scratch_in = scratch_in
        self._child: ZipChild | None = None

    def get(self) -> ZipChild:
        if self._child is None:
            self._child = ZipChild(self._scratch_in)
        return self._child

    def close(self) -> None:
        if self._child is not None:
            self._child.close()


def large_members(files: Mapping[str, Any]) -> list[list[str | int]]:
    """[sha256, size] of a piece's files (its manifest's {path: [size, sha256]}) that get a member cache
    entry of their own. A stream proved for one is only ever copied for a member of that digest."""
    return [[sha256, size] for size, sha256 in files.values() if size >= CACHE_FLOOR]


def _proven_large_members(tree: LayerTree) -> list[list[str | int]]:
    """[sha256, size] of the tree's files that get a member cache entry of their own and whose digest a
    checkout proved."""
    found: list[list[str | int]] = []
    root = os.fspath(tree.root)
    for path, layer_file in tree.files.items():
        if layer_file.size < CACHE_FLOOR:  # stripping only shrinks a file
            continue
        try:
            status = os.stat(os.path.join(root, path))
        except OSError:  # held back: not in the tree (yet)
            continue
        digest = known_sha256(status)
        if digest is not None and status.st_size >= CACHE_FLOOR:
            found.append([digest, status.st_size])
    return found


def write_zip_apart(
    root: Path,
    destination: Path,
    *,
    jobs: int | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    counted: Sequence[Path] = (),
    child: ZipChild | None = None,
) -> tuple[ZipResult, Counter[str]]:
    """write_zip(root, destination, jobs=, cache=MemberCache(cache_dir), progress=) in a child process
    (`child`, started ahead, or one started now, its work folder beside `destination`); with the child's
    opens and listings under the `counted` folders. `progress` may raise to stop the zip: the child is
    killed and what it had written is removed."""
    request = {
        "root": str(root),
        "destination": str(destination),
        "jobs": jobs,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "proven": proven_digests(),
        "counted": [str(folder) for folder in counted],
    }
    before = _identity(destination)
    if child is None:
        destination.parent.mkdir(parents=True, exist_ok=True)
    with child if child is not None else ZipChild(destination.parent) as running:
        process = running.process
        (running.work / REQUEST).write_text(json.dumps(request), encoding="utf-8")
        try:
            assert process.stdin is not None
            with contextlib.suppress(OSError):  # a child that died already is told by its status below
                process.stdin.write(GO)
                process.stdin.flush()
            _follow(process, progress)
            status = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            _remove_what_it_wrote(destination, before)
            raise
        finally:
            # Only now: the child takes the end of its input for this process's death.
            with contextlib.suppress(OSError):
                process.stdin.close()  # type: ignore[union-attr]
        answer = running.work / ANSWER
        if status != 0 or not answer.is_file():
            lines = running.errors().strip().splitlines()
            why = lines[-1] if lines else f"exit status {process.returncode}"
            raise BuildError(f"writing the zip failed: {why}")
        return _result(json.loads(answer.read_text(encoding="utf-8")))


def _result(answer: dict[str, Any]) -> tuple[ZipResult, Counter[str]]:
    opens = Counter(answer.pop("opens"))
    return ZipResult(**{**answer, "path": Path(answer["path"])}), opens


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def _remove_what_it_wrote(destination: Path, before: tuple[int, int, int] | None) -> None:
    """A stopped zip leaves what a stopped write_zip leaves: no temporary, and `destination` as it was
    (the child may have renamed its zip into place before it was told to stop)."""
    for leftover in destination.parent.glob(f".{destination.name}.*.part"):
        leftover.unlink(missing_ok=True)
    if _identity(destination) != before:
        destination.unlink(missing_ok=True)


def _follow(process: subprocess.Popen[str], progress: Callable[[int], None] | None) -> None:
    """The child's progress, line by line, until its output ends."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("advance ") and progress is not None:
            progress(int(line.split()[1]))
