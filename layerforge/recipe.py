"""Recipes: what goes into a layer and how it is slimmed and verified. TOML, validated on load.

A recipe is either a bundled name (`sklearn`), a `.toml` file, or a plain `requirements.txt`.
Every error names the file, the key and what is allowed; nothing unknown is silently ignored.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import RecipeError
from .target import ARCHES, RUNTIMES, Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 hosts only
    import tomli as tomllib

PROFILES = ("safe", "aggressive", "none")
BYTECODE_MODES = ("compile", "sourceless", "none")
MAX_RECIPE_BYTES = 1_000_000
# A budget is a number of bytes under Lambda's limit; anything near float's range is a typo or an attack.
MAX_BUDGET_BYTES = 10**15


@dataclass(frozen=True)
class PackageRules:
    """Strip rules that apply to one distribution only."""

    remove: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class StripConfig:
    profile: str = "safe"
    remove: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    binaries: bool = True
    bytecode: str = "compile"
    packages: Mapping[str, PackageRules] = field(default_factory=dict)
    # Folder of bundled libraries -> the folder whose byte-identical copies are loaded first (see sharing.py).
    shared_libraries: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyConfig:
    imports: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    smoke: str | None = None


@dataclass(frozen=True)
class AuditConfig:
    # SONAMEs that another layer ships in its lib/ (/opt/lib): the audit finds them there, not here.
    system_libraries: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    unzipped_bytes: int | None = None


@dataclass(frozen=True)
class PolicyConfig:
    """Which licenses may ship, as SPDX ids: any denied one fails the build, and so does any not allowed
    (when `allow_licenses` is given)."""

    deny_licenses: tuple[str, ...] = ()
    allow_licenses: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.deny_licenses and not self.allow_licenses


@dataclass(frozen=True)
class Recipe:
    name: str
    requirements: tuple[str, ...]
    source: str
    description: str = ""
    runtime: str | None = None
    arch: str | None = None
    exclude: tuple[str, ...] = ()
    # Leave out what the target runtime ships (target.RUNTIME_PROVIDED_DISTRIBUTIONS): their versions then
    # come from the runtime, on AWS's schedule.
    exclude_runtime_provided: bool = False
    strip: StripConfig = field(default_factory=StripConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    def excluded(self, target: Target) -> tuple[str, ...]:
        """The distributions this recipe leaves out of a layer for `target`: `exclude`, and what the
        runtime provides when asked to. Only these go; a dependency of one that is not listed stays."""
        names = set(self.exclude)
        if self.exclude_runtime_provided:
            names |= target.runtime_provided
        return tuple(sorted(names))


# The registry of legal keys: one place, used both to validate and to suggest.
_TOP_KEYS = (
    *("name", "description", "requirements", "runtime", "arch", "exclude", "exclude_runtime_provided"),
    *("strip", "verify", "limits", "policy", "audit"),
)
_STRIP_KEYS = ("profile", "remove", "keep", "binaries", "bytecode", "packages", "shared_libraries")
_PACKAGE_RULE_KEYS = ("remove", "keep")
_VERIFY_KEYS = ("imports", "skip", "smoke")
_LIMIT_KEYS = ("unzipped_mb", "unzipped_bytes")
_POLICY_KEYS = ("deny_licenses", "allow_licenses")
_AUDIT_KEYS = ("system_libraries",)
# A SONAME as DT_NEEDED records it: a file name ending in .so or .so.<numbers>.
_SONAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.so(?:\.[0-9]+)*")


class _Reader:
    """Validates one recipe's raw TOML table, naming the file and the key in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str, allowed: str) -> RecipeError:
        return RecipeError(f"{self.source}: key `{key}`: {problem}", hint=f"allowed: {allowed}")

    def check_keys(self, table: Mapping[str, Any], legal: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in legal:
                close = difflib.get_close_matches(key, legal, n=1)
                suggestion = f"did you mean `{prefix}{close[0]}`? " if close else ""
                raise RecipeError(
                    f"{self.source}: unknown key `{prefix}{key}`",
                    hint=f"{suggestion}allowed keys here: {', '.join(legal)}",
                )

    def table(self, raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {_type_name(value)}", f"[{path}] with keys")
        return value

    def string(self, raw: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str | None:
        value = raw.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_type_name(value)}", "a quoted string")
        return value

    def choice(
        self, raw: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = self.string(raw, key, path, default)
        assert value is not None
        if value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            extra = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(path, f"{value!r} is not allowed{extra}", " | ".join(choices))
        return value

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_type_name(value)}", "true | false")
        return value

    def strings(self, raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of strings, got {_type_name(value)}", '["...", "..."]')
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{path}[{index}]", f"expected a non-empty string, got {item!r}", "a string")
        return tuple(value)

    def globs(self, raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        patterns = self.strings(raw, key, path)
        for index, pattern in enumerate(patterns):
            if pattern.startswith("/") or ".." in pattern.split("/") or "\\" in pattern:
                raise self.fail(
                    f"{path}[{index}]",
                    f"{pattern!r} must be a relative glob with / separators and no `..`",
                    "globs like **/tests or sklearn/datasets/descr/**",
                )
        return patterns


# The project file (layerforge/project) validates its tables by the same rules and words.
TableReader = _Reader


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def parse_requirement(text: str, where: str, source: str) -> str:
    """Check one requirement specifier; refuse URLs and paths, which the lock cannot pin by index."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        raise RecipeError(
            f"{source}: {where}: {text!r} is not a valid requirement ({error})",
            hint="allowed: PEP 508 specifiers such as 'pandas', 'numpy>=1.26,<2.3' or 'requests==2.32.3'",
        ) from None
    if requirement.url:
        raise RecipeError(
            f"{source}: {where}: {text!r} names a URL; layerforge pins wheels from a package index",
            hint="allowed: a name with a version specifier; publish the package to your index instead",
        )
    return str(requirement)


def recipe_from_mapping(raw: Mapping[str, Any], source: str, default_name: str) -> Recipe:
    reader = _Reader(source)
    reader.check_keys(raw, _TOP_KEYS, "")
    name = reader.string(raw, "name", "name", default_name) or default_name
    if not name.replace("-", "").replace("_", "").isalnum():
        raise reader.fail("name", f"{name!r} is not a usable layer name", "letters, digits, '-' and '_'")
    requirements = reader.strings(raw, "requirements", "requirements")
    if not requirements:
        raise reader.fail("requirements", "at least one requirement is needed", '["scikit-learn", "pandas"]')
    checked = tuple(
        parse_requirement(text, f"key `requirements[{i}]`", source) for i, text in enumerate(requirements)
    )
    runtime = raw.get("runtime")
    if runtime is not None:
        reader.choice(raw, "runtime", "runtime", tuple(RUNTIMES), "python3.11")
    arch = raw.get("arch")
    if arch is not None:
        reader.choice(raw, "arch", "arch", tuple(ARCHES), "x86_64")
    exclude = tuple(canonicalize_name(n) for n in reader.strings(raw, "exclude", "exclude"))
    return Recipe(
        name=name,
        requirements=checked,
        source=source,
        description=reader.string(raw, "description", "description", "") or "",
        runtime=runtime,
        arch=arch,
        exclude=exclude,
        exclude_runtime_provided=reader.boolean(
            raw, "exclude_runtime_provided", "exclude_runtime_provided", False
        ),
        strip=_strip_config(reader, reader.table(raw, "strip", "strip")),
        verify=_verify_config(reader, reader.table(raw, "verify", "verify")),
        limits=_limits_config(reader, reader.table(raw, "limits", "limits")),
        policy=policy_config(raw.get("policy", {}), source),
        audit=_audit_config(reader, reader.table(raw, "audit", "audit")),
    )


def _strip_config(reader: _Reader, raw: Mapping[str, Any]) -> StripConfig:
    reader.check_keys(raw, _STRIP_KEYS, "strip.")
    packages_raw = reader.table(raw, "packages", "strip.packages")
    packages: dict[str, PackageRules] = {}
    for dist, rules in packages_raw.items():
        path = f"strip.packages.{dist}"
        if not isinstance(rules, dict):
            raise reader.fail(
                path, f"expected a table, got {_type_name(rules)}", "remove = [...], keep = [...]"
            )
        reader.check_keys(rules, _PACKAGE_RULE_KEYS, f"{path}.")
        packages[canonicalize_name(dist)] = PackageRules(
            remove=reader.globs(rules, "remove", f"{path}.remove"),
            keep=reader.globs(rules, "keep", f"{path}.keep"),
        )
    return StripConfig(
        profile=reader.choice(raw, "profile", "strip.profile", PROFILES, "safe"),
        remove=reader.globs(raw, "remove", "strip.remove"),
        keep=reader.globs(raw, "keep", "strip.keep"),
        binaries=reader.boolean(raw, "binaries", "strip.binaries", True),
        bytecode=reader.choice(raw, "bytecode", "strip.bytecode", BYTECODE_MODES, "compile"),
        packages=packages,
        shared_libraries=_shared_libraries(reader, reader.table(raw, "shared_libraries", _SHARED)),
    )


_SHARED = "strip.shared_libraries"


def _shared_libraries(reader: _Reader, raw: Mapping[str, Any]) -> dict[str, str]:
    example = '"scipy.libs" = "numpy.libs"'
    for dropped, kept in raw.items():
        path = f"{_SHARED}.{dropped}"
        if not isinstance(kept, str):
            raise reader.fail(path, f"expected a folder name, got {_type_name(kept)}", example)
        for name in (dropped, kept):
            if not _is_folder_name(name):
                problem = f"{name!r} must be one top-level folder's name, like numpy.libs"
                raise reader.fail(path, problem, example)
        if dropped == kept:
            raise reader.fail(path, "a folder cannot share its libraries with itself", example)
        if kept in raw:
            # Chains could drop both copies of a library.
            problem = f"{kept!r} also drops its own copies; name the folder that keeps them"
            raise reader.fail(path, problem, example)
    return dict(raw)


def _is_folder_name(name: str) -> bool:
    return bool(name.strip()) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _verify_config(reader: _Reader, raw: Mapping[str, Any]) -> VerifyConfig:
    reader.check_keys(raw, _VERIFY_KEYS, "verify.")
    return VerifyConfig(
        imports=reader.strings(raw, "imports", "verify.imports"),
        skip=reader.strings(raw, "skip", "verify.skip"),
        smoke=reader.string(raw, "smoke", "verify.smoke"),
    )


def _audit_config(reader: _Reader, raw: Mapping[str, Any]) -> AuditConfig:
    reader.check_keys(raw, _AUDIT_KEYS, "audit.")
    names = reader.strings(raw, "system_libraries", "audit.system_libraries")
    for index, name in enumerate(names):
        if not _SONAME.fullmatch(name):
            raise reader.fail(
                f"audit.system_libraries[{index}]",
                f"{name!r} is not a library's SONAME",
                'names as the loader asks for them, e.g. "libGL.so.1" (no folder)',
            )
    return AuditConfig(system_libraries=names)


def _limits_config(reader: _Reader, raw: Mapping[str, Any]) -> LimitsConfig:
    reader.check_keys(raw, _LIMIT_KEYS, "limits.")
    if "unzipped_mb" in raw and "unzipped_bytes" in raw:
        raise reader.fail("limits", "give either unzipped_mb or unzipped_bytes, not both", "one of the two")
    budget: int | None = None
    for key, scale in (("unzipped_mb", 1_000_000), ("unzipped_bytes", 1)):
        if key in raw:
            value = raw[key]
            finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
            if isinstance(value, bool) or not isinstance(value, int | float) or not finite or value <= 0:
                raise reader.fail(f"limits.{key}", f"expected a positive number, got {value!r}", "e.g. 220")
            if value * scale > MAX_BUDGET_BYTES:
                raise reader.fail(f"limits.{key}", f"{value!r} is larger than any layer can be", "e.g. 220")
            budget = int(value * scale)
    return LimitsConfig(unzipped_bytes=budget)


def policy_config(raw: object, source: str, path: str = "policy") -> PolicyConfig:
    """`[policy]` of a recipe (or of a project file): SPDX license ids, each checked against the list."""
    reader = _Reader(source)
    table = reader.table({"policy": raw}, "policy", path)
    reader.check_keys(table, _POLICY_KEYS, f"{path}.")
    lists = {}
    for key in _POLICY_KEYS:
        ids = reader.strings(table, key, f"{path}.{key}")
        lists[key] = tuple(_spdx_id(reader, f"{path}.{key}[{i}]", text) for i, text in enumerate(ids))
    return PolicyConfig(deny_licenses=lists["deny_licenses"], allow_licenses=lists["allow_licenses"])


@functools.cache
def spdx_licensing() -> Any:
    """license-expression's SPDX licensing, loaded once (0.1 s) and only by what reads a license."""
    from license_expression import get_spdx_licensing  # noqa: PLC0415

    return get_spdx_licensing()


def _spdx_id(reader: _Reader, path: str, text: str) -> str:
    """The SPDX license id as the SPDX list spells it (`mit` -> MIT, the deprecated `AGPL-3.0` ->
    AGPL-3.0-only); anything else is an error with the closest ids."""
    from license_expression import ExpressionError, LicenseSymbol  # noqa: PLC0415

    licensing = spdx_licensing()
    try:
        parsed = licensing.parse(text.strip(), validate=True, strict=True)
    except ExpressionError:
        parsed = None
    if isinstance(parsed, LicenseSymbol) and not parsed.key.startswith("LicenseRef-"):
        return str(parsed.key)
    known = {key.upper(): key for key in licensing.known_symbols if not key.startswith("LicenseRef-")}
    wanted = "-".join(text.upper().split())
    close = [known[k] for k in difflib.get_close_matches(wanted, list(known), n=3, cutoff=0.5)]
    extra = f" (did you mean {', '.join(close)}?)" if close else ""
    raise reader.fail(path, f"{text!r} is not an SPDX license id{extra}", "ids of https://spdx.org/licenses/")


def load_toml_recipe(path: Path) -> Recipe:
    source = str(path)
    data = _read_text(path)
    try:
        raw = tomllib.loads(data)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{source}: not valid TOML: {error}", hint="check the line named above") from None
    return recipe_from_mapping(raw, source, default_name=path.stem)


def load_requirements_file(path: Path, name: str | None) -> Recipe:
    """A plain requirements.txt as a recipe with the default rules: most teams have one already."""
    source = str(path)
    requirements = tuple(_requirements_lines(path, seen=set()))
    if not requirements:
        raise RecipeError(
            f"{source}: no requirements found", hint="list one requirement a line, e.g. pandas==2.2.3"
        )
    layer_name = name or (path.parent.name if path.stem == "requirements" else path.stem)
    return recipe_from_mapping(
        {"name": _safe_name(layer_name), "requirements": list(requirements)},
        source,
        default_name=_safe_name(layer_name),
    )


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-_")
    return cleaned or "layer"


def _requirements_lines(path: Path, seen: set[Path]) -> list[str]:
    resolved = path.resolve()
    if resolved in seen:
        raise RecipeError(f"{path}: includes itself through -r", hint="remove the loop of -r lines")
    seen.add(resolved)
    lines: list[str] = []
    logical = _read_logical_lines(_read_text(path))
    for number, line in logical:
        where = f"{path}:{number}"
        if line.startswith(("-r ", "--requirement ")):
            included = path.parent / line.split(None, 1)[1].strip()
            lines += _requirements_lines(included, seen)
            continue
        if line.startswith("-"):
            raise RecipeError(
                f"{where}: option line {line.split()[0]!r} is not supported in a layer recipe",
                hint="allowed: requirement lines and -r FILE; pass an index with --index-url",
            )
        requirement = line.split(" --hash", 1)[0].split(";", 1)[0] if " --hash" in line else line
        lines.append(parse_requirement(requirement.strip(), f"line {number}", str(path)))
    return lines


def _read_logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations and drop comments and blank lines, keeping line numbers."""
    result: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, physical in enumerate(text.splitlines(), start=1):
        stripped = physical.split(" #", 1)[0].rstrip() if not physical.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line:
            result.append((start, line))
    if pending.strip():
        result.append((start, pending.strip()))
    return result


def _read_text(path: Path) -> str:
    try:
        if path.exists() and not path.is_file():
            raise RecipeError(f"{path}: not a regular file", hint="a recipe is a small text file")
        # Read at most one byte past the limit: a file may grow, or lie about its size, while it is read.
        with path.open("rb") as stream:
            data = stream.read(MAX_RECIPE_BYTES + 1)
        if len(data) > MAX_RECIPE_BYTES:
            raise RecipeError(
                f"{path}: larger than {MAX_RECIPE_BYTES} bytes", hint="a recipe is a small text file"
            )
        return data.decode("utf-8")
    except FileNotFoundError:
        raise RecipeError(
            f"{path}: no such file", hint="run `layerforge recipes` to list bundled recipes"
        ) from None
    except UnicodeDecodeError as error:
        raise RecipeError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start})", hint="save the file as UTF-8"
        ) from None
    except OSError as error:
        raise RecipeError(f"{path}: cannot be read ({error.strerror})", hint="check the path") from None


def bundled_recipes_dir() -> Path:
    """Installed wheels carry recipes in `layerforge/_recipes`; a source checkout has `recipes/`."""
    packaged = Path(str(resources.files("layerforge"))) / "_recipes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "recipes"


def bundled_recipe_names() -> list[str]:
    return sorted(p.stem for p in bundled_recipes_dir().glob("*.toml"))


def load_recipe(spec: str, *, name: str | None = None) -> Recipe:
    """Load a recipe from a bundled name, a .toml path or a requirements file."""
    path = Path(spec)
    if spec.endswith(".toml"):
        return load_toml_recipe(path)
    if path.suffix == ".txt" or (path.exists() and path.is_file()):
        return load_requirements_file(path, name)
    bundled = bundled_recipes_dir() / f"{spec}.toml"
    if bundled.is_file():
        return load_toml_recipe(bundled)
    names = bundled_recipe_names()
    close = difflib.get_close_matches(spec, names, n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    raise RecipeError(
        f"no recipe named {spec!r}: not a bundled recipe, a .toml file or a requirements file",
        hint=f"{suggestion}bundled recipes: {', '.join(names)}",
    )
