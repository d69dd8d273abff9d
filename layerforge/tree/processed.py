"""Each wheel processed on its own, through the processed-wheel cache; the layer assembled from the pieces.

A piece is what a wheel becomes by itself: unpacked, its strip rules decided, its shared objects
stripped, its modules compiled. Its key is everything that decides those bytes: the wheel's sha256 and
name, the rule each of its files meets (so a changed rule re-processes only the wheels it touches), the
target, the bytecode mode and the compiling interpreter's version, the strip level, layerforge's version
and the source of the modules that make pieces.

What spans wheels is decided after, over the pieces, exactly as a build without the cache: which wheel
owns a path two of them ship, the import guard (the guarded modules a rule would remove stay in their
wheel, which the build has at hand, so that the guard can still spare them), the shared libraries, the
top-level declarations. A spared module is compiled then, in fresh interpreters of its own. Every build
takes this one path, an empty cache only making every piece again, so the layer is byte for byte the same
whichever pieces came from the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from .. import __version__
from ..binaries import binfmt, elfexcise, elfheaders, elfstrip
from ..binaries.elfstrip import StripLevel, StripReport, strip_debug
from ..piece_cache import (
    FILES,
    PieceCache,
    checkout,
    code_fingerprint,
    link_or_copy,
    matches,
    place,
    remove_tree,
)
from ..runners.interpreters import Interpreter
from . import _compile_worker, bytecode, unpack
from .bytecode import BytecodeReport, compile_tree
from .slim import RuleMatcher, SlimReport, import_words
from .unpack import LayerFile, LayerTree, _Planned, _refuse_file_folder_clashes, _write_batches, plan_wheel


@dataclass(frozen=True)
class PieceSettings:
    """What decides a piece's bytes besides the wheel and its rules."""

    runtime: str
    arch: str
    bytecode: str
    debug_ranges: bool
    strip_level: StripLevel | None  # None: shared objects are left as they are
    compiler: tuple[str, int, int, bool] | None  # implementation, major, minor, free-threaded


def piece_settings(
    runtime: str,
    arch: str,
    bytecode_mode: str,
    *,
    debug_ranges: bool,
    strip_level: StripLevel | None,
    compiler: Interpreter | None,
) -> PieceSettings:
    compiling = compiler is not None and bytecode_mode != "none"
    facts = (
        (compiler.implementation, compiler.version[0], compiler.version[1], compiler.free_threaded)
        if compiling and compiler is not None
        else None
    )
    return PieceSettings(runtime, arch, bytecode_mode, debug_ranges, strip_level, facts)


@dataclass(frozen=True)
class WheelFile:
    path: Path  # the build's own link to the wheel
    sha256: str


@dataclass
class Assembled:
    """The layer tree made of pieces, before the decisions that span wheels; what `finish` adds after."""

    tree: LayerTree
    from_cache: list[str] = field(default_factory=list)  # wheel names
    processed: list[str] = field(default_factory=list)
    final_sizes: dict[str, int] = field(default_factory=dict)  # owned, processed paths
    pycs: dict[str, tuple[str, str]] = field(default_factory=dict)  # source -> (pyc path, made file)
    failed: dict[str, str] = field(default_factory=dict)  # source -> why it did not compile
    strip: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> {"saved"|"skipped"...}


@dataclass(frozen=True)
class _Wheel:
    file: WheelFile
    distribution: str
    planned: tuple[_Planned, ...]
    # Guarded modules a rule removes, left in the wheel: the import guard may spare one, which is then
    # written from the wheel (checked against its RECORD). Each piece of the sklearn stack held them
    # (2,100 test modules), and a file created here costs 0.15 to 0.35 ms of CPU.
    held: frozenset[str]
    processed: frozenset[str]  # what no rule removes: the piece's files, stripped and compiled
    key: str
    # The key without the rules: pieces of one family process a file they both keep to the same bytes.
    family: str = ""


def assemble(
    wheels: Sequence[WheelFile],
    root: Path,
    work: Path,
    cache: PieceCache,
    matcher: RuleMatcher,
    settings: PieceSettings,
    compiler: Interpreter | None,
    *,
    jobs: int,
    ready: Mapping[str, Path] | None = None,
) -> Assembled:
    """Each wheel's piece from the cache, or made (and filed); the tree `root` made of them. `ready` maps
    piece keys to pieces checked out already (head_start.py), whose files are moved in instead."""
    plans = {w.path: _planned(w) for w in sorted(wheels, key=lambda w: w.path.name)}
    _refuse_file_folder_clashes({path: list(planned) for path, planned in plans.items()})
    described = [_describe(w, plans[w.path], matcher, settings) for w in wheels]
    described.sort(key=lambda w: w.file.path.name)
    assembled = Assembled(LayerTree(root))
    owner: dict[str, int] = {}
    for index, wheel in enumerate(described):
        for item in wheel.planned:
            previous = owner.get(item.destination)
            if previous is not None:
                assembled.tree.conflicts.append(
                    f"{item.destination}: in {described[previous].file.path.name} and "
                    f"{wheel.file.path.name}; kept {wheel.file.path.name}'s"
                )
            owner[item.destination] = index
    owned: list[list[str]] = [[] for _ in described]
    for path, index in owner.items():
        owned[index].append(path)
    root.mkdir(parents=True, exist_ok=True)

    def where(index: int) -> _Where:
        # What the tree takes as it is goes straight in; the rest waits in the piece's own folder.
        direct = frozenset(p for p in owned[index] if p in described[index].processed)
        return _Where(root, work / str(index), direct)

    # The pieces checked out ahead move in first, one after another, before any other thread makes
    # folders in the tree: a folder moved in whole takes the place of an empty one of its name, and a
    # thread that was about to make a folder inside that one would find it gone.
    outcomes: dict[int, tuple[dict[str, Any], dict[str, int], bool]] = {}
    for index, wheel in enumerate(described):
        early = (ready or {}).get(wheel.key)
        taken = _take_early(wheel, where(index), cache, early) if early is not None else None
        if taken is not None:
            outcomes[index] = taken

    def obtain(index: int) -> tuple[dict[str, Any], dict[str, int], bool]:
        return _obtain(described[index], where(index), cache, settings, compiler, jobs)

    # Biggest first, so that the threads finish together.
    rest = [i for i in range(len(described)) if i not in outcomes]
    rest.sort(key=lambda i: -described[i].file.path.stat().st_size)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        outcomes.update(zip(rest, pool.map(obtain, rest), strict=True))
    for index, wheel in enumerate(described):
        record, sizes, hit = outcomes[index]
        (assembled.from_cache if hit else assembled.processed).append(wheel.file.path.name)
        _place(assembled, wheel, work / str(index), record, sizes, owned[index])
    return assembled


@dataclass(frozen=True)
class _Where:
    """Where a piece's files are checked out: those in `direct` into the tree, the rest into `folder`."""

    root: Path
    folder: Path
    direct: frozenset[str]

    def __call__(self, path: str) -> str:
        return os.path.join(self.root if path in self.direct else self.folder, path)

    def clear(self) -> None:
        """Undo a checkout that failed its check, before the piece is made again."""
        for path in self.direct:
            (self.root / path).unlink(missing_ok=True)
        remove_tree(self.folder)


def _place(
    assembled: Assembled,
    wheel: _Wheel,
    folder: Path,
    record: dict[str, Any],
    sizes: dict[str, int],
    owned: list[str],
) -> None:
    tree = assembled.tree
    planned = {item.destination: item for item in wheel.planned}
    name = wheel.file.path.name
    for path in sorted(owned):
        tree.files[path] = LayerFile(path, planned[path].info.file_size, wheel.distribution, name)
        if path in wheel.processed:  # checked out into the tree already
            assembled.final_sizes[path] = sizes[path]
        elif path in wheel.held:
            tree.held[path] = (wheel.file.path, planned[path])
    owned_set = set(owned)
    for source, pyc in record["pycs"].items():
        if source in owned_set:
            # A wheel that ships host bytecode at that path (no rule removed it): checked out into the
            # tree already, and replaced by itself.
            in_tree = pyc in owned_set and pyc in wheel.processed
            assembled.pycs[source] = (pyc, os.path.join(tree.root if in_tree else folder, pyc))
            assembled.final_sizes[pyc] = sizes[pyc]
    for source, error in record["failed"].items():
        if source in owned_set:
            assembled.failed[source] = error
    for path, outcome in record["strip"].items():
        if path in owned_set:
            assembled.strip[path] = outcome
    for path, words in record["imports"].items():
        if path in owned_set:
            tree.import_words[path] = frozenset(words)


def finish(
    assembled: Assembled,
    slim: SlimReport,
    mode: str,
    compiler: Interpreter | None,
    *,
    debug_ranges: bool,
    jobs: int,
) -> tuple[BytecodeReport, StripReport]:
    """After slimming: the pieces' bytecode for what stayed, the spared modules compiled, sizes after
    stripping. Returns what compile_tree and strip_debug would have said of the whole tree."""
    tree = assembled.tree
    for path in list(tree.files):
        size = assembled.final_sizes.get(path)
        if size is not None:
            tree.files[path] = dataclasses.replace(tree.files[path], size=size)
    strip = _strip_report({p: o for p, o in assembled.strip.items() if p in tree.files})
    if mode == "none" or compiler is None:
        return compile_tree(tree, mode, compiler), strip
    added: list[LayerFile] = []
    # Strings, and each folder made once: pathlib and a mkdir per module were 0.1 s of every build.
    made_folders: set[str] = set()
    for source, (pyc, made) in sorted(assembled.pycs.items()):
        origin = tree.files.get(source)
        if origin is None:
            continue
        target = os.path.join(tree.root, pyc)
        folder = os.path.dirname(target)
        if folder not in made_folders:
            os.makedirs(folder, exist_ok=True)
            made_folders.add(folder)
        os.replace(made, target)
        tree.files[pyc] = LayerFile(pyc, assembled.final_sizes[pyc], origin.distribution, origin.wheel)
        added.append(tree.files[pyc])
    failed = [f"{s}: {e}" for s, e in sorted(assembled.failed.items()) if s in tree.files]
    spared = sorted(s.path for s in slim.spared if s.path.endswith(".py") and s.path in tree.files)
    if spared:
        guarded = LayerTree(tree.root, files={path: tree.files[path] for path in spared})
        report = compile_tree(
            guarded, mode, compiler, jobs=jobs, debug_ranges=debug_ranges, keep_sources=True
        )
        failed += report.failed
        for path, layer_file in guarded.files.items():
            if path not in spared:
                tree.files[path] = layer_file
                added.append(layer_file)
    removed_sources = 0
    if mode == "sourceless":
        for layer_file in added:
            source = layer_file.path[:-1]
            (tree.root / source).unlink()
            del tree.files[source]
            removed_sources += 1
    report = BytecodeReport(
        mode,
        str(compiler.path),
        len(added),
        tuple(sorted(failed)),
        sum(f.size for f in added),
        removed_sources,
        debug_ranges=debug_ranges,
    )
    return report, strip


def _strip_report(outcomes: dict[str, dict[str, Any]]) -> StripReport:
    stripped = tuple(sorted(p for p, o in outcomes.items() if "saved" in o))
    return StripReport(
        stripped=stripped,
        saved=MappingProxyType({p: int(outcomes[p]["saved"]) for p in stripped}),
        unchanged=tuple(sorted(p for p, o in outcomes.items() if o.get("unchanged"))),
        skipped=MappingProxyType(
            {p: str(o["skipped"]) for p, o in sorted(outcomes.items()) if "skipped" in o}
        ),
    )


def _deduplicated(planned: list[_Planned]) -> tuple[_Planned, ...]:
    """One entry per destination (`x.py` and `x.data/purelib/x.py` land on the same file): the last."""
    return tuple({item.destination: item for item in planned}.values())


class _Plans:
    """Each wheel's checked plan, by its name and sha256: the head start plans the previous lock's wheels
    while pip resolves, and the build that follows takes its plans instead of reading and checking every
    entry again (0.3 s for the sklearn stack). A plan depends on the wheel's bytes alone; the entries'
    offsets are the same in any link to them."""

    _KEPT = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[tuple[str, str], tuple[_Planned, ...]] = {}

    def of(self, wheel: WheelFile) -> tuple[_Planned, ...]:
        key = (wheel.path.name, wheel.sha256)
        with self._lock:
            known = self._plans.get(key)
        if known is not None:
            return known
        planned = _deduplicated(plan_wheel(wheel.path))
        with self._lock:
            while len(self._plans) >= self._KEPT:
                del self._plans[next(iter(self._plans))]
            self._plans[key] = planned
        return planned


_planned = _Plans().of


def describe_wheel(wheel: WheelFile, matcher: RuleMatcher, settings: PieceSettings) -> _Wheel:
    """The wheel as assemble sees it, with its piece's key."""
    return _describe(wheel, _planned(wheel), matcher, settings)


def _describe(
    wheel: WheelFile, planned: tuple[_Planned, ...], matcher: RuleMatcher, settings: PieceSettings
) -> _Wheel:
    distribution = canonicalize_name(parse_wheel_filename(wheel.path.name)[0])
    held: set[str] = set()
    processed: set[str] = set()
    rules = hashlib.sha256()
    for item in sorted(planned, key=lambda p: p.destination):
        rule = matcher.rule_for(item.destination, distribution)
        if rule is None:
            processed.add(item.destination)
            continue
        rules.update(f"{item.destination}\0{rule.name}\0{int(rule.guarded)}\n".encode())
        # Only a guarded module can be spared by the import guard: the rest of what a rule removes goes.
        if rule.guarded and item.destination.endswith(".py"):
            held.add(item.destination)
    material = {
        "layerforge": __version__,
        "code": _code(),
        "wheel": [wheel.path.name, wheel.sha256],
        "rules": rules.hexdigest(),
        "settings": dataclasses.asdict(settings),
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    material.pop("rules")
    family = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return _Wheel(wheel, distribution, planned, frozenset(held), frozenset(processed), key, family)


@cache
def _code() -> str:
    modules = [unpack, bytecode, _compile_worker, elfstrip, elfexcise, elfheaders, binfmt]
    here = Path(__file__)
    return code_fingerprint([here, *(Path(str(m.__file__)) for m in modules)])


def _take_early(
    wheel: _Wheel, where: _Where, cache_: PieceCache, early: Path
) -> tuple[dict[str, Any], dict[str, int], bool] | None:
    """A piece checked out ahead (`early`, its files checked already) moved into place, as `_obtain`
    answers; None when it cannot be (then `_obtain` checks it out of the cache, or makes it)."""
    manifest = cache_.manifest(wheel.key)
    if manifest is None:
        return None
    files = manifest["files"]
    record = valid_record(manifest.get("record"), wheel, files)
    if record is None:
        return None
    if _move_in(early, where, wheel, files):
        return record, _sizes(files), True
    where.clear()
    return None


def _obtain(
    wheel: _Wheel,
    where: _Where,
    cache_: PieceCache,
    settings: PieceSettings,
    compiler: Interpreter | None,
    jobs: int,
) -> tuple[dict[str, Any], dict[str, int], bool]:
    """The piece checked out into `folder`: (its record, its files' sizes, whether it came from the cache)."""
    manifest = cache_.manifest(wheel.key)
    if manifest is not None:
        files = manifest["files"]
        record = valid_record(manifest.get("record"), wheel, files)
        entry = cache_.entry_dir(wheel.key) / FILES
        if record is not None and checkout(entry, where, files):
            return record, _sizes(files), True
        where.clear()
    # Damaged, or of another format: an entry is whole from its rename on, so none is mid-write here.
    cache_.discard(wheel.key)
    temporary = cache_.temporary()
    made = temporary / FILES if temporary is not None else where.folder / "made"
    try:
        record = _process(wheel, made, settings, compiler, jobs, _sibling(cache_, wheel))
        sizes = {path: (made / path).stat().st_size for path in _files(made)}
        if not checkout(made, where, dict.fromkeys(sizes), check=False):
            raise OSError(f"the piece of {wheel.file.path.name} could not be checked out of {made}")
        if temporary is not None:
            cache_.install(temporary, wheel.key, record)
            cache_.join_family(wheel.family, wheel.key)
    finally:
        # A wheel refused as hostile, or a failure: nothing of it stays in the cache.
        if temporary is not None:
            remove_tree(temporary)
    return record, sizes, False


def _sizes(files: Mapping[str, Any]) -> dict[str, int]:
    return {path: int(listed[0]) for path, listed in files.items()}


def early_layout(folder: Path, wheel: _Wheel) -> _Where:
    """Where a head start checks a piece out (head_start.py): what the tree takes as it is under
    `folder/tree`, at its layer paths, and the rest under `folder/side`, as `_Where` would split them if
    no other wheel ships one of its files."""
    return _Where(folder / _EARLY_TREE, folder / _EARLY_SIDE, wheel.processed)


_EARLY_TREE = "tree"
_EARLY_SIDE = "side"


def _move_in(early: Path, where: _Where, wheel: _Wheel, files: Mapping[str, Any]) -> bool:
    """Move a piece checked out ahead (`early_layout`) into place. False when anything is missing or in
    the way (then the caller checks out from the cache).

    When the piece owns all it keeps (no other wheel ships one of those files: the usual case), each
    folder the tree lacks moves in one rename: the sklearn stack's 12,000 files one by one cost 0.4 s of
    CPU in every warm build. Otherwise file by file, each to where `where` puts it."""
    layout = early_layout(early, wheel)
    try:
        if where.direct == wheel.processed:
            if layout.root.is_dir():
                _merge_into(os.fspath(layout.root), os.fspath(where.root))
            if layout.folder.is_dir():
                where.folder.parent.mkdir(parents=True, exist_ok=True)
                os.rename(layout.folder, where.folder)  # fails unless the folder is new (or empty)
            return True

        def rename(path: str, _origin: str, target: str) -> bool:
            os.rename(layout(path), target)
            return True

        return place(files, os.fspath(early), where, rename)
    except OSError:
        return False


def _merge_into(source: str, target: str) -> None:
    """Move everything under `source` into the folder `target`: a folder `target` lacks in one rename, the
    rest entry by entry. Never over a file that is there: another piece's file raises instead.

    No other thread may make folders in `target` meanwhile (`assemble` moves these pieces in first, one
    after another): a rename takes the place of an empty folder of the same name, and a thread about to
    make a folder inside that one would find it gone."""
    os.makedirs(target, exist_ok=True)
    for entry in os.scandir(source):
        destination = os.path.join(target, entry.name)
        if entry.is_dir(follow_symlinks=False):
            try:
                os.rename(entry.path, destination)
                continue
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            _merge_into(entry.path, destination)
        else:
            os.link(entry.path, destination)  # FileExistsError when another file is there
            os.unlink(entry.path)


def _files(top: Path) -> list[str]:
    return sorted(p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file())


@dataclass(frozen=True)
class _Sibling:
    """A piece of the same family (same wheel, settings and code; other rules), checked out of the cache:
    what it made of the files both keep is what this piece would make of them."""

    entry: Path  # the entry's files
    files: dict[str, Any]
    record: dict[str, Any]

    def reusable(self, wheel: _Wheel, settings: PieceSettings) -> dict[str, list[str]]:
        """Processed path -> the sibling's files that stand for it (the file, and its .pyc). Its record is
        input like any cache entry: only entries of the shapes `valid_record` accepts are taken."""
        compiles = settings.compiler is not None
        pycs, failed, strip = self.record["pycs"], self.record["failed"], self.record["strip"]
        found: dict[str, list[str]] = {}
        for path in wheel.processed:
            if path not in self.files or (path in strip and not _outcome_shape(strip[path])):
                continue
            if not path.endswith(".py") or not compiles:
                found[path] = [path]
            elif isinstance(pycs.get(path), str) and pycs[path] in self.files:
                found[path] = [path, pycs[path]]
            elif isinstance(failed.get(path), str):
                found[path] = [path]
        return found


def _sibling(cache_: PieceCache, wheel: _Wheel) -> _Sibling | None:
    """A piece of the wheel's family whose record is whole, if the cache has one."""
    for key in cache_.family(wheel.family):
        manifest = cache_.manifest(key)
        if manifest is None or key == wheel.key:
            continue
        files = manifest["files"]
        record = manifest.get("record")
        if not isinstance(record, dict) or not all(
            isinstance(record.get(k), dict) for k in ("pycs", "failed", "strip")
        ):
            continue
        return _Sibling(cache_.entry_dir(key) / FILES, files, record)
    return None


def _process(
    wheel: _Wheel,
    root: Path,
    settings: PieceSettings,
    compiler: Interpreter | None,
    jobs: int,
    sibling: _Sibling | None = None,
) -> dict[str, Any]:
    """Unpack what no rule removes into `root`, strip and compile it. What a sibling made of a file this
    piece keeps too is linked from it (checked against its manifest) instead."""
    root.mkdir(parents=True, exist_ok=True)
    reused = sibling.reusable(wheel, settings) if sibling is not None else {}
    linked = _link_from(sibling, reused, root) if sibling is not None else {}
    making = wheel.processed - linked.keys()
    items = [item for item in wheel.planned if item.destination in making]
    _write_batches(root, {wheel.file.path: items}, jobs=jobs)
    name = wheel.file.path.name
    piece = LayerTree(
        root,
        files={
            item.destination: LayerFile(item.destination, item.info.file_size, wheel.distribution, name)
            for item in items
            if item.destination in wheel.processed
        },
    )
    before = dict(piece.files)
    with ThreadPoolExecutor(max_workers=1) as background:
        stripping = None
        if settings.strip_level is not None:
            paths = sorted(piece.files)
            stripping = background.submit(
                strip_debug, root, jobs=jobs, level=settings.strip_level, paths=paths
            )
        report = compile_tree(
            piece,
            settings.bytecode,
            compiler if settings.compiler is not None else None,
            jobs=jobs,
            debug_ranges=settings.debug_ranges,
            keep_sources=True,
        )
        stripped = stripping.result() if stripping is not None else None
    sources = sorted(p for p in before if p.endswith(".py"))
    pycs = {}
    for source in sources:
        for pyc in _candidate_pycs(source, settings, compiler):
            if pyc in piece.files and piece.files[pyc] is not before.get(pyc):
                pycs[source] = pyc
    record: dict[str, dict[str, Any]] = {
        "pycs": pycs,
        "failed": _failures(report.failed, set(sources)),
        "strip": _outcomes(stripped),
        # For the import guard of every build that takes this piece, which then reads none of these.
        "imports": {
            source: sorted(import_words((root / source).read_bytes()))
            for source in sorted(p for p in wheel.processed if p.endswith(".py"))
        },
    }
    if sibling is not None:
        for path in linked:
            for kind in ("pycs", "failed", "strip"):
                if path in sibling.record[kind]:
                    record[kind][path] = sibling.record[kind][path]
    return record


def _link_from(sibling: _Sibling, reused: dict[str, list[str]], root: Path) -> dict[str, list[str]]:
    """Link the sibling's files for `reused` into `root`, each checked against the sibling's manifest;
    the paths done. One that is missing or damaged is left to be made here, with what stands for it."""
    done: dict[str, list[str]] = {}
    origin = os.fspath(sibling.entry)
    for path, files in sorted(reused.items()):
        targets = [os.path.join(root, file) for file in files]
        ok = True
        for file, target in zip(files, targets, strict=True):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not (
                link_or_copy(os.path.join(origin, file), target) and matches(target, sibling.files[file])
            ):
                ok = False
                break
        if ok:
            done[path] = files
        else:
            for target in targets:
                with contextlib.suppress(OSError):
                    os.unlink(target)
    return done


def _candidate_pycs(source: str, settings: PieceSettings, compiler: Interpreter | None) -> Iterable[str]:
    if settings.compiler is None or compiler is None:
        return ()
    tag = f"{compiler.implementation}-{compiler.version[0]}{compiler.version[1]}"
    return (bytecode.pyc_for(source, settings.bytecode, tag),)


def _failures(failed: Iterable[str], sources: set[str]) -> dict[str, str]:
    """compile_tree's `source: error` lines, split where the part before is one of the sources."""
    found = {}
    for line in failed:
        at = line.find(": ")
        while at != -1:
            if line[:at] in sources:
                found[line[:at]] = line[at + 2 :]
                break
            at = line.find(": ", at + 1)
    return found


def _outcomes(report: StripReport | None) -> dict[str, dict[str, Any]]:
    if report is None:
        return {}
    outcomes: dict[str, dict[str, Any]] = {}
    for path in report.stripped:
        outcomes[path] = {"saved": report.saved.get(path, 0)}
    for path in report.unchanged:
        outcomes[path] = {"unchanged": True}
    for path, reason in report.skipped.items():
        outcomes[path] = {"skipped": reason}
    return outcomes


def valid_record(record: object, wheel: _Wheel, files: dict[str, Any]) -> dict[str, Any] | None:
    """A restored cache is input too: the record may name only this wheel's files and the piece's own."""
    if not isinstance(record, dict):
        return None
    pycs, failed, strip = record.get("pycs"), record.get("failed"), record.get("strip")
    imports = record.get("imports")
    if not (
        isinstance(pycs, dict)
        and isinstance(failed, dict)
        and isinstance(strip, dict)
        and isinstance(imports, dict)
    ):
        return None
    # Every source the piece keeps has its words: the guard reads a source it has none for, so a record
    # that left one out could not spare less, but one that names another's could.
    sources = {path for path in wheel.processed if path.endswith(".py")}
    if set(imports) != sources or not all(_words_shape(words) for words in imports.values()):
        return None
    if not all(s in wheel.processed and isinstance(p, str) and p in files for s, p in pycs.items()):
        return None
    if not all(s in wheel.processed and isinstance(e, str) for s, e in failed.items()):
        return None
    if not all(p in wheel.processed and _outcome_shape(o) for p, o in strip.items()):
        return None
    if not all(path in files for path in wheel.processed):
        return None
    if not set(files) <= wheel.processed | set(pycs.values()):
        return None
    return record


def _words_shape(words: object) -> bool:
    return isinstance(words, list) and all(isinstance(w, str) and w.isascii() for w in words)


def _outcome_shape(outcome: object) -> bool:
    """One of the three shapes `_outcomes` writes, and nothing else."""
    if not isinstance(outcome, dict) or len(outcome) != 1:
        return False
    ((kind, value),) = outcome.items()
    return (
        (kind == "saved" and type(value) is int)
        or (kind == "unchanged" and value is True)
        or (kind == "skipped" and isinstance(value, str))
    )
