"""The project file: which layers, for which runtimes and archs, published to which bucket and regions.

Validated as strictly as a recipe: an unknown key, an unknown runtime, a recipe that does not load or an
empty list is an error (exit 2) that names the file and the key, with "did you mean" where it helps.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..recipe import MAX_RECIPE_BYTES, Recipe, TableReader, bundled_recipes_dir, load_recipe
from ..target import ARCHES, DEFAULT_ARCH, DEFAULT_RUNTIME, RUNTIMES, Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 hosts only
    import tomli as tomllib

_TOP_KEYS = ("bucket", "regions", "prefix", "locks", "layers")
_LAYER_KEYS = ("recipe", "name", "runtimes", "archs")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEFAULT_PREFIX = "layerforge"


@dataclass(frozen=True)
class Layer:
    """One `[[layers]]` entry: a recipe (renamed by `name`) and the targets it is built for."""

    spec: str  # the recipe as the project file writes it
    recipe: Recipe
    runtimes: tuple[str, ...]
    archs: tuple[str, ...]
    recipe_file: Path | None  # the file the recipe was read from (None: none on disk, e.g. zipped)

    @property
    def name(self) -> str:
        return self.recipe.name


@dataclass(frozen=True)
class Cell:
    """One (layer, runtime, arch): what one build makes and one matrix job runs."""

    layer: Layer
    target: Target

    @property
    def name(self) -> str:
        # The same stem `build` gives its zip, lock and manifest.
        return f"{self.layer.name}-{self.target.runtime}-{self.target.arch}"


@dataclass(frozen=True)
class Project:
    path: Path
    layers: tuple[Layer, ...]
    bucket: str | None = None  # may hold "{region}"
    regions: tuple[str, ...] = ()
    prefix: str = DEFAULT_PREFIX
    locks: Path | None = None  # a folder of committed locks, `<cell>.lock.json`

    @property
    def cells(self) -> tuple[Cell, ...]:
        return tuple(
            Cell(layer, Target(runtime, arch))
            for layer in self.layers
            for runtime in layer.runtimes
            for arch in layer.archs
        )

    def lock_for(self, cell: Cell) -> Path | None:
        return None if self.locks is None else self.locks / f"{cell.name}.lock.json"


def load_project(path: Path) -> Project:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError(
            f"{path}: no project file here",
            hint="write a layerforge.toml (see the README's 'From one layer to a catalogue'), "
            "or pass --project FILE",
        ) from None
    except OSError as error:
        raise RecipeError(f"{path}: cannot be read ({error.strerror})", hint="check the path") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: larger than {MAX_RECIPE_BYTES} bytes", hint="a project file is small")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecipeError(f"{path}: not UTF-8 text ({error.reason})", hint="save it as UTF-8") from None
    return project_from_text(text, path)


def project_from_text(text: str, path: Path) -> Project:
    """The project in `text`, as if read from `path` (recipes and locks are relative to its folder)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: not valid TOML: {error}", hint="check the line named above") from None
    return _project(raw, path)


def _project(raw: Mapping[str, Any], path: Path) -> Project:
    reader = TableReader(str(path))
    reader.check_keys(raw, _TOP_KEYS, "")
    regions = reader.strings(raw, "regions", "regions")
    for index, region in enumerate(regions):
        if not _REGION.match(region):
            raise reader.fail(f"regions[{index}]", f"{region!r} is not an AWS region name", "e.g. us-east-1")
    entries = raw.get("layers")
    if not isinstance(entries, list) or not entries:
        raise reader.fail(
            "layers",
            "at least one [[layers]] entry is needed" if not entries else "expected [[layers]] tables",
            '[[layers]] with recipe = "sklearn", runtimes = ["python3.12"], archs = ["x86_64"]',
        )
    layers = tuple(_layer(reader, entry, index, path.parent) for index, entry in enumerate(entries))
    project = Project(
        path=path,
        layers=layers,
        bucket=reader.string(raw, "bucket", "bucket"),
        regions=tuple(dict.fromkeys(regions)),
        prefix=reader.string(raw, "prefix", "prefix", DEFAULT_PREFIX) or "",
        locks=_locks(reader, raw, path.parent),
    )
    seen: dict[str, int] = {}
    for index, layer in enumerate(layers):
        if layer.name in seen:
            raise reader.fail(
                f"layers[{index}].name",
                f"{layer.name!r} is also the name of layers[{seen[layer.name]}]; cells would collide",
                "a distinct name per layer",
            )
        seen[layer.name] = index
    return project


def _locks(reader: TableReader, raw: Mapping[str, Any], base: Path) -> Path | None:
    locks = reader.string(raw, "locks", "locks")
    if locks is None:
        return None
    if Path(locks).is_absolute() or ".." in Path(locks).parts:
        raise reader.fail("locks", f"{locks!r} must be a folder inside the project", 'e.g. "locks"')
    return base / locks


def _layer(reader: TableReader, entry: object, index: int, base: Path) -> Layer:
    where = f"layers[{index}]"
    if not isinstance(entry, dict):
        raise reader.fail(where, "expected a table", '[[layers]] with recipe = "..."')
    reader.check_keys(entry, _LAYER_KEYS, f"{where}.")
    spec = reader.string(entry, "recipe", f"{where}.recipe")
    if not spec:
        raise reader.fail(f"{where}.recipe", "every layer needs a recipe", '"sklearn", "layers/ml.toml"')
    name = reader.string(entry, "name", f"{where}.name")
    if name is not None and not _NAME.match(name):
        raise reader.fail(f"{where}.name", f"{name!r} is not a usable layer name", "letters, digits, - and _")
    recipe, recipe_file = _recipe(reader, spec, name, f"{where}.recipe", base)
    runtimes = _choices(reader, entry, f"{where}.runtimes", "runtimes", tuple(RUNTIMES))
    archs = _choices(reader, entry, f"{where}.archs", "archs", tuple(ARCHES))
    return Layer(
        spec=spec,
        recipe=recipe,
        runtimes=runtimes or (recipe.runtime or DEFAULT_RUNTIME,),
        archs=archs or (recipe.arch or DEFAULT_ARCH,),
        recipe_file=recipe_file,
    )


def _choices(
    reader: TableReader, entry: Mapping[str, Any], path: str, key: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    if key in entry and entry[key] == []:
        raise reader.fail(path, "an empty list builds nothing", " | ".join(allowed))
    values = reader.strings(entry, key, path)
    for i, value in enumerate(values):
        reader.choice({key: value}, key, f"{path}[{i}]", allowed, allowed[0])
    return tuple(dict.fromkeys(values))


def _recipe(
    reader: TableReader, spec: str, name: str | None, where: str, base: Path
) -> tuple[Recipe, Path | None]:
    """A bundled name, or a .toml recipe or requirements file relative to the project file."""
    local = base / spec
    is_file = spec.endswith((".toml", ".txt")) or "/" in spec or local.exists()
    if is_file and ".." in Path(spec).parts:
        raise reader.fail(where, f"{spec!r} leaves the project's folder", "a path inside the project")
    if is_file and not spec.endswith(".toml") and name is None:
        raise reader.fail(
            where.replace(".recipe", ".name"),
            f"a requirements file ({spec}) needs a layer name",
            'name = "ml" beside recipe',
        )
    try:
        recipe = load_recipe(str(local) if is_file else spec, name=name)
    except RecipeError as error:
        raise RecipeError(f"{reader.source}: key `{where}`: {error.message}", hint=error.hint) from None
    if name is not None and recipe.name != name:
        recipe = dataclasses.replace(recipe, name=name)
    if is_file:
        return recipe, local
    bundled = bundled_recipes_dir() / f"{spec}.toml"
    return recipe, bundled if bundled.is_file() else None
