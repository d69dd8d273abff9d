"""The importable top-level names of a layer, per distribution, read from the files themselves.

top_level.txt is optional and many modern wheels omit it, so the tree is the source of truth.
"""

from __future__ import annotations

from ..recipe import VerifyConfig
from .unpack import LAYER_PREFIX, LayerFile, LayerTree

_NOT_MODULES = {"tests", "test", "testing_data", "benchmarks", "docs", "examples", "bin", "include", "share"}
_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


def top_level_name(path: str) -> str | None:
    """`python/numpy/core.py` -> numpy; `python/six.py` -> six; `python/_cffi.abi3.so` -> _cffi."""
    if not path.startswith(LAYER_PREFIX + "/"):
        return None
    inner = path[len(LAYER_PREFIX) + 1 :]
    head, slash, _rest = inner.partition("/")
    if slash:
        if head.endswith((".dist-info", ".data", ".libs", ".egg-info")) or head == "__pycache__":
            return None
        name = head
    else:
        if not head.endswith(_MODULE_SUFFIXES):
            return None
        name = head.split(".", 1)[0]
    if not name.isidentifier() or name in _NOT_MODULES:
        return None
    return name


def top_level_modules(tree: LayerTree) -> list[str]:
    """Every top-level module or package that holds Python code, sorted."""
    names: set[str] = set()
    for path in tree.files:
        name = top_level_name(path)
        if name is not None and path.endswith(_MODULE_SUFFIXES):
            names.add(name)
    return sorted(names)


def modules_to_verify(tree: LayerTree, config: VerifyConfig | None) -> list[str]:
    """Every top-level module, then the recipe's own imports, less what the recipe says to skip."""
    imports, skip = (config.imports, set(config.skip)) if config else ((), set())
    return [m for m in dict.fromkeys([*top_level_modules(tree), *imports]) if m not in skip]


def modules_by_distribution(tree: LayerTree) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {}
    for path, layer_file in tree.files.items():
        name = top_level_name(path)
        if name is not None and path.endswith(_MODULE_SUFFIXES):
            found.setdefault(layer_file.distribution, set()).add(name)
    return {dist: sorted(names) for dist, names in sorted(found.items())}


def declare_top_level(tree: LayerTree) -> list[str]:
    """Write `top_level.txt` into each dist-info that lacks one; returns the files written.

    Slimming removes RECORD, and `importlib.metadata.packages_distributions()` falls back to RECORD when a
    wheel (as most modern ones) ships no top_level.txt: declaring the names keeps that API working, and
    lets `size-report` attribute `sklearn/` to scikit-learn without RECORD.
    """
    modules = modules_by_distribution(tree)
    info_dirs: dict[str, str] = {}
    for path, layer_file in tree.files.items():
        if path.endswith(".dist-info/METADATA") and path.count("/") == 2:
            info_dirs[layer_file.distribution] = path.rsplit("/", 1)[0]
    written = []
    for distribution, info_dir in sorted(info_dirs.items()):
        target = f"{info_dir}/top_level.txt"
        names = modules.get(distribution)
        if target in tree.files or not names:
            continue
        content = "".join(f"{name}\n" for name in names).encode()
        (tree.root / target).write_bytes(content)
        wheel = tree.files[f"{info_dir}/METADATA"].wheel
        tree.files[target] = LayerFile(target, len(content), distribution, wheel)
        written.append(target)
    return written
