"""Which failing top-level modules are optional: a dependency nobody asked for, not a broken layer.

A wheel may ship a second top-level module for an optional feature: duckdb's wheel carries
`adbc_driver_duckdb`, which imports `adbc_driver_manager`, a dependency duckdb declares only behind an
extra. `import duckdb` works; `import adbc_driver_duckdb` cannot, and does not on Lambda either, yet
nobody who did not ask for the extra would import it. Such a module is skipped with a warning that names
the extra, when every one of these holds:

- it is a top-level module of a distribution, and not one of the recipe's `[verify] imports`;
- its import failed because a module was not found, and no distribution in the layer provides that
  module's top-level name (nor did, before slimming: a strip rule's victim is never optional);
- the distribution does not require it on the target: no `Requires-Dist` of that name applies without an
  extra, and no requirement that applies without an extra is missing from the layer (it might be the
  one that provides the module under another name: `yaml` is PyYAML's).

Everything else that fails stays a failure: the distribution's other modules, the recipe's imports, the
smoke code, and any module whose owner's metadata cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import PurePosixPath

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..target import Target
from ..tree.layerzip import owners as dist_info_owners
from ..tree.layerzip import read_metadata_text
from ..tree.toplevel import top_level_modules, top_level_name
from ..tree.unpack import LayerTree

# A METADATA file is hostile input: what is read of it is bounded.
_EXTRA = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")
_MARKER_ERRORS = (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName)


@dataclass(frozen=True)
class OptionalModule:
    """A top-level module skipped because what it imports is an optional dependency nobody installed."""

    module: str
    distributions: tuple[str, ...]  # the distributions that ship it (one, but for namespace packages)
    missing: str  # the module that was not found
    extras: tuple[str, ...]  # the extras that would bring it; empty when no requirement names it
    error: str

    @property
    def message(self) -> str:
        owner = " and ".join(self.distributions)
        if self.extras:
            asked = " or ".join(f"[{extra}]" for extra in self.extras)
            why = f"{owner} needs it only with the extra {asked}"
            fix = f"install {self.distributions[0]}[{self.extras[0]}] if you use {self.module}"
        else:
            why = f"{owner} does not require it"
            fix = f"add the distribution that provides {self.missing} if you use {self.module}"
        return (
            f"{self.module} (from {owner}) is optional and was not checked: it imports {self.missing}, "
            f"which nothing in the layer provides, and {why}; {fix}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "module": self.module,
            "distributions": list(self.distributions),
            "missing": self.missing,
            "extras": list(self.extras),
            "error": self.error,
            "message": self.message,
        }


@dataclass(frozen=True)
class Needs:
    """One distribution's Requires-Dist, as it applies to the target. `readable` False: trust none of it."""

    required: frozenset[str] = frozenset()  # canonical names that apply without an extra
    by_extra: Mapping[str, frozenset[str]] = field(default_factory=dict)  # canonical name -> extras
    readable: bool = True


@dataclass(frozen=True)
class OptionalPolicy:
    """What the layer provides and what each distribution requires: enough to tell optional from broken."""

    owners: Mapping[str, tuple[str, ...]]  # top-level module -> canonical distribution names
    provided: frozenset[str]  # every top-level module the layer has (or had, before slimming)
    installed: frozenset[str]  # canonical names of the distributions in the layer
    needs: Mapping[str, Needs]
    mandatory: frozenset[str] = frozenset()  # the recipe's [verify] imports: never optional

    def classify(
        self, module: str, not_found: str | None, removed_by: str | None, error: str = ""
    ) -> OptionalModule | None:
        """The module as optional, or None when its failure must stand."""
        owners = self.owners.get(module, ())
        if module in self.mandatory or not owners or not not_found or removed_by:
            return None
        missing_top = not_found.split(".", 1)[0]
        if missing_top == module or missing_top in self.provided:
            return None
        wanted = canonicalize_name(missing_top)
        extras: set[str] = set()
        for owner in owners:
            needs = self.needs.get(owner)
            if needs is None or not needs.readable or wanted in needs.required:
                return None
            if needs.required - self.installed:
                return None
            extras.update(needs.by_extra.get(wanted, ()))
        return OptionalModule(module, owners, not_found, tuple(sorted(extras)), error)


def optional_policy(
    tree: LayerTree, target: Target, *, mandatory: Iterable[str] = (), removed: Iterable[str] = ()
) -> OptionalPolicy:
    """The policy for a layer tree. `removed` are layer paths that slimming removed (what was provided)."""
    owners: dict[str, set[str]] = {}
    for path, layer_file in tree.files.items():
        name = top_level_name(path)
        if name is not None and layer_file.distribution:
            owners.setdefault(name, set()).add(layer_file.distribution)
    needs: dict[str, Needs] = {}
    environment = _environment(target)
    for path in tree.files:
        info = PurePosixPath(path)
        if info.name != "METADATA" or not info.parent.name.endswith(".dist-info"):
            continue
        metadata = _metadata(tree, path)
        name = canonicalize_name(metadata.name or info.parent.name.split("-", 1)[0])
        needs[name] = _needs(metadata, environment)
    # A zip from elsewhere has no attribution: its dist-info folders say which names are whose.
    for path, distribution in dist_info_owners(tree).items():
        module = top_level_name(path)
        if module is not None:
            owners.setdefault(module, set()).add(canonicalize_name(distribution))
    provided = set(top_level_modules(tree))
    provided.update(name for name in map(top_level_name, removed) if name is not None)
    return OptionalPolicy(
        owners={module: tuple(sorted(names)) for module, names in owners.items()},
        provided=frozenset(provided),
        installed=frozenset(needs),
        needs=needs,
        mandatory=frozenset(mandatory),
    )


@dataclass(frozen=True)
class _Metadata:
    name: str
    requires: tuple[str, ...]
    extras: tuple[str, ...]


def _metadata(tree: LayerTree, path: str) -> _Metadata:
    text = read_metadata_text(tree.root / path)
    headers = HeaderParser().parsestr(text)
    return _Metadata(
        name=str(headers.get("Name") or ""),
        requires=tuple(str(value) for value in headers.get_all("Requires-Dist") or []),
        extras=tuple(str(value) for value in headers.get_all("Provides-Extra") or []),
    )


def _needs(metadata: _Metadata, environment: dict[str, str]) -> Needs:
    # Provides-Extra should list every extra, but a marker is what pip reads: take both.
    named = [*metadata.extras, *(found for line in metadata.requires for found in _EXTRA.findall(line))]
    extras = sorted({canonicalize_name(extra) for extra in named})
    required: set[str] = set()
    by_extra: dict[str, set[str]] = {}
    for line in metadata.requires:
        try:
            requirement = Requirement(line)
            marker = requirement.marker
            name = canonicalize_name(requirement.name)
            if marker is None or marker.evaluate(dict(environment, extra="")):
                required.add(name)
                continue
            for extra in extras:
                if marker.evaluate(dict(environment, extra=extra)):
                    by_extra.setdefault(name, set()).add(extra)
        except (InvalidRequirement, *_MARKER_ERRORS):
            # A requirement that cannot be read might be the one that makes the module required.
            return Needs(readable=False)
    return Needs(
        frozenset(required), {name: frozenset(found) for name, found in by_extra.items()}, readable=True
    )


def _environment(target: Target) -> dict[str, str]:
    """The marker environment of the target's runtime (PEP 508), not of this host."""
    major, minor = target.python_version
    return {
        "python_version": f"{major}.{minor}",
        "python_full_version": f"{major}.{minor}.0",
        "implementation_name": "cpython",
        "implementation_version": f"{major}.{minor}.0",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": target.machine,
        "platform_release": "",
        "platform_version": "",
    }
