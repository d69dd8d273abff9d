"""The verification cache: a check that passed is not run again while nothing it read has changed.

A build that adds one requirement, or changes one strip rule, leaves almost every file the earlier
imports and smoke code read as it was; running them again costs seconds and proves nothing new. So each
run that passes is filed with its *record*: every fact about the layer its outcome could depend on, with
the value it had. A later run of the same check (same interpreter, program, modules or smoke code,
target and runtime stand-ins) is skipped when every fact still has its value, and runs otherwise.

The facts, all relative to the layer (or a stand-in folder), so that another staging folder matches:
- `content`: each file the process opened, or the dynamic loader mapped: its size and sha256, or that
  it was missing (an open that failed is a probe whose answer must not change either);
- `lookup`: each name importlib's FileFinder looked up in a folder: the entries that could answer it
  (`name`, `name.py`, `name.cpython-311-x86_64-linux-gnu.so`, ...), by kind. A README removed beside a
  module, or a new package under another name, changes none of them;
- `distribution`: each distribution importlib.metadata was asked for, in each folder it indexed: the
  `*.dist-info` (and egg) entries that could answer it. Asked for every one, the folder counts as listed;
- `listing`: each folder something else listed (importlib.metadata, pkgutil, glob, C code): all of it;
- `kind`: each path stat-ed from Python (os.path.exists, pathlib): missing, a folder, or a file's size;
- `source`: each source whose timestamps importlib compared with a .pyc: its size and mtime;
- `search`: the folders the loader searches for a mapped library's own libraries (its RUNPATH, and
  lib/ on LD_LIBRARY_PATH), listed whole, since the loader's misses are seen by nobody;
- `host`: each shared object mapped from outside the layer (the host's, the interpreter's): size, mtime.

Python's opens and listings come from the process's own audit hook (_bootstrap.py); opens from C (a
library reading a data file, the loader reading a library) from inotify (opens.py), which sees every
process: the build's own opens, counted by this process's audit hook, and the check processes' own, are
subtracted, and what remains goes into the record of every run that ran meanwhile. Without a complete
watch nothing is filed. What no watch here sees: a stat, or an open that fails, made from C (inotify
reports neither). The loader's own misses are covered by the `search` listings; a C library that probes
for a file under the layer that is not there, and behaves otherwise once it is, would go unseen.

Entries are files of proof_cache.py, written whole or not at all; a build that finds none runs the check.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..binaries.needed import read_dynamic
from ..cache import known_sha256, sha256_known_or_read
from ..proof_cache import ProofFiles
from .opens import OpenWatch

_HASH_JOBS = 4
FACT_KINDS = ("content", "lookup", "distribution", "listing", "kind", "source", "search", "host")


@dataclass(frozen=True)
class Roots:
    """The folders a check reads that belong to this build: label -> absolute path. "L" is the layer,
    "R0", "R1"... the runtime's stand-ins."""

    folders: Mapping[str, str]

    @classmethod
    def of(cls, layer: Path, runtime_paths: Sequence[Path]) -> Roots:
        folders = {"L": str(layer.resolve())}
        folders.update({f"R{i}": str(path.resolve()) for i, path in enumerate(runtime_paths)})
        return cls(folders)

    def relative(self, path: str) -> str | None:
        """`label:relative/posix/path` for a path under one of the folders, else None."""
        for label, folder in self.folders.items():
            if path == folder:
                return f"{label}:"
            if path.startswith(folder + os.sep):
                return f"{label}:{path[len(folder) + 1 :]}"
        return None

    def absolute(self, key: str) -> str:
        label, _, relative = key.partition(":")
        folder = self.folders[label]
        return os.path.join(folder, relative) if relative else folder

    def paths(self) -> list[Path]:
        return [Path(folder) for folder in self.folders.values()]


# ---------------------------------------------------------------------------------------------------
# What a run read


@dataclass(frozen=True)
class RunTrace:
    """One check process's own account (`seen` from _bootstrap.py) and the objects it had mapped."""

    seen: Mapping[str, Any]
    mapped: Sequence[str]


def python_opens(traces: Iterable[RunTrace]) -> Counter[str]:
    """Every open and listing the processes made themselves, in any phase, and one open of each library
    they mapped (the loader's): what inotify sees of them."""
    counts: Counter[str] = Counter()
    for trace in traces:
        for path, (recording, metadata) in trace.seen.get("opened", {}).items():
            counts[path] += int(recording) + int(metadata)
        for path, (finder, other, metadata) in trace.seen.get("listed", {}).items():
            counts[path] += int(finder) + int(other) + int(metadata)
        for path in trace.mapped:
            counts[path] += 1
    return counts


def facts_of(trace: RunTrace, extra: Iterable[str], roots: Roots, memo: Facts) -> dict[str, list[str]] | None:
    """The record's keys for one run: which facts, not yet their values. None when a listing by file
    descriptor (or anything else the trace cannot name) makes the run's reads unknowable."""
    seen = trace.seen
    if seen.get("unknown"):
        return None
    keys: dict[str, set[str]] = {kind: set() for kind in FACT_KINDS}

    def add(kind: str, path: str) -> None:
        relative = roots.relative(path)
        if relative is not None:
            keys[kind].add(relative)

    for path, (recording, _metadata) in seen.get("opened", {}).items():
        if recording:
            add("content", path)
    for path, (_finder, other, _metadata) in seen.get("listed", {}).items():
        if other:
            add("listing", path)
    for folder, name in seen.get("lookups", []):
        relative = roots.relative(folder)
        if relative is not None:
            keys["lookup"].add(f"{relative}\0{name}")
    for folder, name in seen.get("distributions", []):
        relative = roots.relative(folder)
        if relative is not None and name:
            keys["distribution"].add(f"{relative}\0{name}")
        elif relative is not None:
            keys["listing"].add(relative)
    for path in seen.get("stats", []):
        add("kind", path)
    for path in seen.get("sources", []):
        add("source", path)
    for path in extra:
        add("listing" if os.path.isdir(path) else "content", path)
    for path in trace.mapped:
        if roots.relative(path) is None:
            keys["host"].add(path)
            continue
        add("content", path)
        for folder in memo.search_folders(path):
            add("search", folder)
    add("search", os.path.join(roots.folders["L"], "lib"))  # LD_LIBRARY_PATH, when it is there
    return {kind: sorted(values) for kind, values in keys.items()}


def _search_folders(library: str) -> list[str]:
    dynamic = read_dynamic(Path(library))
    return list(dynamic.search_folders(os.path.dirname(library))) if dynamic is not None else []


# ---------------------------------------------------------------------------------------------------
# The values of the facts, now


class Facts:
    """Each fact's value in the tree as it is now, read from disk once and kept for the other records
    checked or filed against the same tree. A file whose sha256 this process proved (a piece's checkout)
    is not hashed again (cache.py)."""

    def __init__(self) -> None:
        self._contents: dict[str, list[Any] | None] = {}
        self._folders: dict[str, list[list[str]] | None] = {}
        self._search: dict[str, list[str]] = {}
        # A folder's entries by the name a lookup or a metadata query would ask for: with thousands of
        # lookups in a few large folders (scipy/special), scanning the listing for each was quadratic.
        self._by_module: dict[str, dict[str, list[list[str]]]] = {}
        self._by_distribution: dict[str, dict[str, list[list[str]]]] = {}

    def values(
        self, keys: Mapping[str, Sequence[str]], roots: Roots, kinds: Sequence[str] = FACT_KINDS
    ) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for kind in kinds:
            if kind == "content":
                found[kind] = self.contents([roots.absolute(key) for key in keys.get(kind, ())])
            else:
                found[kind] = [self.value(kind, key, roots) for key in keys.get(kind, ())]
        return found

    def value(self, kind: str, key: str, roots: Roots) -> Any:
        """One fact's value now (any kind but "content", which `contents` reads in parallel)."""
        if kind == "lookup":
            modules, name = self._indexed(roots, key, self._by_module, _module_index)
            return None if modules is None else modules.get(name, [])
        if kind == "distribution":
            distributions, name = self._indexed(roots, key, self._by_distribution, _distribution_index)
            if distributions is None:
                return None
            # Sorted, as the listing is: the entries in the order a scan of the listing would give them.
            found = [*distributions.get(_normalized(name), []), *distributions.get(_ANY_DISTRIBUTION, [])]
            return sorted(found)
        if kind in ("listing", "search"):
            return self._folder(roots.absolute(key))
        if kind == "kind":
            return _kind(roots.absolute(key))
        if kind == "source":
            return _source(roots.absolute(key))
        if kind == "host":
            return _host(key)
        raise ValueError(f"no fact of kind {kind!r}")

    def contents(self, paths: Sequence[str]) -> list[list[Any] | None]:
        unread = []
        for path in sorted({path for path in paths if path not in self._contents}):
            value = _content(path, read=False)
            if value is _UNREAD:
                unread.append(path)
            else:
                self._contents[path] = value
        # Only files to hash go to threads (hashlib lets go of the GIL): handing the pool the thousand
        # files whose digests a checkout proved cost 0.17 s of lock handoffs at the end of every build.
        if unread:
            with ThreadPoolExecutor(max_workers=_HASH_JOBS) as pool:
                self._contents.update(zip(unread, pool.map(_content, unread), strict=True))
        return [self._contents[path] for path in paths]

    def search_folders(self, library: str) -> list[str]:
        if library not in self._search:
            self._search[library] = _search_folders(library)
        return self._search[library]

    def _folder(self, path: str) -> list[list[str]] | None:
        if path not in self._folders:
            self._folders[path] = _listing(path)
        return self._folders[path]

    def _indexed(
        self,
        roots: Roots,
        key: str,
        indexes: dict[str, dict[str, list[list[str]]]],
        index_of: Callable[[list[list[str]]], dict[str, list[list[str]]]],
    ) -> tuple[dict[str, list[list[str]]] | None, str]:
        """The index of the folder a `folder\0name` key names (None when it is no folder), and the name."""
        folder, _, name = key.partition("\0")
        path = roots.absolute(folder)
        listing = self._folder(path)
        if listing is None:
            return None, name
        if path not in indexes:
            indexes[path] = index_of(listing)
        return indexes[path], name


def _module_index(listing: list[list[str]]) -> dict[str, list[list[str]]]:
    """Entries by the name FileFinder answers with them: the package folder, or a module file of any
    suffix (`name` and `name.*`, never a dotted name: FileFinder looks up one part of a name at a time)."""
    index: dict[str, list[list[str]]] = {}
    for entry in listing:
        index.setdefault(entry[0].partition(".")[0], []).append(entry)
    return index


def _distribution_index(listing: list[list[str]]) -> dict[str, list[list[str]]]:
    """Entries by the normalized distribution name importlib.metadata could answer with them (by the
    newest rules, which match all that 3.9's did, and more: a fact about more entries only fails more
    often). 3.9's legacy `EGG-INFO` inside an egg answers any name."""
    index: dict[str, list[list[str]]] = {}
    for entry in listing:
        if entry[0].lower() == "egg-info":
            index.setdefault(_ANY_DISTRIBUTION, []).append(entry)
        elif entry[0].lower().endswith((".dist-info", ".egg-info", ".egg")):
            index.setdefault(_normalized(entry[0].rpartition(".")[0].partition("-")[0]), []).append(entry)
    return index


_ANY_DISTRIBUTION = "\0any"  # no distribution's normalized name: it has no NUL


def _normalized(name: str) -> str:
    """A distribution name as importlib.metadata compares them (PEP 503, with "_")."""
    return re.sub(r"[-_.]+", "_", name).lower()


_UNREAD: list[Any] = ["unread"]  # what `_content(read=False)` gives for a file it would have to hash


def _content(path: str, *, read: bool = True) -> list[Any] | None:
    try:
        found = os.stat(path)
        if stat.S_ISDIR(found.st_mode):
            return ["dir"]
        digest = known_sha256(found)
        if digest is None:
            if not read:
                return _UNREAD
            digest = sha256_known_or_read(path)
        return [found.st_size, digest, bool(found.st_mode & 0o111)]
    except OSError:
        return None


def _listing(path: str) -> list[list[str]] | None:
    try:
        with os.scandir(path) as entries:
            return sorted([entry.name, _entry_kind(entry)] for entry in entries)
    except OSError:
        return None


def _entry_kind(entry: os.DirEntry[str]) -> str:
    try:
        return "dir" if entry.is_dir() else "file" if entry.is_file() else "other"
    except OSError:
        return "other"


def _kind(path: str) -> list[Any] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return ["dir"] if stat.S_ISDIR(found.st_mode) else ["file", found.st_size]


def _source(path: str) -> list[Any] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return [found.st_size, int(found.st_mtime)]


def _host(path: str) -> list[Any] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return [found.st_size, found.st_mtime_ns]


# ---------------------------------------------------------------------------------------------------
# The store


@dataclass(frozen=True)
class Ran:
    """One check process as verify_layer saw it: its result (None when it died), whether it passed, and
    what it printed."""

    result: Mapping[str, Any] | None
    passed: bool
    output: str = ""


@dataclass(frozen=True)
class Proof:
    """A run that passed: what it checked (`modules`, or the smoke code in the context), its record, and
    what it reported (imports, cold-import seconds, memory, modules compiled from source, libraries
    loaded), with layer paths relative."""

    modules: tuple[str, ...]
    keys: Mapping[str, Sequence[str]]
    values: Mapping[str, Sequence[Any]]
    outcome: Mapping[str, Any]

    def first_change(self, roots: Roots, facts: Facts) -> str | None:
        """The first fact that no longer has its value, said for a user (see `said`); None when every
        one still has it. The cheap kinds first: a name a lookup finds now, or a folder listed
        differently, settles it without hashing a file."""
        for kind in FACT_KINDS:
            if kind == "content":
                continue
            keys, values = self.keys[kind], self.values[kind]
            if len(keys) != len(values):
                return "its record is damaged"
            for key, value in zip(keys, values, strict=True):
                now = facts.value(kind, key, roots)
                if now != value and _normal(now) != _normal(value):
                    return said(kind, key, value, now)
        keys, stored = self.keys["content"], self.values["content"]
        now_contents = facts.contents([roots.absolute(key) for key in keys])
        if len(now_contents) != len(stored):
            return "its record is damaged"
        for key, now, value in zip(keys, now_contents, stored, strict=True):
            if now != value and _normal(now) != _normal(value):
                return said("content", key, value, now)
        return None


def said(kind: str, key: str, was: Any, now: Any) -> str:
    """A fact that changed, as a user reads it: what it is about, and how it changed."""
    place, _, name = key.partition("\0")
    where = _shown(place)
    if kind == "lookup":
        if not was and now:
            entry = now[0][0] if isinstance(now[0], list) and now[0] else name
            return f"{where}/{entry} is there now; an earlier run looked for `{name}` there and found nothing"
        if was and not now:
            return f"{where} no longer has `{name}`, which an earlier run found there"
        return f"what stands for `{name}` in {where} changed"
    if kind == "distribution":
        if not was and now:
            return f"{where} now has metadata of {name}, which an earlier run looked for and found none"
        return f"the metadata of {name} in {where} changed"
    if kind == "host":
        return f"the host library {key} changed"
    if was is None:
        return f"{where} is there now; an earlier run looked for it and found nothing"
    if now is None:
        return f"{where} is gone"
    return {
        "content": f"{where} changed",
        "listing": f"the listing of {where} changed",
        "search": f"the listing of {where}, where the loader looks for libraries, changed",
        "kind": f"{where} changed its kind or size",
        "source": f"{where}, a source whose timestamps importlib compared, changed",
    }[kind]


def _shown(key: str) -> str:
    """`L:python/x` as the layer's `python/x`; a runtime stand-in's `R0:x` as `x (the runtime's)`."""
    label, _, relative = key.partition(":")
    if label == "L":
        return relative or "the layer"
    return f"{relative or '.'} (the runtime's)"


class ProofStore:
    """The proofs filed for each check context (proof_cache.py keeps the files)."""

    def __init__(self, root: Path) -> None:
        self.files = ProofFiles(root)

    def candidates(self, context: str) -> list[tuple[Path, Proof]]:
        """Every whole entry filed under `context`; one that is no proof is removed."""
        found = []
        for path, data in self.files.read_all(context):
            proof = _proof_from(data)
            if proof is None:
                self.files.discard(path)
            else:
                found.append((path, proof))
        return found

    def find(self, context: str, modules: Sequence[str], roots: Roots, memo: Facts) -> Found:
        """Proofs whose modules together cover as many of `modules` as they can, each still holding;
        biggest first. For a smoke run, `modules` is empty and one holding proof covers it. With what
        changed for the first proof that no longer holds, when there was one."""
        wanted = set(modules)
        chosen: list[Proof] = []
        changed: str | None = None
        left = set(wanted)
        candidates = [(path, p) for path, p in self.candidates(context) if set(p.modules) <= wanted]
        candidates.sort(key=lambda item: (-len(item[1].modules), item[1].modules))
        for path, proof in candidates:
            if chosen and not (set(proof.modules) & left):
                continue
            change = proof.first_change(roots, memo)
            if change is None:
                self.files.used(path)
                chosen.append(proof)
                left -= set(proof.modules)
                if not wanted or not left:
                    break
            elif changed is None:
                changed = change
        return Found(chosen, changed)

    def put(self, context: str, proof: Proof) -> None:
        self.files.put(
            context,
            {
                "layerforge": __version__,
                "modules": list(proof.modules),
                "keys": proof.keys,
                "values": proof.values,
                "outcome": proof.outcome,
            },
        )


@dataclass(frozen=True)
class Found:
    """What ProofStore.find found: the proofs that hold, and what changed for the first that did not."""

    proofs: list[Proof]
    changed: str | None


def _proof_from(data: Mapping[str, Any]) -> Proof | None:
    """A filed entry as a Proof; None when it has not the shape `put` writes (a restored cache is input)."""
    try:
        proof = Proof(
            tuple(str(m) for m in data["modules"]),
            {kind: [str(k) for k in data["keys"][kind]] for kind in FACT_KINDS},
            {kind: list(data["values"][kind]) for kind in FACT_KINDS},
            dict(data["outcome"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if any(len(proof.keys[kind]) != len(proof.values[kind]) for kind in FACT_KINDS):
        return None
    return proof


def context_key(material: Mapping[str, Any]) -> str:
    """The check's context: everything but the modules that decides its outcome besides the files."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _normal(values: Any) -> Any:
    """JSON's view of the values: tuples and lists alike, as they come back from an entry."""
    return json.loads(json.dumps(values))


# ---------------------------------------------------------------------------------------------------
# One verification's use of the store


class ProofSession:
    """What one verify_layer call takes from the store, and files in it.

    `context` is everything but the files and the modules that decides a run's outcome (see
    verify_layer). The imports that earlier proofs cover are left out of the run; the smoke code is not
    run when a proof covers it. The imports run itself always runs, if only for the metadata reads and
    the report of its isolation, which no proof stands in for.
    """

    def __init__(
        self,
        store: ProofStore,
        context: Mapping[str, Any],
        roots: Roots,
        modules: Sequence[str],
        smoke: bool,
    ) -> None:
        self.store = store
        self.roots = roots
        self.memo = memo = Facts()
        self.imports_context = context_key({**context, "mode": "imports"})
        self.smoke_context = context_key({**context, "mode": "smoke"})
        imports = store.find(self.imports_context, modules, roots, memo) if modules else Found([], None)
        self.import_proofs = imports.proofs
        covered = {m for proof in self.import_proofs for m in proof.modules}
        self.modules_to_run = [m for m in modules if m not in covered]
        self.covered = [m for m in modules if m in covered]
        found = store.find(self.smoke_context, (), roots, memo) if smoke else Found([], None)
        self.smoke_proof = next(iter(found.proofs), None)
        # Why a run that an earlier build's proof could have stood for runs all the same.
        self._changed = {
            "the imports": imports.changed if self.modules_to_run else None,
            "the smoke code": found.changed if self.smoke_proof is None else None,
        }

    def reused(self) -> tuple[str, ...]:
        """The checks not run again, as the report names them."""
        imports = ("imports of " + ", ".join(self.covered),) if self.covered else ()
        return imports + (("the smoke code",) if self.smoke_proof is not None else ())

    def run_again(self) -> tuple[str, ...]:
        """The checks that ran although an earlier build filed a proof for them, each with the first thing
        it had read that changed since: "the smoke code: python/x.py is gone"."""
        return tuple(f"{check}: {change}" for check, change in self._changed.items() if change is not None)

    def file(self, watch: OpenWatch, imports: Ran, smoke: Ran | None) -> None:
        """Once `watch` has closed, file a proof for each run that passed: the imports run, and the smoke
        run when it ran. Nothing is filed when the watch was incomplete. What each run reported is taken
        now: the caller goes on to add the proofs' own reports to it."""
        runs = [run for run in (imports, smoke) if run is not None and run.result is not None]
        watch.note_processes(python_opens(_trace(run.result) for run in runs if run.result is not None))
        pending = [
            (context, modules, _trace(run.result), self._outcome(run.result, run.output))
            for run, context, modules in (
                (imports, self.imports_context, tuple(self.modules_to_run)),
                (smoke, self.smoke_context, ()),
            )
            if run is not None and run.result is not None and run.passed and (modules or run is smoke)
        ]

        def file_passed() -> None:
            extra = watch.unexplained()
            if extra is None:
                return
            # The tree is read-only from before the checks began until after: what was read then holds.
            memo = self.memo
            for context, modules, trace, outcome in pending:
                keys = facts_of(trace, extra, self.roots, memo)
                if keys is not None:
                    proof = Proof(modules, keys, memo.values(keys, self.roots), outcome)
                    self.store.put(context, proof)

        watch.when_closed(file_passed)

    def _outcome(self, result: Mapping[str, Any], output: str) -> dict[str, Any]:
        return {
            "cold_import_seconds": result.get("cold_import_seconds"),
            "peak_rss_bytes": (result.get("memory") or {}).get("peak_rss_bytes"),
            "compiled": [[name, self._relative(path)] for name, path in result.get("compiled", [])],
            "loaded": [
                self._relative(path) for path in (result.get("loaded_objects") or {}).get("paths", [])
            ],
            "output": output,
        }

    def _relative(self, path: str) -> str:
        relative = self.roots.relative(path)
        return relative if relative is not None else "/" + path.lstrip("/")

    def _absolute(self, path: str) -> str:
        return path if path.startswith("/") else self.roots.absolute(path)

    def merge_imports(self, result: dict[str, Any], imported: list[str], modules: Sequence[str]) -> list[str]:
        """Add what the covering proofs reported to the imports run's result; returns the imported
        modules, in order."""
        ran = set(imported)
        if self.import_proofs and not self.modules_to_run:
            result["cold_import_seconds"] = 0.0  # the run imported nothing: its figure is only the loop's
        for proof in self.import_proofs:
            outcome = proof.outcome
            seconds = outcome.get("cold_import_seconds")
            if isinstance(seconds, (int, float)) and isinstance(
                result.get("cold_import_seconds"), (int, float)
            ):
                result["cold_import_seconds"] += seconds
            self._merge_common(result, outcome)
        covered = set(self.covered)
        return [m for m in modules if m in ran or m in covered]

    def smoke_result(self, like: Mapping[str, Any]) -> dict[str, Any]:
        """The smoke run's result as its proof reported it; the interpreter's own paths from `like`."""
        assert self.smoke_proof is not None
        loaded = dict(like.get("loaded_objects") or {})
        result: dict[str, Any] = {
            "smoke_ok": True,
            "memory": {},
            "compiled": [],
            "loaded_objects": dict(loaded, paths=[]),
        }
        self._merge_common(result, self.smoke_proof.outcome)
        return result

    def _merge_common(self, result: dict[str, Any], outcome: Mapping[str, Any]) -> None:
        memory = result.setdefault("memory", {})
        peak = outcome.get("peak_rss_bytes")
        if isinstance(peak, int) and (
            not isinstance(memory.get("peak_rss_bytes"), int) or peak > memory["peak_rss_bytes"]
        ):
            memory["peak_rss_bytes"] = peak
        result.setdefault("compiled", []).extend(
            [name, self._absolute(path)] for name, path in outcome.get("compiled", [])
        )
        objects = result.setdefault("loaded_objects", {})
        paths = set(objects.get("paths", []))
        paths.update(self._absolute(path) for path in outcome.get("loaded", []))
        objects["paths"] = sorted(paths)


def _trace(result: Mapping[str, Any]) -> RunTrace:
    return RunTrace(
        seen=result.get("seen") or {"unknown": ["the process gave no account of what it read"]},
        mapped=list((result.get("loaded_objects") or {}).get("paths", [])),
    )
