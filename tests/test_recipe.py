from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import RecipeError
from layerforge.recipe import bundled_recipe_names, load_recipe
from layerforge.target import Target


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_recipes_load_and_include_the_guides_stack() -> None:
    names = bundled_recipe_names()
    assert {"sklearn", "pandas", "numpy", "requests"} <= set(names)
    assert len(names) >= 5
    sklearn = load_recipe("sklearn")
    assert {"scikit-learn", "pandas", "numpy", "scipy", "joblib", "threadpoolctl"} <= set(
        sklearn.requirements
    )
    assert sklearn.verify.smoke and "days_since_last_review" in sklearn.verify.smoke
    for name in names:
        assert load_recipe(name).name == name


def test_full_recipe_is_read_into_frozen_config(tmp_path: Path) -> None:
    recipe = load_recipe(
        str(
            write(
                tmp_path,
                """
name = "demo"
requirements = ["requests>=2", "numpy==2.2.6"]
runtime = "python3.12"
arch = "arm64"
exclude = ["Boto3"]
[strip]
profile = "aggressive"
remove = ["**/*.md"]
keep = ["demo/data/**"]
bytecode = "none"
[strip.packages.Pandas]
remove = ["pandas/io/clipboard/**"]
[verify]
imports = ["numpy.linalg"]
[limits]
unzipped_mb = 100
""",
            )
        )
    )
    assert recipe.runtime == "python3.12" and recipe.arch == "arm64"
    assert recipe.exclude == ("boto3",)
    assert recipe.strip.profile == "aggressive" and recipe.strip.bytecode == "none"
    assert recipe.strip.packages["pandas"].remove == ("pandas/io/clipboard/**",)
    assert recipe.limits.unzipped_bytes == 100_000_000
    with pytest.raises(AttributeError):
        recipe.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ('name = "x"\nrequirement = ["a"]', "requirement", "did you mean `requirements`"),
        ('requirements = ["a"]\n[strip]\nprofil = "safe"', "strip.profil", "did you mean `strip.profile`"),
        ('requirements = "numpy"', "requirements", "list of strings"),
        ('requirements = ["numpy>>2"]', "requirements[0]", "PEP 508"),
        ('requirements = ["numpy"]\nruntime = "python3.8"', "runtime", "python3.11"),
        ('requirements = ["numpy"]\narch = "arm"', "arch", "arm64"),
        ('requirements = ["numpy"]\n[strip]\nprofile = "extreme"', "strip.profile", "aggressive"),
        ('requirements = ["numpy"]\n[strip]\nbinaries = "yes"', "strip.binaries", "true | false"),
        ('requirements = ["numpy"]\n[strip]\nremove = ["../x"]', "strip.remove[0]", "relative glob"),
        ('requirements = ["numpy"]\n[limits]\nunzipped_mb = -1', "limits.unzipped_mb", "220"),
        ('requirements = ["x @ https://evil.example/x.whl"]', "requirements[0]", "version specifier"),
        ("requirements = []", "requirements", "scikit-learn"),
        (
            'requirements = ["a"]\nexclude_runtime_provided = "yes"',
            "exclude_runtime_provided",
            "true | false",
        ),
        (
            'requirements = ["a"]\nexclude_runtime_provide = true',
            "exclude_runtime_provide",
            "did you mean `exclude_runtime_provided`",
        ),
    ],
)
def test_bad_recipes_name_file_key_and_what_is_allowed(
    tmp_path: Path, text: str, key: str, allowed: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as raised:
        load_recipe(str(path))
    message = str(raised.value)
    assert raised.value.exit_code == 2
    assert str(path) in message
    assert f"`{key}`" in message
    assert allowed in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "requirements = [")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(str(path))


def test_requirements_txt_is_a_recipe_with_default_rules(tmp_path: Path) -> None:
    write(
        tmp_path,
        "-r base.txt\nrequests==2.32.3 --hash=sha256:abc \\\n    --hash=sha256:def\n",
        "requirements.txt",
    )
    write(tmp_path, "# comment\nnumpy<2.3  # pinned for glibc 2.26\n\n", "base.txt")
    recipe = load_recipe(str(tmp_path / "requirements.txt"), name="api-deps")
    assert recipe.name == "api-deps"
    assert recipe.requirements == ("numpy<2.3", "requests==2.32.3")
    assert recipe.strip.profile == "safe" and recipe.strip.bytecode == "compile"


def test_requirements_txt_refuses_options_it_cannot_honour(tmp_path: Path) -> None:
    path = write(tmp_path, "numpy\n-e ./local\n", "requirements.txt")
    with pytest.raises(RecipeError, match=r"requirements.txt:2: option line '-e'"):
        load_recipe(str(path))


def test_unknown_recipe_name_suggests_a_bundled_one() -> None:
    with pytest.raises(RecipeError) as raised:
        load_recipe("sklaern")
    assert "did you mean 'sklearn'" in str(raised.value)


def test_exclude_runtime_provided_adds_what_the_targets_runtime_ships_to_exclude(tmp_path: Path) -> None:
    plain = load_recipe(str(write(tmp_path, 'requirements = ["a"]\nexclude = ["Pandas"]')))
    target = Target("python3.12", "x86_64")
    assert plain.exclude_runtime_provided is False and plain.excluded(target) == ("pandas",)
    keyed = load_recipe(
        str(write(tmp_path, 'requirements = ["a"]\nexclude = ["pandas"]\nexclude_runtime_provided = true'))
    )
    assert keyed.excluded(target) == tuple(sorted({"pandas"} | target.runtime_provided))
