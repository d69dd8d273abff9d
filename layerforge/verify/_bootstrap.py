"""The program local.py runs, by `python -I -S -B -c <this file's text>`, inside a clean interpreter.

It must run on every runtime layerforge targets (3.9 and up) and import nothing but the stdlib, so it
sticks to 3.9 syntax and never imports layerforge. Its configuration comes as one JSON object on stdin;
its results go out as lines on stdout that start with MARKER, so whatever the imported packages print
cannot break the parsing. Guarded by __main__ so that importing this module (a test that imports every
module, say) runs nothing.
"""

# Imports sit inside the functions on purpose: whatever this program imports before the timed imports
# is imported "for free" for the layer, so it loads as little as it can, as late as it can.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
import sys
import time

# mypy honours a module-level TYPE_CHECKING of its own; importing typing here would add to the cold
# import the check measures.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MARKER = "@@layerforge-verify@@ "

# Linux capability numbers: root ignores file modes through these, so a read-only copy is only read-only
# to root once they are gone.
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
_CAP_FOWNER = 3
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_TRACEBACK_LINES = 12


def _emit(out_fd: int, payload: dict[str, Any]) -> None:
    import json

    data = (MARKER + json.dumps(payload, default=str) + "\n").encode()
    while data:  # os.write may write less than asked on a pipe
        data = data[os.write(out_fd, data) :]


def _drop_root_file_powers() -> str:
    """As root, give up the capabilities that bypass file modes, so that 0444/0555 really hold.

    Done in this process (capset) rather than in a preexec_fn of the parent, which is unsafe in a
    threaded parent; the bounding set is dropped too so that a subprocess the smoke code starts cannot
    get them back by exec. Returns "" or why it could not be done (a container without CAP_SETPCAP).
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return ""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    caps = (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER)
    for cap in caps:
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return f"capget failed: errno {ctypes.get_errno()}"
    mask = 0xFFFFFFFF
    for cap in caps:
        mask &= ~(1 << cap)
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if libc.capset(ctypes.byref(header), data) != 0:
        return f"capset failed: errno {ctypes.get_errno()}"
    return ""


def _isolate_path(layer_paths: list[str], runtime_paths: list[str]) -> list[str]:
    """Make sys.path the layer's entries, then the runtime's stand-ins (what Lambda's runtime provides,
    after /opt), then the stdlib, and prove nothing else is there.

    -I -S leaves out the script folder, user site and site-packages already; a distro build or a
    venv could still add something, so anything outside the interpreter's base prefix goes, and so does
    any site-packages or dist-packages folder. Returns the entries removed (for the report).
    """
    bases = tuple({os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)})
    kept: list[str] = []
    removed: list[str] = []
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        inside = bool(real) and any(real == base or real.startswith(base + os.sep) for base in bases)
        foreign = not inside or "site-packages" in real or "dist-packages" in real
        (removed if foreign else kept).append(entry)
    chosen = list(layer_paths) + list(runtime_paths)
    sys.path[:] = chosen + kept
    for entry in sys.path[len(chosen) :]:
        assert not ("site-packages" in entry or "dist-packages" in entry), entry
    # Only the standard finders: a .pth-installed hook (editable installs, setuptools' distutils shim)
    # could import from anywhere. -S keeps them out; this proves it.
    standard = {"BuiltinImporter", "FrozenImporter", "PathFinder"}
    finders = [getattr(finder, "__name__", type(finder).__name__) for finder in sys.meta_path]
    assert set(finders) <= standard, f"foreign import hooks on sys.meta_path: {finders}"
    return removed


def _probe_read_only(layer_python: str) -> bool:
    """True when nothing can be created in the layer: what Lambda's read-only /opt guarantees."""
    probe = os.path.join(layer_python, ".layerforge-write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return True
    os.close(fd)
    os.unlink(probe)
    return False


def _record_compiles(compiled: list[list[str]]) -> None:
    """Note every module whose code is compiled from source because no valid .pyc was used.

    SourceLoader.get_code calls source_to_code only after it has rejected (or not found) the cached
    bytecode, so wrapping it counts exactly the cold-start compilations Lambda would pay for.
    """
    from importlib.machinery import SourceFileLoader

    original = SourceFileLoader.source_to_code

    def source_to_code(self: SourceFileLoader, data: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append([getattr(self, "name", "?"), str(path)])
        return original(self, data, path, *args, **kwargs)

    SourceFileLoader.source_to_code = source_to_code  # type: ignore[method-assign,assignment]


def _describe(error: BaseException) -> dict[str, Any]:
    """The error, with the missing module name or file found anywhere in its chain of causes."""
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else kind.__module__ + "." + kind.__qualname__
    record: dict[str, Any] = {
        "type": name,
        "message": str(error),
        "missing_module": None,
        "missing_file": None,
        "missing_library": None,
        "denied_file": None,
        "network": None,
    }
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _missing_from(current, record)
        current = current.__cause__ or current.__context__
    record["traceback"] = _short_traceback(error)
    return record


def _short_traceback(error: BaseException) -> list[str]:
    """The traceback without this program's frames and importlib's machinery: the user's code only."""
    import traceback

    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith(("<frozen", "<string>"))
        and not frame.filename.endswith(os.path.join("importlib", "__init__.py"))
    ]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    return "".join(lines).splitlines()[-_TRACEBACK_LINES:]


def _missing_from(error: BaseException, record: dict[str, Any]) -> None:
    import errno
    import re

    message = str(error)
    if isinstance(error, ModuleNotFoundError) and error.name and not record["missing_module"]:
        record["missing_module"] = error.name
    elif isinstance(error, ImportError) and not record["missing_module"]:
        # `from pkg import sub` with pkg/sub.py gone: "cannot import name 'sub' from 'pkg' (...)", or
        # "from partially initialized module 'pkg'" when pkg/__init__ does it. 3.12 adds name_from.
        found = re.search(
            r"cannot import name '([\w.]+)' from (?:partially initialized module )?'([\w.]+)'", message
        )
        if found:
            record["missing_module"] = found.group(2) + "." + found.group(1)
    if isinstance(error, ImportError) and not record["missing_library"]:
        # A shared library that dlopen could not find, e.g. numpy.libs/libscipy_openblas64_-....so.
        found = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", message)
        if found:
            record["missing_library"] = found.group(1)
    # socket.gaierror is an OSError without a filename; a refused or unroutable connect is one too.
    network_errors = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ETIMEDOUT)
    if not record["network"] and (
        type(error).__name__ == "gaierror" or (isinstance(error, OSError) and error.errno in network_errors)
    ):
        record["network"] = str(error)
    if isinstance(error, OSError) and error.filename:
        filename = os.fsdecode(error.filename)
        if error.errno in (errno.ENOENT, errno.ENOTDIR) and not record["missing_file"]:
            record["missing_file"] = filename
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not record["denied_file"]:
            record["denied_file"] = filename


def _not_found(error: BaseException) -> str | None:
    """The name of the first module that was not found, anywhere in the chain of causes.

    Kept apart from `missing_module`, which also holds a name that could not be imported *from* a
    module: only a module that does not exist at all can be an optional dependency nobody installed.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name
        current = current.__cause__ or current.__context__
    return None


class _Seen:
    """What this process asked of the folders under `roots` (the layer, the runtime's stand-ins), for the
    verification cache (verify/proofs.py): every file it opened, every folder it listed (and whether
    importlib's FileFinder did, which only looks names up), every name FileFinder looked up, every path
    it stat-ed from Python, and every source whose timestamps importlib compared with a .pyc.

    Counted by phase: what the metadata reads do comes after the imports and is not part of what the
    imports needed, but the parent must still account for each open it sees on its own watch. Paths are
    made absolute against the working folder when they are noted, with no call that could audit again.
    """

    def __init__(self, roots: list[str]) -> None:
        self.roots = tuple(root.rstrip(os.sep) + os.sep for root in roots)
        self.phase = "setup"
        self.opened: dict[str, list[int]] = {}  # path -> [opens while recording, opens in metadata]
        self.listed: dict[str, list[int]] = {}  # path -> [by FileFinder, by anything else, in metadata]
        self.lookups: set[tuple[str, str]] = set()
        # importlib.metadata lists a folder to index its *.dist-info by name: what it was asked for is
        # what matters ("" for every distribution, which needs the whole listing).
        self.distributions: set[tuple[str, str]] = set()
        self.metadata_listed: set[str] = set()
        self.metadata_names: set[str] = set()
        self.stats: set[str] = set()
        self.sources: set[str] = set()
        self.unknown: list[str] = []  # a listing by file descriptor: nothing can say what it listed
        self.cwd = os.getcwd()

    def _inside(self, path: Any) -> str | None:
        try:
            text = os.fsdecode(path)
        except TypeError:
            return None
        if not text.startswith(os.sep):
            text = os.path.join(self.cwd, text)
        text = os.path.normpath(text)
        return text if (text + os.sep).startswith(self.roots) else None

    def opened_file(self, path: Any) -> None:
        found = self._inside(path)
        if found is not None:
            counts = self.opened.setdefault(found, [0, 0])
            counts[self.phase == "metadata"] += 1

    def listed_folder(self, path: Any, by: str) -> None:
        """`by`: "finder" (FileFinder), "metadata" (importlib.metadata's index) or "other"."""
        if isinstance(path, int):
            self.unknown.append(f"a folder listed by file descriptor ({path})")
            return
        found = self._inside("." if path is None else path)
        if found is None:
            return
        counts = self.listed.setdefault(found, [0, 0, 0])
        if self.phase == "metadata":
            counts[2] += 1
        elif by == "other":
            counts[1] += 1
        else:
            counts[0] += 1
            if by == "metadata":
                self.metadata_listed.add(found)

    def asked_for(self, name: Any) -> None:
        """importlib.metadata was asked for a distribution (None: for all of them)."""
        if self.recording():
            self.metadata_names.add(name if isinstance(name, str) else "")

    def recording(self) -> bool:
        return self.phase != "metadata"

    def as_dict(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "listed": self.listed,
            "lookups": sorted(self.lookups),
            "distributions": sorted(
                [folder, name] for folder in self.metadata_listed for name in self.metadata_names
            ),
            "stats": sorted(self.stats),
            "sources": sorted(self.sources),
            "unknown": self.unknown,
        }


def _watch(seen: _Seen) -> None:
    """Note what the process reads under the roots: an audit hook for opens and listings, and wrappers
    for what no audit event tells (FileFinder's lookups, os.stat and its kin, importlib's source stats)."""
    from importlib.machinery import FileFinder, SourceFileLoader

    fill_cache = FileFinder._fill_cache.__code__  # type: ignore[attr-defined]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            if not isinstance(args[0], int):  # an fd wrapped by open(): no new open
                seen.opened_file(args[0])
        elif event in ("os.listdir", "os.scandir"):
            # A C function makes no frame: frame 1 is the Python code that called it.
            caller = sys._getframe(1)
            if caller.f_code is fill_cache:
                seen.listed_folder(args[0], "finder")
            elif _in_metadata(caller) and _watch_metadata(seen, caller):
                seen.listed_folder(args[0], "metadata")
            else:
                seen.listed_folder(args[0], "other")

    sys.addaudithook(hook)

    find_spec = FileFinder.find_spec

    def noting_find_spec(self: Any, fullname: str, target: Any = None) -> Any:
        if seen.recording():
            folder = seen._inside(self.path)
            if folder is not None:
                seen.lookups.add((folder, fullname.rpartition(".")[2]))
        return find_spec(self, fullname, target)

    FileFinder.find_spec = noting_find_spec  # type: ignore[method-assign]

    path_stats = SourceFileLoader.path_stats

    def noting_path_stats(self: Any, path: Any) -> Any:
        if seen.recording():
            found = seen._inside(path)
            if found is not None:
                seen.sources.add(found)
        return path_stats(self, path)

    SourceFileLoader.path_stats = noting_path_stats  # type: ignore[method-assign]

    def noting(function: Any) -> Any:
        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            if seen.recording() and not isinstance(path, int) and not kwargs.get("dir_fd"):
                found = seen._inside(path)
                if found is not None:
                    seen.stats.add(found)
            return function(path, *args, **kwargs)

        return wrapper

    # os.path.exists, isfile, isdir, getsize, pathlib's stat and exists all go through these.
    os.stat = noting(os.stat)
    os.lstat = noting(os.lstat)
    os.access = noting(os.access)


def _in_metadata(frame: Any) -> bool:
    # A package since 3.10, a module in 3.9.
    name: str = frame.f_code.co_filename.replace(os.sep, "/")
    return name.endswith(("importlib/metadata/__init__.py", "importlib/metadata.py"))


def _watch_metadata(seen: _Seen, listing: Any) -> bool:
    """importlib.metadata is listing a folder to find distributions: note the name it is looking for,
    and, from now on, every name it is asked for (Distribution.discover, which every lookup goes through).

    Patched only now, since importing importlib.metadata early would load it "for free" for the layer.
    The search under way began before the patch: its name is read off the stack (a context or a prepared
    name the frames hold). False when no name is found there: then the listing counts whole.
    """
    module = sys.modules.get("importlib.metadata")
    distribution = getattr(module, "Distribution", None)
    if distribution is None:
        return False
    if not getattr(distribution, "_layerforge_noted", False):
        discover = distribution.discover.__func__

        def noting_discover(cls: Any, /, **kwargs: Any) -> Any:
            context = kwargs.get("context")
            seen.asked_for(getattr(context, "name", None) if context is not None else kwargs.get("name"))
            return discover(cls, **kwargs)

        distribution.discover = classmethod(noting_discover)
        distribution._layerforge_noted = True
    frame = listing
    while frame is not None:
        if _in_metadata(frame):
            for value in frame.f_locals.values():
                name = getattr(value, "name", None)
                if isinstance(name, str) and (hasattr(value, "normalized") or hasattr(value, "path")):
                    seen.asked_for(name)
                    return True
        frame = frame.f_back
    return False


def _peak_rss_bytes() -> int | None:
    """The process's peak resident memory so far, in bytes: VmHWM, the high-water mark of its own memory.

    Not getrusage's ru_maxrss: Linux carries the parent's peak over into a child across fork (or vfork)
    and exec, so a child of a 300 MB build process reports 300 MB before it has imported anything.
    VmHWM belongs to the address space exec made. It counts what this process touched: the interpreter,
    the shared libraries' resident pages and every object allocated; not any process the code started.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # the kernel says kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _import_all(modules: list[str], out_fd: int) -> tuple[list[str], list[dict[str, Any]], float]:
    import importlib

    imported: list[str] = []
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    for module in modules:
        # Said before and after each import, so that when the process hangs or crashes (a segfault in
        # an extension) the parent knows which module did it and which ones were fine.
        _emit(out_fd, {"importing": module})
        try:
            importlib.import_module(module)
        except BaseException as error:  # SystemExit and friends too: a module must not end the check
            if isinstance(error, KeyboardInterrupt):
                raise
            failure = dict(_describe(error), module=module, not_found=_not_found(error))
            failures.append(failure)
            _emit(out_fd, {"failed": failure})
        else:
            imported.append(module)
            _emit(out_fd, {"imported": module})
    return imported, failures, time.perf_counter() - started


def _read_versions(distributions: list[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    # Imported only after the timed imports: importlib.metadata pulls in email, zipfile, csv and more.
    import importlib.metadata

    versions: dict[str, str] = {}
    failures: list[dict[str, Any]] = []
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except Exception as error:
            failures.append(dict(_describe(error), distribution=name))
    return versions, failures


def _run_smoke(code: str) -> dict[str, Any]:
    import warnings

    # Warnings as errors: a DeprecationWarning today is tomorrow's broken cold start.
    warnings.simplefilter("error")
    try:
        exec(compile(code, "<smoke>", "exec"), {"__name__": "__smoke__"})  # noqa: S102
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        return {"smoke_ok": False, "smoke_error": _describe(error)}
    return {"smoke_ok": True}


def _loaded_objects() -> dict[str, Any]:
    """Every shared object this process has mapped (/proc/self/maps), and where the interpreter's own
    files live, so the parent can tell the layer's, the interpreter's and the host's apart.

    A library loaded by ctypes or dlopen shows here although no DT_NEEDED names it. Empty where there
    is no /proc (not Linux)."""
    paths: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as maps:
            for line in maps:
                fields = line.split(None, 5)
                path = fields[5].strip() if len(fields) == 6 else ""
                if path.endswith(" (deleted)"):
                    path = path[: -len(" (deleted)")]
                if path.startswith("/") and ".so" in os.path.basename(path):
                    paths.add(path)
    except OSError:
        pass
    return {
        "paths": sorted(paths),
        "stdlib": os.path.dirname(os.__file__),
        "executable": os.path.realpath(sys.executable),
    }


def main() -> None:
    import json

    # Results go to a duplicate of stdout taken now, so a package that replaces or closes sys.stdout
    # (or prints without a newline) cannot swallow them.
    out_fd = os.dup(1)
    config = json.loads(sys.stdin.read())
    result: dict[str, Any] = {"cap_drop_error": _drop_root_file_powers()}
    # Watching starts before the layer is on sys.path: every lookup in it is seen, the first included.
    seen = _Seen(config["watch_roots"]) if config.get("watch_roots") else None
    if seen is not None:
        _watch(seen)
    result["removed_path_entries"] = _isolate_path(config["layer_paths"], config.get("runtime_paths", []))
    result["sys_path"] = list(sys.path)
    result["flags"] = {
        "isolated": sys.flags.isolated,
        "no_site": sys.flags.no_site,
        "dont_write_bytecode": sys.flags.dont_write_bytecode,
    }
    result["read_only"] = _probe_read_only(config["layer_paths"][-1])
    compiled: list[list[str]] = []
    _record_compiles(compiled)
    # The interpreter's own peak, before the layer is touched: what a bare `python` costs here.
    memory = {"baseline_rss_bytes": _peak_rss_bytes()}
    if config["mode"] == "smoke":
        result.update(_run_smoke(config["smoke"]))
        memory["peak_rss_bytes"] = _peak_rss_bytes()
    else:
        imported, failures, seconds = _import_all(config["modules"], out_fd)
        # Before the metadata reads, which load modules no import of the layer asked for.
        memory["peak_rss_bytes"] = _peak_rss_bytes()
        result.update(imported=imported, failures=failures, cold_import_seconds=seconds)
        if seen is not None:
            seen.phase = "metadata"
        versions, metadata_failures = _read_versions(config["distributions"])
        result.update(metadata_versions=versions, metadata_failures=metadata_failures)
    result["compiled"] = compiled
    result["memory"] = memory
    result["loaded_objects"] = _loaded_objects()
    if seen is not None:
        seen.phase = "metadata"  # the reporting below reads nothing under the roots, but must not count
        result["seen"] = seen.as_dict()
    from contextlib import suppress

    # The packages' own output first; sys.stdout may be closed or replaced, and the result has its own fd.
    with suppress(Exception):
        sys.stdout.flush()
    _emit(out_fd, {"result": result})
    _end_as_lambda_does()


def _end_as_lambda_does() -> None:
    """End the process without the interpreter's finalization, as Lambda ends a runtime's.

    Lambda freezes an execution environment between invocations and kills its processes at the end
    (SIGKILL, or SIGTERM first when an extension is registered, whose default action runs no Python):
    no atexit handler, module teardown or collection at exit ever runs there, so none of it is part of
    what a check proves. Here that teardown took 0.23 to 0.29 s of each sklearn-stack check's 1.05 to
    1.15 s, after the result was out. What the code printed is flushed first: Python's buffers, then C's
    stdio (a printf in an extension, buffered on a pipe), which _exit would drop.
    """
    from contextlib import suppress

    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with suppress(Exception):
            stream.flush()  # type: ignore[union-attr]
    with suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)
    os._exit(0)


if __name__ == "__main__":
    main()
