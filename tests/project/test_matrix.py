"""The project file, its validation, and `layerforge matrix` (cells, --cells, --changed-since)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from layerforge import __version__
from layerforge.cli import main

TWO_BY_TWO = """\
bucket = "acme-layers-{region}"
regions = ["us-east-1", "eu-west-1"]

[[layers]]
recipe = "layers/ml.toml"
runtimes = ["python3.11", "python3.12"]
archs = ["x86_64"]

[[layers]]
recipe = "layers/web.txt"
name = "web"
runtimes = ["python3.11", "python3.12"]
archs = ["x86_64"]
"""


def write_project(root: Path, text: str = TWO_BY_TWO) -> Path:
    (root / "layers").mkdir(parents=True, exist_ok=True)
    (root / "layers" / "ml.toml").write_text('name = "ml"\nrequirements = ["numpy"]\n')
    (root / "layers" / "web.txt").write_text("requests==2.32.3\n")
    path = root / "layerforge.toml"
    path.write_text(text)
    return path


def matrix(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["matrix", "--project", str(root / "layerforge.toml"), *args])


def cells(result: Result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return [row["cell"] for row in json.loads(result.stdout)["include"]]


def test_two_recipes_by_two_runtimes_on_x86_64_are_four_cells_on_native_runners(tmp_path: Path) -> None:
    write_project(tmp_path)
    result = matrix(tmp_path)
    rows = json.loads(result.stdout)["include"]
    assert [row["cell"] for row in rows] == [
        "ml-python3.11-x86_64",
        "ml-python3.12-x86_64",
        "web-python3.11-x86_64",
        "web-python3.12-x86_64",
    ]
    assert all(set(row) == {"cell", "recipe", "runtime", "arch", "runs-on"} for row in rows)
    assert {row["runs-on"] for row in rows} == {"ubuntu-24.04"}
    assert rows[2]["recipe"] == "layers/web.txt" and rows[2]["runtime"] == "python3.11"
    # stdout is the matrix alone, on one line, for fromJSON in a workflow.
    assert result.stdout.count("\n") == 1


def test_arm64_cells_run_on_arm_runners_and_cells_filter_by_pattern(tmp_path: Path) -> None:
    write_project(tmp_path, TWO_BY_TWO.replace('archs = ["x86_64"]', 'archs = ["x86_64", "arm64"]', 1))
    result = matrix(tmp_path, "--cells", "ml-*-arm64")
    rows = json.loads(result.stdout)["include"]
    assert [(r["cell"], r["runs-on"]) for r in rows] == [
        ("ml-python3.11-arm64", "ubuntu-24.04-arm"),
        ("ml-python3.12-arm64", "ubuntu-24.04-arm"),
    ]
    assert cells(matrix(tmp_path, "--cells", "web-python3.11-x86_64,ml-python3.12-x86_64")) == [
        "ml-python3.12-x86_64",
        "web-python3.11-x86_64",
    ]
    typo = matrix(tmp_path, "--cells", "ml-python3.11-x86-64")
    assert typo.exit_code == 2 and "did you mean 'ml-python3.11-x86_64'" in typo.stderr


def test_a_bundled_recipe_needs_no_file_and_the_defaults_are_its_own(tmp_path: Path) -> None:
    (tmp_path / "layerforge.toml").write_text('[[layers]]\nrecipe = "sklearn"\n')
    assert cells(matrix(tmp_path)) == ["sklearn-python3.11-x86_64"]


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (TWO_BY_TWO.replace("regions =", "region ="), "`region`", "did you mean `regions`"),
        (TWO_BY_TWO.replace("archs =", "arch =", 1), "`layers[0].arch`", "did you mean `layers[0].archs`"),
        (TWO_BY_TWO.replace('"python3.12"]', '"python3.8"]', 1), "`layers[0].runtimes[1]`", "python3.9"),
        (TWO_BY_TWO.replace('"x86_64"]', '"amd64"]', 1), "`layers[0].archs[0]`", "x86_64 | arm64"),
        (TWO_BY_TWO.replace("layers/ml.toml", "layers/nothere.toml"), "`layers[0].recipe`", "no such file"),
        (TWO_BY_TWO.replace("layers/ml.toml", "skleran"), "`layers[0].recipe`", "did you mean 'sklearn'"),
        ('bucket = "b"\nlayers = []\n', "`layers`", "at least one [[layers]]"),
        ('bucket = "b"\n', "`layers`", "at least one [[layers]]"),
        (
            TWO_BY_TWO.replace('runtimes = ["python3.11", "python3.12"]', "runtimes = []", 1),
            "runtimes",
            "empty",
        ),
        (TWO_BY_TWO.replace('name = "web"\n', ""), "`layers[1].name`", "needs a layer name"),
        (TWO_BY_TWO.replace('name = "web"', 'name = "ml"'), "`layers[1].name`", "also the name of layers[0]"),
        (TWO_BY_TWO.replace("us-east-1", "us-east"), "`regions[0]`", "not an AWS region"),
        (TWO_BY_TWO.replace("layers/ml.toml", "../ml.toml"), "`layers[0].recipe`", "leaves the project"),
    ],
)
def test_a_bad_project_file_exits_2_naming_the_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    write_project(tmp_path, text)
    result = matrix(tmp_path)
    assert result.exit_code == 2, result.output
    assert key in result.stderr and words in " ".join(result.stderr.split()), result.stderr
    assert "layerforge.toml" in result.stderr and result.stdout == ""


def test_no_project_file_says_how_to_write_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["matrix"])
    assert result.exit_code == 2 and "no project file" in result.stderr


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    write_project(root, TWO_BY_TWO + 'locks = "locks"\n'.join(["", ""]) if False else TWO_BY_TWO)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "layers")
    return root


def test_changed_since_head_after_touching_one_recipe_lists_only_its_cells(repo: Path) -> None:
    assert cells(matrix(repo, "--changed-since", "HEAD")) == []
    with (repo / "layers" / "web.txt").open("a") as recipe:
        recipe.write("urllib3<3\n")
    assert cells(matrix(repo, "--changed-since", "HEAD")) == [
        "web-python3.11-x86_64",
        "web-python3.12-x86_64",
    ]
    # Committed, it is still a change since the commit before.
    git(repo, "commit", "-q", "-am", "web: pin urllib3")
    assert cells(matrix(repo, "--changed-since", "HEAD~1")) == [
        "web-python3.11-x86_64",
        "web-python3.12-x86_64",
    ]
    assert cells(matrix(repo, "--changed-since", "HEAD")) == []


def test_changed_since_counts_new_cells_changed_locks_and_another_layerforge(repo: Path) -> None:
    project = repo / "layerforge.toml"
    project.write_text(project.read_text().replace('"python3.12"]', '"python3.12", "python3.13"]', 1))
    assert cells(matrix(repo, "--changed-since", "HEAD")) == ["ml-python3.13-x86_64"]

    project.write_text(TWO_BY_TWO.replace("regions =", 'locks = "locks"\nregions ='))
    (repo / "locks").mkdir()
    lock = {"layerforge_version": __version__, "packages": []}
    (repo / "locks" / "ml-python3.11-x86_64.lock.json").write_text(json.dumps(lock))
    (repo / "locks" / "web-python3.12-x86_64.lock.json").write_text(json.dumps(lock))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "locks")
    assert cells(matrix(repo, "--changed-since", "HEAD")) == []
    (repo / "locks" / "ml-python3.11-x86_64.lock.json").write_text(json.dumps(lock | {"packages": [1]}))
    assert cells(matrix(repo, "--changed-since", "HEAD")) == ["ml-python3.11-x86_64"]
    git(repo, "commit", "-q", "-am", "relock")
    # A lock written by another layerforge: this one would build it differently.
    (repo / "locks" / "web-python3.12-x86_64.lock.json").write_text(
        json.dumps(lock | {"layerforge_version": "0.0.1"})
    )
    git(repo, "commit", "-q", "-am", "an old lock")
    assert cells(matrix(repo, "--changed-since", "HEAD")) == ["web-python3.12-x86_64"]


def test_changed_since_an_unknown_ref_exits_2(repo: Path) -> None:
    result = matrix(repo, "--changed-since", "no-such-ref")
    assert result.exit_code == 2 and "--changed-since no-such-ref: no such commit" in result.stderr
