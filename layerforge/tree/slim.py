"""Slimming: strip rules from profiles and recipes, with safety rails, and every removed byte accounted.

Rails the field lacks: license files and the dist-info metadata that `importlib.metadata` and entry
points read are always kept; a test or docs folder that a package imports from is kept, with the reason;
a user's own rule is applied as written, and verification afterwards names it if it broke an import.
"""

from __future__ import annotations

import ast
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..cache import sha256_of
from ..recipe import StripConfig
from .globs import compile_glob
from .sharing import SharedCopy, find_shared_copies
from .unpack import LAYER_PREFIX, LayerTree


@dataclass(frozen=True)
class StripRule:
    name: str
    patterns: tuple[str, ...]
    # A guarded rule spares any folder that code outside it imports from.
    guarded: bool = False


_SAFE_RULES = (
    StripRule(
        "safe:dist-info-install-records",
        (
            "*.dist-info/RECORD",
            "*.dist-info/INSTALLER",
            "*.dist-info/REQUESTED",
            "*.dist-info/direct_url.json",
        ),
    ),
    StripRule("safe:host-bytecode", ("**/__pycache__", "**/*.pyc", "**/*.pyo")),
    StripRule("safe:test-suites", ("**/tests", "**/test", "**/conftest.py"), guarded=True),
    StripRule(
        "safe:c-sources-and-headers",
        (
            "**/*.c",
            "**/*.h",
            "**/*.cc",
            "**/*.cpp",
            "**/*.cxx",
            "**/*.hpp",
            "**/*.pyx",
            "**/*.pxd",
            "**/*.pxi",
            # Tempita and numpy .src templates the build expanded into the sources above.
            "**/*.pyx.tp",
            "**/*.pxd.tp",
            "**/*.pxi.tp",
            "**/*.c.tp",
            "**/*.h.tp",
            "**/*.c.src",
            "**/*.h.src",
        ),
    ),
    StripRule("safe:type-stubs", ("**/*.pyi",)),
    StripRule("safe:docs-and-examples", ("**/docs", "**/doc", "**/examples"), guarded=True),
    StripRule("safe:static-libraries", ("**/*.a", "**/*.la", "**/*.lib")),
)

_AGGRESSIVE_RULES = (
    *_SAFE_RULES,
    StripRule("aggressive:benchmarks", ("**/benchmarks", "**/benchmark", "**/asv_bench"), guarded=True),
    StripRule(
        "aggressive:build-hooks",
        ("**/_pyinstaller", "**/__pyinstaller", "**/*.cmake", "**/pkgconfig", "**/meson.build"),
    ),
    StripRule("aggressive:testing-data", ("**/testing/data", "**/tests_data", "**/test_data"), guarded=True),
    StripRule(
        "aggressive:dist-info-extras", ("*.dist-info/WHEEL", "*.dist-info/AUTHORS*", "*.dist-info/*.json")
    ),
)

PROFILES: Mapping[str, tuple[StripRule, ...]] = {
    "none": (),
    "safe": _SAFE_RULES,
    "aggressive": _AGGRESSIVE_RULES,
}

# Never removed, whatever a profile or a recipe says: licenses and the metadata packages read at run time.
SAFETY_KEEP = (
    "*.dist-info/METADATA",
    "*.dist-info/entry_points.txt",
    "*.dist-info/top_level.txt",
    "*.dist-info/licenses/**",
    "*.dist-info/license_files/**",
    "**/LICENSE*",
    "**/LICENCE*",
    "**/COPYING*",
    "**/NOTICE*",
)


@dataclass(frozen=True)
class Removal:
    path: str
    size: int
    distribution: str
    rule: str


@dataclass(frozen=True)
class Spared:
    """A file a guarded rule would remove, kept because code that stays imports it."""

    path: str
    rule: str
    imported_by: str


@dataclass(frozen=True)
class SlimReport:
    removed: tuple[Removal, ...]
    spared: tuple[Spared, ...] = ()
    duplicates: tuple[tuple[str, ...], ...] = field(default=())
    shared: tuple[SharedCopy, ...] = ()  # also in `removed`; verification must load what needed them

    @property
    def removed_bytes(self) -> int:
        return sum(r.size for r in self.removed)

    def by_rule(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for removal in self.removed:
            totals[removal.rule] += removal.size
        return dict(sorted(totals.items()))

    def by_package(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for removal in self.removed:
            totals[removal.distribution] += removal.size
        return dict(sorted(totals.items()))

    def rule_for_path(self) -> dict[str, str]:
        return {r.path: r.rule for r in self.removed}

    def as_dict(self) -> dict[str, object]:
        return {
            "files": len(self.removed),
            "bytes": self.removed_bytes,
            "by_rule": self.by_rule(),
            "by_package": self.by_package(),
            "spared": [{"path": s.path, "rule": s.rule, "imported_by": s.imported_by} for s in self.spared],
        }


def rules_for(config: StripConfig) -> list[tuple[StripRule, str | None]]:
    """(rule, distribution or None for all) in the order they are tried; the first match names the removal."""
    rules: list[tuple[StripRule, str | None]] = [(rule, None) for rule in PROFILES[config.profile]]
    rules += [(StripRule(f"recipe:remove:{pattern}", (pattern,)), None) for pattern in config.remove]
    for distribution, package_rules in sorted(config.packages.items()):
        rules += [
            (StripRule(f"recipe:packages.{distribution}.remove:{pattern}", (pattern,)), distribution)
            for pattern in package_rules.remove
        ]
    return rules


def keep_patterns(config: StripConfig, distribution: str) -> tuple[str, ...]:
    package_rules = config.packages.get(distribution)
    return (*SAFETY_KEEP, *config.keep, *(package_rules.keep if package_rules else ()))


class RuleMatcher:
    """The rule that removes a file, if any: keep patterns win, then the first rule that matches.

    Each rule's patterns are joined into one expression, and each answer is remembered: unpack asks
    first (to hold back what will go), then `plan` asks again for every file.
    """

    def __init__(self, config: StripConfig) -> None:
        self._config = config
        self._rules = [(rule, only, _union(rule.patterns)) for rule, only in rules_for(config)]
        self.guard_words = _guard_words(rule for rule, _, _ in self._rules)
        self._keep: dict[str, re.Pattern[str]] = {}
        self._answers: dict[tuple[str, str], StripRule | None] = {}

    def rule_for(self, path: str, distribution: str) -> StripRule | None:
        key = (path, distribution)
        if key not in self._answers:
            self._answers[key] = self._match(_inner(path), distribution)
        return self._answers[key]

    def removes(self, path: str, distribution: str) -> bool:
        return self.rule_for(path, distribution) is not None

    def _match(self, inner: str, distribution: str) -> StripRule | None:
        keep = self._keep.get(distribution)
        if keep is None:
            keep = self._keep[distribution] = _union(keep_patterns(self._config, distribution))
        if keep.fullmatch(inner):
            return None
        for rule, only, pattern in self._rules:
            if (only is None or only == distribution) and pattern.fullmatch(inner):
                return rule
        return None


def _union(patterns: Iterable[str]) -> re.Pattern[str]:
    alternatives = [compile_glob(p).pattern for p in patterns]
    return re.compile("|".join(f"(?:{a})" for a in alternatives) if alternatives else "(?!)")


def plan(tree: LayerTree, config: StripConfig, matcher: RuleMatcher | None = None) -> SlimReport:
    """Decide what to remove. Files unpack held back that stay after all (spared) are written now."""
    matcher = matcher or RuleMatcher(config)
    candidates: dict[str, Removal] = {}
    guarded: set[str] = set()
    for path, layer_file in sorted(tree.files.items()):
        rule = matcher.rule_for(path, layer_file.distribution)
        if rule is None:
            continue
        candidates[path] = Removal(path, layer_file.size, layer_file.distribution, rule.name)
        if rule.guarded:
            guarded.add(path)
    spared = _spare_imported_modules(tree, candidates, guarded, matcher.guard_words)
    kept = {s.path for s in spared}
    removed = tuple(r for p, r in candidates.items() if p not in kept)
    removed_paths = {r.path for r in removed}
    tree.write_held(path for path in tree.held if path not in removed_paths)
    shared = find_shared_copies(tree, config.shared_libraries, removed_paths)
    removed += tuple(_removal(tree, copy.dropped, copy.rule) for copy in shared)
    removed_paths.update(copy.dropped for copy in shared)
    return SlimReport(removed, tuple(spared), find_duplicates(tree, removed_paths), shared)


def _removal(tree: LayerTree, path: str, rule: str) -> Removal:
    layer_file = tree.files[path]
    return Removal(path, layer_file.size, layer_file.distribution, rule)


def apply(tree: LayerTree, report: SlimReport) -> None:
    """Delete the planned files and drop them (and folders left empty) from the tree."""
    for removal in report.removed:
        (tree.root / removal.path).unlink(missing_ok=True)  # absent when unpack held it back
        tree.files.pop(removal.path, None)
        tree.held.pop(removal.path, None)
    _remove_empty_dirs(tree.python_dir)


def _inner(path: str) -> str:
    return path[len(LAYER_PREFIX) + 1 :] if path.startswith(LAYER_PREFIX + "/") else path


def _spare_imported_modules(
    tree: LayerTree, candidates: Mapping[str, Removal], guarded: set[str], guarded_words: set[str]
) -> list[Spared]:
    """Keep each guarded module that staying code imports, and what it imports in turn.

    numpy 2's `numpy.testing` imports `numpy._core.tests._natype`: deleting every `tests` folder, as the
    guide's `find -delete` does, breaks it. Only the modules imported (and their packages) are kept.
    """
    module_files: dict[str, str] = {}
    for path in guarded:
        if path.endswith(".py"):
            module_files[_module_name(_inner(path))] = path
    if not module_files:
        return []
    prefilter = _import_prefilter(guarded_words)
    # A piece's record says which words each of its sources' import statements hold (processed.py): a
    # source whose words are known is not read unless one is guarded. The words are runs of ASCII word
    # characters, so only guarded words of that shape can be answered from them.
    known_words = tree.import_words if all(_WORD.fullmatch(w.encode()) for w in guarded_words) else {}
    spared: dict[str, Spared] = {}
    work = [p for p in sorted(tree.files) if p.endswith(".py") and p not in candidates]
    first_pass = True
    while work:
        next_work: list[str] = []
        for path in work:
            words = known_words.get(path) if first_pass else None
            if words is not None and words.isdisjoint(guarded_words):
                continue
            source = (tree.root / path).read_bytes()
            if first_pass and words is None and not prefilter(source):
                continue
            module = _module_name(_inner(path))
            for imported in _imports(source, module, is_package=path.endswith("/__init__.py")):
                for name in _with_parents(imported):
                    target = module_files.get(name)
                    if target is not None and target not in spared:
                        spared[target] = Spared(target, candidates[target].rule, module)
                        next_work.append(target)
        # A spared file stays: unpack held it back as a candidate, so it is written now, then read.
        tree.write_held(next_work)
        work = next_work
        first_pass = False
    return sorted(spared.values(), key=lambda s: s.path)


def _import_statements(source: bytes) -> Iterator[bytes]:
    """The text of each import statement in a file, comments left out: the line, or up to the closing
    parenthesis of `from x import (...)`.

    Each `import` is found with bytes.find (a line-anchored regex over the sklearn stack's 33 MB of sources
    took five times as long) and taken when its line is an import statement. A few that are not (an
    `import` inside a string on such a line) are taken too: the callers only narrow what is parsed.
    """
    at = source.find(b"import")
    while at != -1:
        start = source.rfind(b"\n", 0, at) + 1
        end = source.find(b"\n", at)
        end = len(source) if end == -1 else end
        head = source[start:at].lstrip(b" \t")
        if not head or head.startswith((b"from ", b"from\t")):
            if source.find(b"(", at, end) != -1 and source.find(b")", at, end) == -1:
                close = source.find(b")", end)
                end = len(source) if close == -1 else close
            yield _COMMENT.sub(b"", source[start:end])
        at = source.find(b"import", end)


def _import_prefilter(words: set[str]) -> Callable[[bytes], bool]:
    """Whether a file has an import statement that names a guarded folder: only those are parsed."""
    alternatives = b"|".join(re.escape(w.encode()) for w in sorted(words)) or b"(?!)"
    names = re.compile(rb"\b(?:" + alternatives + rb")\b")

    def imports_a_guarded_name(source: bytes) -> bool:
        return any(names.search(statement) for statement in _import_statements(source))

    return imports_a_guarded_name


def import_words(source: bytes) -> frozenset[str]:
    """The words (runs of ASCII word characters) in a file's import statements: a guarded word of that
    shape is among them exactly when `_import_prefilter` would find it there."""
    return frozenset(
        word.decode() for statement in _import_statements(source) for word in _WORD.findall(statement)
    )


_WORD = re.compile(rb"[A-Za-z0-9_]+")
_COMMENT = re.compile(rb"#[^\n]*")


def _guard_words(rules: Iterable[StripRule]) -> set[str]:
    """`**/tests` -> tests, `**/conftest.py` -> conftest: names an import of a guarded file mentions."""
    words = set()
    for rule in rules:
        if rule.guarded:
            for pattern in rule.patterns:
                words.add(PurePosixPath(pattern).name.split(".", 1)[0])
    return words


def _with_parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _module_name(inner: str) -> str:
    """`a/b/c.py` -> a.b.c, `a/b/__init__.py` -> a.b. By strings, as pathlib's with_suffix("") would cut
    (tree paths have no `.`, `..` or empty parts): it is asked for thousands of files in every build."""
    folder, _, name = inner.rpartition("/")
    dot = name.rfind(".")
    if 0 < dot < len(name) - 1:
        name = name[:dot]
    parts = [*folder.split("/"), name] if folder else [name]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(source: bytes, module: str, *, is_package: bool) -> Iterable[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, package)
            if base is None:
                continue
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return names


def _resolve_relative(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base) or None


_DUPLICATE_FLOOR = 64 * 1024  # smaller copies are not worth a line in the report


def find_duplicates(tree: LayerTree, removed: set[str]) -> tuple[tuple[str, ...], ...]:
    """Identical files that two distributions bundle (often the same vendored runtime library)."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for path, layer_file in tree.files.items():
        if path not in removed and layer_file.size >= _DUPLICATE_FLOOR:
            by_size[layer_file.size].append(path)
    groups: dict[str, list[str]] = defaultdict(list)
    for paths in by_size.values():
        if len({tree.files[p].distribution for p in paths}) < 2:
            continue
        for path in paths:
            groups[sha256_of(tree.root / path)].append(path)
    return tuple(
        sorted(tuple(sorted(g)) for g in groups.values() if len({tree.files[p].distribution for p in g}) > 1)
    )


def _remove_empty_dirs(root: Path) -> None:
    """Every folder below `root` left empty, deepest first; `root` stays. One scandir per folder, and an
    rmdir only where nothing is left (an rglob, a stat and an rmdir each took 0.07 s a build)."""
    top = os.fspath(root)
    removed: set[str] = set()
    for folder, subfolders, files in os.walk(top, topdown=False):
        if folder == top or files or any(os.path.join(folder, name) not in removed for name in subfolders):
            continue
        try:
            os.rmdir(folder)
        except OSError:
            continue
        removed.add(folder)
