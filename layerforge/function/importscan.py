"""Will every import in a function's code find its module on Lambda? Answered before deploy, statically.

Each ``.py`` file of the function's sources is parsed with ``ast`` (never imported: that would run the
user's code and need its dependencies on the host) and each import is looked up, in the order Lambda's
``sys.path`` has them, in:

1. the function's own sources (``/var/task``), where relative imports resolve and where a missing
   submodule or name is caught too, because all of it is known;
2. the requirements packaged into the function (also ``/var/task``);
3. each layer (``/opt/python`` and ``/opt/python/lib/python3.X/site-packages``);
4. what the runtime itself ships (boto3, botocore and their dependencies, awslambdaric);
5. the standard library of the target's Python version (``stdlib_modules``).

An import inside ``try: ... except ImportError`` is optional: a miss is a warning. An import under
``if TYPE_CHECKING:`` never runs, and ``if sys.version_info >= (3, 11):`` or ``sys.platform`` tests
are decided for the target, so the ``tomli`` fallback of a python3.11 function is not reported.
Everything else that misses is reported with its file, line and the distribution that provides it.
"""

from __future__ import annotations

import ast
import operator
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BuildError
from ..target import RUNTIME_PROVIDED, Target
from .stdlib_modules import OLDEST, stdlib_modules

FUNCTION = "function"
LAYER = "layer"
RUNTIME = "runtime"
STDLIB = "stdlib"


# Import names whose distribution is called something else; any other name is its own distribution.
DISTRIBUTIONS: Mapping[str, str] = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "yaml": "PyYAML",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "docx": "python-docx",
    "jose": "python-jose",
    "jwt": "PyJWT",
    "bs4": "beautifulsoup4",
    "attr": "attrs",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "serial": "pyserial",
    "dns": "dnspython",
    "zmq": "pyzmq",
    "git": "GitPython",
    "distutils": "setuptools",  # gone from the standard library in 3.12; setuptools ships a copy
}

_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")
_NOT_PACKAGES = (".dist-info", ".egg-info", ".data", ".libs")
_SITE_PACKAGES = re.compile(r"^python/lib/python(\d+\.\d+)/site-packages/")
_CATCHES_IMPORT_ERROR = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
_LAMBDA_PLATFORM = "linux"


class ImportCheckError(BuildError):
    """Imports of the function's code that will fail on Lambda. Exit 1."""


def distribution_for(module: str) -> str:
    """The distribution to install for an import name: `sklearn` -> scikit-learn."""
    top = module.split(".", 1)[0]
    return DISTRIBUTIONS.get(top, top)


# --------------------------------------------------------------------------------------------------
# Where modules come from


@dataclass(frozen=True)
class ModuleSource:
    """One place on Lambda's sys.path, as the top-level module names it provides."""

    label: str
    kind: str  # FUNCTION, LAYER, RUNTIME or STDLIB
    names: frozenset[str]
    # Names that sit where the target's Python does not look (a layer built for another version).
    elsewhere: Mapping[str, str] = field(default_factory=dict)


def top_level_names(paths: Iterable[str], root: str = "") -> set[str]:
    """The importable top-level names of the files under `root`: packages, modules, extensions."""
    names: set[str] = set()
    for path in paths:
        if not path.startswith(root):
            continue
        head, slash, _rest = path[len(root) :].partition("/")
        if slash:
            if head.endswith(_NOT_PACKAGES) or head == "__pycache__":
                continue
            name = head
        elif head.endswith(_MODULE_SUFFIXES):
            name = head.split(".", 1)[0]  # six.py, _cffi.abi3.so
        else:
            continue
        if name.isidentifier():
            names.add(name)
    return names


def function_source(paths: Iterable[str], label: str) -> ModuleSource:
    """Files at a function zip's root (/var/task)."""
    return ModuleSource(label, FUNCTION, frozenset(top_level_names(paths)))


def layer_source(paths: Iterable[str], label: str, target: Target) -> ModuleSource:
    """A layer's files: Python sees its python/ and python/lib/python3.X/site-packages/ for 3.X only."""
    paths = list(paths)
    own_site = f"{target.site_packages}/"
    names = top_level_names(paths, "python/") | top_level_names(paths, own_site)
    elsewhere: dict[str, str] = {}
    for path in paths:
        match = _SITE_PACKAGES.match(path)
        if match and match.group(1) != target.python_dotted:
            for name in top_level_names([path], match.group(0)) - names:
                elsewhere.setdefault(name, match.group(0))
    return ModuleSource(label, LAYER, frozenset(names), elsewhere)


def runtime_source(target: Target) -> ModuleSource:
    return ModuleSource(f"the {target.runtime} runtime", RUNTIME, frozenset(RUNTIME_PROVIDED))


def stdlib_source(target: Target) -> ModuleSource:
    # __main__ is whatever runs (the runtime's bootstrap): importable, though never in the table.
    names = stdlib_modules(target.python_version) | {"__main__"}
    return ModuleSource(f"the Python {target.python_dotted} standard library", STDLIB, names)


# --------------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class ImportSite:
    """One import statement (or one module of an `import a, b`)."""

    path: str
    line: int
    written: str  # as in the source, e.g. "from .models import load"
    optional: bool


@dataclass(frozen=True)
class MissingImport:
    site: ImportSite
    module: str  # the module that is not there (absolute, dotted), or the module a name is missing from
    reason: str  # in Python's words: "No module named 'pandas'"
    distribution: str | None  # what to install; None for the function's own modules

    def describe(self) -> str:
        install = f" (provided by the distribution `{self.distribution}`)" if self.distribution else ""
        return f"{self.site.path}:{self.site.line}: `{self.site.written}`: {self.reason}{install}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.site.path,
            "line": self.site.line,
            "import": self.site.written,
            "module": self.module,
            "reason": self.reason,
            "distribution": self.distribution,
            "optional": self.site.optional,
        }


@dataclass(frozen=True)
class ScanReport:
    runtime: str
    files: int
    imports: int
    found: Mapping[str, str]  # top-level name -> the label of the source that provides it
    missing: tuple[MissingImport, ...]
    optional: tuple[MissingImport, ...]
    syntax_errors: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()  # files the host's Python cannot parse (a newer target)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.syntax_errors

    def warnings(self) -> list[str]:
        notes = [
            f"{m.describe()}; it is imported under `except ImportError`, so the code must cope without it"
            for m in self.optional
        ]
        return notes + list(self.unchecked)

    def raise_for_missing(self) -> None:
        if self.ok:
            return
        lines = [f"{m.describe()}" for m in self.missing] + list(self.syntax_errors)
        count = len(self.missing) + len(self.syntax_errors)
        wanted = list(dict.fromkeys(m.distribution for m in self.missing if m.distribution))
        hints = []
        if wanted:
            hints.append(
                f"add {', '.join(wanted)} to the layer's recipe or to requirements.txt in SRC, "
                "or pass the layer that has them (--layer ZIP, --layer-arn ARN)"
            )
        if any(m.distribution is None for m in self.missing):
            hints.append("fix the function's own imports (they resolve within SRC)")
        if self.syntax_errors:
            hints.append(f"fix the syntax errors (the code must parse as {self.runtime})")
        hints.append("--ignore-import NAME accepts a module this check cannot see")
        raise ImportCheckError(
            f"{count} import problem{'s' if count > 1 else ''} would fail on Lambda ({self.runtime}):\n  "
            + "\n  ".join(lines),
            hint="; ".join(hints),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "runtime": self.runtime,
            "files": self.files,
            "imports": self.imports,
            "found": dict(sorted(self.found.items())),
            "missing": [m.as_dict() for m in self.missing],
            "optional_missing": [m.as_dict() for m in self.optional],
            "syntax_errors": list(self.syntax_errors),
            "unchecked": list(self.unchecked),
        }


# --------------------------------------------------------------------------------------------------
# Reading imports out of one file


@dataclass(frozen=True)
class _Import:
    """One import as parsed: absolute `module` (or a relative `level`), and the names a from-import takes."""

    line: int
    written: str
    module: str
    level: int
    names: tuple[str, ...] | None  # None for `import x`; ("*",) for a star import
    optional: bool


class _Collector(ast.NodeVisitor):
    """Every import of a module, with whether a failure is caught and whether it runs at all."""

    def __init__(self, version: tuple[int, int]) -> None:
        self.version = version
        self.imports: list[_Import] = []
        self._guarded = 0

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            written = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
            self.imports.append(_Import(node.lineno, written, alias.name, 0, None, self._guarded > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "__future__":
            return
        names = tuple(alias.name for alias in node.names)
        written = f"from {'.' * node.level}{node.module or ''} import {', '.join(names)}"
        self.imports.append(
            _Import(node.lineno, written, node.module or "", node.level, names, self._guarded > 0)
        )

    def visit_Try(self, node: ast.Try) -> None:
        self._visit_try(node)

    def visit_TryStar(self, node: Any) -> None:  # ast.TryStar exists from 3.11
        self._visit_try(node)

    def _visit_try(self, node: Any) -> None:
        guarded = _catches_import_error(node.handlers)
        self._guarded += guarded
        for statement in node.body:
            self.visit(statement)
        self._guarded -= guarded
        # Handlers, else and finally are not protected by this try's handlers.
        for statement in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(statement)

    def visit_If(self, node: ast.If) -> None:
        truth = _static_truth(node.test, self.version)
        for statement in [
            *(node.body if truth is not False else []),
            *(node.orelse if truth is not True else []),
        ]:
            self.visit(statement)


def _catches_import_error(handlers: Sequence[ast.excepthandler]) -> bool:
    for handler in handlers:
        if not isinstance(handler, ast.ExceptHandler) or handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(_dotted_tail(t) in _CATCHES_IMPORT_ERROR for t in types):
            return True
    return False


def _dotted_tail(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _static_truth(test: ast.expr, version: tuple[int, int]) -> bool | None:
    """The value of an `if` test on the target when it is knowable: TYPE_CHECKING, sys.version_info and
    sys.platform tests. None when it depends on anything else."""
    if _dotted(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
        return False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _static_truth(test.operand, version)
        return None if inner is None else not inner
    if isinstance(test, ast.BoolOp):
        values = [_static_truth(value, version) for value in test.values]
        if isinstance(test.op, ast.And):
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _COMPARE:
        left = _known_value(test.left, version)
        right = _known_value(test.comparators[0], version)
        if left is not None and right is not None and type(left) is type(right):
            return bool(_COMPARE[type(test.ops[0])](left, right))
    return None


def _known_value(node: ast.expr, version: tuple[int, int]) -> tuple[int, ...] | str | None:
    name = _dotted(node)
    if name == "sys.version_info":
        # The patch release on Lambda is not known: (3, 11, 0) compares with (3, 11) as every 3.11.x does.
        return (*version, 0)
    if name == "sys.platform":
        return _LAMBDA_PLATFORM
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Tuple) and len(node.elts) <= 2:
        parts = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, int)]
        return tuple(parts) if len(parts) == len(node.elts) else None
    return None


def _read_imports(file: Path, path: str, target: Target) -> tuple[list[_Import], str | None, str | None]:
    """(imports, syntax error, why it was not checked) of one file."""
    try:
        tree = ast.parse(file.read_bytes(), filename=path, feature_version=_feature_version(target))
    except SyntaxError as error:
        if target.python_version > sys.version_info[:2]:
            return (
                [],
                None,
                (
                    f"{path} does not parse with this Python {sys.version_info[0]}.{sys.version_info[1]} "
                    f"({error.msg}, line {error.lineno}); {target.runtime} may accept it, so its imports "
                    "were not checked: run layerforge with a Python as new as the target"
                ),
            )
        return [], f"{path}:{error.lineno}: does not parse as {target.runtime}: {error.msg}", None
    collector = _Collector(target.python_version)
    collector.visit(tree)
    return collector.imports, None, None


def _feature_version(target: Target) -> tuple[int, int]:
    # The parser can hold code to an older grammar, never to a newer one than its own.
    return min(target.python_version, sys.version_info[:2])


# --------------------------------------------------------------------------------------------------
# The function's own modules


class _LocalModules:
    """The function's sources as a module tree: which dotted names exist and what each module binds."""

    def __init__(self, sources: Mapping[str, Path]) -> None:
        self.sources = sources
        self.files = set(sources)
        self.dirs = {"/".join(p.split("/")[:depth]) for p in sources for depth in range(1, p.count("/") + 1)}
        self.names = frozenset(top_level_names(sources))
        self._bound: dict[str, frozenset[str] | None] = {}

    def find(self, module: str) -> str | None:
        """The file (or folder, for a namespace package) that `module` imports, if the sources hold it."""
        stem = module.replace(".", "/")
        for candidate in (f"{stem}/__init__.py", f"{stem}.py"):
            if candidate in self.files:
                return candidate
        folder, _, name = stem.rpartition("/")
        for path in self.files:
            head, _, tail = path.rpartition("/")
            if head == folder and tail.startswith(name + ".") and tail.endswith((".so", ".pyd")):
                return path
        return stem if stem in self.dirs else None

    def first_missing(self, module: str) -> str | None:
        """The first of a.b, a.b.c ... that the sources lack, as Python would name it."""
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            if self.find(prefix) is None:
                return prefix
        return None

    def bound_names(self, module: str) -> frozenset[str] | None:
        """Names a module binds at top level; None when that cannot be known statically."""
        path = self.find(module)
        if path in self.dirs:
            return frozenset()  # a namespace package binds nothing but its submodules
        if path is None or not path.endswith(".py"):
            return None  # an extension module: its names are not readable here
        if path not in self._bound:
            self._bound[path] = _bound_names(self.sources[path], package=path.endswith("/__init__.py"))
        return self._bound[path]


def _bound_names(file: Path, *, package: bool) -> frozenset[str] | None:
    try:
        tree = ast.parse(file.read_bytes())
    except (SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return None  # a star import binds what another module defines
        if package and isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
            continue  # `from . import x` in a package binds x only when the submodule x exists
        if isinstance(node, ast.Call) and _dotted(node.func) in ("globals", "setattr", "vars"):
            return None
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    if "__getattr__" in names:
        return None  # PEP 562: the module answers any name
    # Nested scopes bind names too; counting them can only hide a miss, never invent one.
    return frozenset(names)


def _package_of(path: str) -> list[str]:
    parts = path.removesuffix(".py").split("/")
    return parts[:-1]  # pkg/__init__.py and pkg/mod.py both belong to package pkg


def _absolute(path: str, item: _Import) -> tuple[str | None, str | None]:
    """(the absolute module an import names, or the error Python raises resolving it)."""
    if item.level == 0:
        return item.module, None
    package = _package_of(path)
    if not package:
        return None, (
            "attempted relative import with no known parent package "
            f"(Lambda imports {path} as a top-level module)"
        )
    if item.level - 1 >= len(package):
        return None, "attempted relative import beyond top-level package"
    base = package[: len(package) - (item.level - 1)]
    return ".".join([*base, *([item.module] if item.module else [])]), None


# --------------------------------------------------------------------------------------------------
# The scan


class _Scan:
    def __init__(
        self,
        sources: Mapping[str, Path],
        providers: Sequence[ModuleSource],
        target: Target,
        ignore: Iterable[str],
    ) -> None:
        self.local = _LocalModules(sources)
        self.providers = providers
        self.target = target
        self.ignore = tuple(ignore)
        self.found: dict[str, str] = {}
        # A top-level name the packaged requirements also ship is theirs to vouch for, not checked deep.
        self.shared = {n for p in providers if p.kind == FUNCTION for n in p.names}

    def check(self, path: str, item: _Import) -> Iterator[tuple[str, str, bool]]:
        """Each (module, reason, local) that fails for one import statement."""
        module, error = _absolute(path, item)
        if module is None:
            yield "." * item.level + item.module, error or "", True
            return
        if self._ignored(module):
            return
        top = module.split(".", 1)[0]
        if top in self.local.names and top not in self.shared:
            self.found.setdefault(top, "the function's sources")
            yield from self._check_local(module, item)
            return
        label = self._provider(top)
        if label is not None:
            self.found.setdefault(top, label)
            return
        yield module, f"No module named '{top}'{self._removed(top)}{self._elsewhere(top)}", item.level > 0

    def _ignored(self, module: str) -> bool:
        return any(module == name or module.startswith(name + ".") for name in self.ignore)

    def _provider(self, top: str) -> str | None:
        return next((p.label for p in self.providers if top in p.names), None)

    def _removed(self, top: str) -> str:
        """Say so when an older Python's standard library had the module (distutils before 3.12)."""
        major, minor = self.target.python_version
        last = next(
            (m for m in range(minor - 1, OLDEST[1] - 1, -1) if top in stdlib_modules((major, m))), None
        )
        if last is None:
            return ""
        return f" (the standard library dropped it after Python {major}.{last})"

    def _elsewhere(self, top: str) -> str:
        for provider in self.providers:
            if top in provider.elsewhere:
                return (
                    f"; {provider.label} has it under {provider.elsewhere[top]}, which {self.target.runtime} "
                    "does not search (a layer built for another Python version)"
                )
        return ""

    def _check_local(self, module: str, item: _Import) -> Iterator[tuple[str, str, bool]]:
        gone = self.local.first_missing(module)
        if gone is not None:
            yield gone, f"No module named '{gone}'", True
            return
        for name in item.names or ():
            if name == "*" or self.local.find(f"{module}.{name}") is not None:
                continue
            bound = self.local.bound_names(module)
            if bound is not None and name not in bound:
                where = self.local.find(module)
                yield module, f"cannot import name '{name}' from '{module}' ({where})", True


def scan_imports(
    sources: Mapping[str, Path],
    providers: Sequence[ModuleSource],
    target: Target,
    *,
    ignore: Iterable[str] = (),
) -> ScanReport:
    """Check every import of the function's `.py` sources against what Lambda will have.

    `sources` maps each packaged file's relative posix path (its path in the function zip) to its file;
    `providers` are the other places on sys.path, in Lambda's order: the packaged requirements, the
    layers, the runtime, the standard library. `ignore` names modules to take as present.
    """
    scan = _Scan(sources, providers, target, ignore)
    missing: list[MissingImport] = []
    optional: list[MissingImport] = []
    syntax_errors: list[str] = []
    unchecked: list[str] = []
    count = 0
    files = sorted(path for path in sources if path.endswith(".py"))
    for path in files:
        imports, syntax_error, skipped = _read_imports(sources[path], path, target)
        syntax_errors += [syntax_error] if syntax_error else []
        unchecked += [skipped] if skipped else []
        count += len(imports)
        for item in imports:
            site = ImportSite(path, item.line, item.written, item.optional)
            for module, reason, local in dict.fromkeys(scan.check(path, item)):
                problem = MissingImport(site, module, reason, None if local else distribution_for(module))
                (optional if item.optional else missing).append(problem)
    return ScanReport(
        runtime=target.runtime,
        files=len(files),
        imports=count,
        found=dict(sorted(scan.found.items())),
        missing=tuple(missing),
        optional=tuple(optional),
        syntax_errors=tuple(syntax_errors),
        unchecked=tuple(unchecked),
    )
