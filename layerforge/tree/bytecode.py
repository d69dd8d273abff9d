"""Bytecode for the target's Python, compiled by an interpreter of that version, never the host's.

Lambda mounts layers read-only at /opt, so a module without valid bytecode is compiled from source on
every cold start. Hash-based pycs (`unchecked-hash`) stay valid after zipping, where fixed timestamps
would make timestamp-based ones look stale.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..runners.interpreters import Interpreter, packaged_script, stderr_tail
from .unpack import LAYER_PREFIX, LayerFile, LayerTree

# Where Lambda unpacks a layer: tracebacks then point at the real files.
RUNTIME_PREFIX = "/opt/python"


@dataclass(frozen=True)
class BytecodeReport:
    mode: str
    interpreter: str | None
    compiled: int
    failed: tuple[str, ...]
    added_bytes: int
    removed_sources: int
    skipped_reason: str | None = None
    debug_ranges: bool = True


def compile_tree(
    tree: LayerTree,
    mode: str,
    interpreter: Interpreter | None,
    *,
    jobs: int = 0,
    debug_ranges: bool = True,
    keep_sources: bool = False,
) -> BytecodeReport:
    """Compile every module of the tree; `debug_ranges=False` leaves out the column tables (Python 3.11+).

    Without them a pyc is about 7% smaller and a traceback still names the file and line, but no longer
    underlines the failing expression with ^^^ (as `-X no_debug_ranges` does at run time).
    """
    if mode == "none":
        return BytecodeReport(mode, None, 0, (), 0, 0, skipped_reason="bytecode = none")
    if interpreter is None:
        return BytecodeReport(
            mode, None, 0, (), 0, 0, skipped_reason="no interpreter of the target's Python version was found"
        )
    sources = sorted(path for path in tree.files if path.endswith(".py"))
    tag = f"{interpreter.implementation}-{interpreter.version[0]}{interpreter.version[1]}"
    targets = {source: pyc_for(source, mode, tag) for source in sources}
    shares = _shares(tree, sources, _SHARES)
    flags = ("-X", "no_debug_ranges") if not debug_ranges else ()
    command = [str(interpreter.path), "-I", "-S", *flags, "-c", packaged_script("tree/_compile_worker.py")]
    # One thread per running worker feeds it and drains its pipes, so no worker waits on a full pipe.
    with ThreadPoolExecutor(max_workers=max(1, min(jobs or os.cpu_count() or 1, _SHARES))) as pool:
        answers = list(pool.map(lambda share: _compile_share(command, tree, share, targets), shares))
    sizes: dict[str, int] = {}
    failed: list[str] = []
    for answer in answers:
        sizes.update(answer.get("sizes", {}))
        failed += [f"{source}: {error}" for source, error in sorted(answer.get("failed", {}).items())]
    added = _register(tree, targets, sizes)
    # A processed wheel keeps its sources: which of them stay is decided over the whole layer, after.
    removed_sources = _drop_sources(tree, added) if mode == "sourceless" and not keep_sources else 0
    return BytecodeReport(
        mode,
        str(interpreter.path),
        len(added),
        tuple(failed),
        sum(f.size for f in added),
        removed_sources,
        debug_ranges=debug_ranges,
    )


def pyc_for(source: str, mode: str, tag: str) -> str:
    """`sourceless`: x.pyc beside x.py, importable once the source is gone; else PEP 3147's __pycache__."""
    if mode == "sourceless":
        return source + "c"
    parent, _, name = source.rpartition("/")
    return f"{parent}/__pycache__/{name[:-3]}.{tag}.pyc"


# Bytecode is marshalled, and marshal marks an object shared by its reference count, which what the
# process compiled before can change: the same module compiled after other ones may differ by a few
# bytes. So the modules are split into shares decided by the modules alone, the same on every machine,
# each compiled in order by a fresh interpreter: the zip's bytes do not depend on how many cores built it.
_SHARES = 4
# A share is at least this much source: an interpreter's start-up (about 20 ms of CPU) is then a few
# percent of its share's compile time. Most wheels are small: requests' five wheels took twenty
# interpreters with four shares each, which cost a small layer more than compiling did.
_SHARE_BYTES = 256 * 1024


def _shares(tree: LayerTree, sources: list[str], most: int) -> list[list[str]]:
    """Up to `most` lists of about equal source bytes, biggest modules first, so the workers finish
    together; one list per _SHARE_BYTES of source."""
    total = sum(tree.files[source].size for source in sources)
    count = max(1, min(most, -(-total // _SHARE_BYTES)))
    shares: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for source in sorted(sources, key=lambda s: tree.files[s].size, reverse=True):
        lightest = loads.index(min(loads))
        shares[lightest].append(source)
        loads[lightest] += tree.files[source].size
    return [share for share in shares if share]


def _compile_share(
    command: list[str], tree: LayerTree, share: list[str], targets: dict[str, str]
) -> dict[str, Any]:
    # Layer paths, run from the layer's root: the worker answers in the tree's own keys.
    jobs = b"".join(
        os.fsencode(field) + b"\0" for source in share for field in (source, targets[source], _shown(source))
    )
    worker = subprocess.Popen(
        command, cwd=tree.root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = worker.communicate(jobs)
    answer = _answer(out, set(share), {targets[source] for source in share})
    if answer is None or worker.returncode != 0:
        # A worker that died (a crash in compile, killed) compiled nothing it can vouch for: what it wrote
        # goes, and its modules keep their sources.
        for source in share:
            (tree.root / targets[source]).unlink(missing_ok=True)
        detail = stderr_tail(err.decode(errors="replace"), f"exit status {worker.returncode}")
        return {"failed": {source: f"the compiling interpreter died: {detail}" for source in share}}
    return answer


def _answer(out: bytes, sources: set[str], pycs: set[str]) -> dict[str, Any] | None:
    """The worker's records (see _compile_worker.py), or None unless they end with its `end`; a record
    about a module that is not in its share is not taken."""
    fields = out.split(b"\0")
    records = [fields[at : at + 3] for at in range(0, len(fields) - 2, 3)]
    if not records or records[-1][0] != b"end":
        return None
    sizes: dict[str, int] = {}
    failed: dict[str, str] = {}
    for kind, name, detail in records[:-1]:
        path = os.fsdecode(name)
        if kind == b"ok" and path in pycs and detail.isdigit():
            sizes[path] = int(detail)
        elif kind == b"failed" and path in sources:
            failed[path] = detail.decode(errors="replace")
        else:
            return None
    return {"sizes": sizes, "failed": failed}


def _shown(source: str) -> str:
    """The file name tracebacks show: where Lambda unpacks the layer."""
    return RUNTIME_PREFIX + source.removeprefix(LAYER_PREFIX)


def _register(tree: LayerTree, targets: dict[str, str], sizes: dict[str, int]) -> list[LayerFile]:
    added = []
    for source, pyc in targets.items():
        size = sizes.get(pyc)
        if size is None:
            continue
        origin = tree.files[source]
        layer_file = LayerFile(pyc, size, origin.distribution, origin.wheel)
        tree.files[pyc] = layer_file
        added.append(layer_file)
    return added


def _drop_sources(tree: LayerTree, added: list[LayerFile]) -> int:
    dropped = 0
    for pyc in added:
        source = pyc.path[:-1]
        (tree.root / source).unlink()
        del tree.files[source]
        dropped += 1
    return dropped
