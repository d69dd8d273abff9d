"""Optional top-level modules: real wheels, resolved by pip from a local index, built and imported.

Each distribution below ships a second top-level module that cannot import. Whether that fails the build
depends on what the distribution requires, on what the layer provides and on the recipe, as
layerforge/verify/optional.py says.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.build import BuildOptions, BuildResult, build
from layerforge.errors import VerificationError
from layerforge.recipe import recipe_from_mapping
from layerforge.target import Target
from layerforge.verify.from_zip import verify_zip
from layerforge.verify.optional import OptionalPolicy, optional_policy
from tests.support.events import Recorded
from tests.support.index import LocalIndex
from tests.support.layertree import layer_tree


def _dist(index: LocalIndex, name: str, plugin: str, requires: list[str]) -> None:
    """`name` (imports fine) and `name_plugin`, whose code is `plugin`."""
    index.add_wheel(
        name,
        "1.0",
        files={f"{name}/__init__.py": "VALUE = 1\n", f"{name}_plugin/__init__.py": plugin},
        requires=requires,
    )


@pytest.fixture()
def index(local_index: LocalIndex) -> LocalIndex:
    _dist(local_index, "optx", "import somemissing\n", ['somemissing; extra == "x"'])
    _dist(local_index, "plainx", "import somemissing\n", [])
    _dist(local_index, "reqx", "import somemissing\n", ["somemissing"])
    # A module of a platform that is not the target: required on Windows only, so optional on Lambda.
    _dist(local_index, "winx", "import somemissing\n", ['somemissing; sys_platform == "win32"'])
    _dist(local_index, "ownx", "import ownx.gone\n", [])
    # The helper is a top-level module of its own, which a recipe rule below removes.
    local_index.add_wheel(
        "helperx",
        "1.0",
        files={"helperx/__init__.py": "import helperx_core\n", "helperx_core/__init__.py": "CORE = 1\n"},
    )
    # Only so that pip can resolve reqx; the recipe then leaves it out of the layer.
    local_index.add_wheel("somemissing", "1.0", files={"somemissing_impl/__init__.py": ""})
    return local_index


def _build(
    index: LocalIndex, tmp_path: Path, events: Recorded | None = None, **recipe: object
) -> BuildResult:
    raw = {"name": "opt", **recipe}
    options = BuildOptions(
        recipe=recipe_from_mapping(raw, "opt.toml", "opt"),
        target=Target("python3.11", "x86_64"),
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        index_url=index.url,
    )
    return build(options, events)


def test_a_module_whose_missing_import_only_an_extra_brings_is_skipped_with_a_warning_naming_it(
    index: LocalIndex, tmp_path: Path
) -> None:
    events = Recorded()
    result = _build(index, tmp_path, events, requirements=["optx"])
    verification = result.manifest["verification"]
    assert result.manifest["verified"] is True
    assert verification["imported"] == ["optx"]
    (skipped,) = verification["optional_modules"]
    assert skipped["module"] == "optx_plugin"
    assert skipped["distributions"] == ["optx"]
    assert skipped["missing"] == "somemissing"
    assert skipped["extras"] == ["x"]
    assert "No module named 'somemissing'" in skipped["error"]
    (warning,) = [w for w in events.warnings if "optx_plugin" in w]
    assert "only with the extra [x]" in warning and "optx[x]" in warning
    # `verify ZIP` knows no wheel: the top_level.txt the build declared says whose module it is.
    again = verify_zip(result.zip_path, Target("python3.11", "x86_64"))
    assert again.ok and [m.module for m in again.verify.optional_modules] == ["optx_plugin"]


def test_a_module_whose_missing_import_its_distribution_does_not_name_is_skipped_too(
    index: LocalIndex, tmp_path: Path
) -> None:
    events = Recorded()
    result = _build(index, tmp_path, events, requirements=["plainx", "winx"])
    skipped = {s["module"]: s for s in result.manifest["verification"]["optional_modules"]}
    assert set(skipped) == {"plainx_plugin", "winx_plugin"}
    assert skipped["plainx_plugin"]["extras"] == skipped["winx_plugin"]["extras"] == []
    assert any("plainx does not require it" in warning for warning in events.warnings)
    assert set(result.manifest["verification"]["imported"]) == {"plainx", "winx"}


@pytest.mark.parametrize(
    ("recipe", "failing", "why"),
    [
        # The distribution requires it (the recipe left it out, as one leaves out boto3).
        (
            {"requirements": ["reqx"], "exclude": ["somemissing"]},
            "reqx_plugin",
            "No module named 'somemissing'",
        ),
        # The recipe asks for the module by name: what it asks for is never optional.
        (
            {"requirements": ["optx"], "verify": {"imports": ["optx_plugin"]}},
            "optx_plugin",
            "No module named 'somemissing'",
        ),
        # What is missing is a module of a distribution that is in the layer: the layer is broken.
        ({"requirements": ["ownx"]}, "ownx_plugin", "No module named 'ownx.gone'"),
        # The layer had it until a strip rule removed it.
        (
            {"requirements": ["helperx"], "strip": {"remove": ["helperx_core/**"]}},
            "helperx",
            "recipe:remove:helperx_core/**",
        ),
    ],
    ids=["required", "recipe-import", "installed-dist", "strip-rule"],
)
def test_a_module_that_fails_for_any_other_reason_still_fails_the_build(
    index: LocalIndex, tmp_path: Path, recipe: dict[str, object], failing: str, why: str
) -> None:
    with pytest.raises(VerificationError) as caught:
        _build(index, tmp_path, **recipe)
    message = str(caught.value)
    assert f"import {failing} failed" in message and why in message
    assert not list((tmp_path / "out").glob("*.zip"))


def test_smoke_code_that_imports_an_optional_module_still_fails(index: LocalIndex, tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as caught:
        _build(index, tmp_path, requirements=["optx"], verify={"smoke": "import optx_plugin\n"})
    assert "the smoke code failed" in str(caught.value)


def _policy(
    tmp_path: Path, metadata: str, dist_info: dict[str, str] | None = None, owner: str = "x"
) -> OptionalPolicy:
    files = {
        "python/x/__init__.py": "",
        "python/x_plugin/__init__.py": "import somemissing\n",
        "python/x-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: x\nVersion: 1.0\n{metadata}",
        **{f"python/x-1.0.dist-info/{name}": text for name, text in (dist_info or {}).items()},
    }
    tree = layer_tree(tmp_path / "layer", files, distribution=lambda _path: owner)
    return optional_policy(tree, Target("python3.11", "x86_64"))


def test_metadata_that_cannot_be_read_makes_nothing_optional(tmp_path: Path) -> None:
    readable = _policy(tmp_path / "a", "Requires-Dist: somemissing; extra == 'x'\n")
    assert readable.classify("x_plugin", "somemissing", None) is not None
    broken = _policy(tmp_path / "b", "Requires-Dist: somemissing; extra == 'x'\nRequires-Dist: ((\n")
    assert broken.classify("x_plugin", "somemissing", None) is None


def test_a_required_distribution_missing_from_the_layer_may_be_what_provides_the_module(
    tmp_path: Path,
) -> None:
    # `import yaml` comes from PyYAML: a name that matches no requirement proves nothing while a
    # distribution the module's owner requires is not in the layer.
    policy = _policy(tmp_path, "Requires-Dist: PyYAML\n")
    assert policy.classify("x_plugin", "yaml", None) is None


@pytest.mark.parametrize("declared", ["top_level.txt", "RECORD"])
def test_a_layer_from_elsewhere_says_whose_module_it_is_in_its_dist_info(
    tmp_path: Path, declared: str
) -> None:
    text = "x\nx_plugin\n" if declared == "top_level.txt" else "x/__init__.py,,\nx_plugin/__init__.py,,\n"
    policy = _policy(tmp_path, "", {declared: text}, owner="")
    found = policy.classify("x_plugin", "somemissing", None)
    assert found is not None and found.distributions == ("x",) and found.extras == ()
    assert _policy(tmp_path / "bare", "", owner="").classify("x_plugin", "somemissing", None) is None
