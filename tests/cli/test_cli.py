"""The command-line contract: exit codes, one JSON object on stdout, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.layers import publish_demo_stack
from tests.support.index import LocalIndex


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layerforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def test_malformed_recipe_exits_2_with_a_one_line_cause_and_no_traceback(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text('name = "bad"\nrequirements = ["numpy"]\n[strip]\nprofle = "safe"\n')
    completed = run("build", str(recipe), cwd=tmp_path)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    first = completed.stderr.strip().splitlines()[0]
    assert "unknown key `strip.profle`" in first and "bad.toml" in first
    assert "did you mean `strip.profile`" in completed.stderr
    assert completed.stdout == ""


def test_json_error_is_one_object_on_stdout(tmp_path: Path) -> None:
    completed = run("build", "no-such-recipe", "--json", cwd=tmp_path)
    assert completed.returncode == 2
    payload = json.loads(completed.stdout)
    assert payload["exit_code"] == 2 and "no-such-recipe" in payload["error"]


def test_build_json_prints_the_contract_fields_and_nothing_else(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    publish_demo_stack(local_index, tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("demo\n")
    completed = run(
        "build",
        str(requirements),
        "--name",
        "api",
        "--index-url",
        local_index.url,
        "--json",
        "--out",
        str(tmp_path / "dist"),
        cwd=tmp_path,
        env={"LAYERFORGE_CACHE_DIR": str(tmp_path / "c")},
    )
    assert completed.returncode == 0, completed.stderr
    payload = json.loads(completed.stdout)
    for key in (
        "recipe",
        "runtime",
        "arch",
        "zip",
        "sha256",
        "zipped_bytes",
        "unzipped_bytes",
        "lock",
        "packages",
        "removed_bytes",
        "verified",
        "limits",
    ):
        assert key in payload, key
    assert payload["recipe"] == "api" and payload["runtime"] == "python3.11" and payload["arch"] == "x86_64"
    assert Path(payload["zip"]).is_file() and Path(payload["lock"]).is_file()
    for package in payload["packages"]:
        assert {"name", "version", "wheel", "sha256", "unzipped_bytes"} <= set(package)
    assert all({"name", "value", "headroom"} <= set(limit) for limit in payload["limits"])
    assert "built" in completed.stderr and "resolve" in completed.stderr


def test_lock_then_build_from_the_lock(local_index: LocalIndex, tmp_path: Path) -> None:
    publish_demo_stack(local_index, tmp_path)
    recipe = tmp_path / "demo.toml"
    recipe.write_text('name = "demo"\nrequirements = ["demo"]\n')
    env = {"LAYERFORGE_CACHE_DIR": str(tmp_path / "c")}
    locked = run(
        "lock",
        str(recipe),
        "--index-url",
        local_index.url,
        "-o",
        str(tmp_path / "demo.lock.json"),
        cwd=tmp_path,
        env=env,
    )
    assert locked.returncode == 0, locked.stderr
    assert "fastlib 2.0" in locked.stderr  # says why the older fastlib was taken
    built = run(
        "build",
        str(recipe),
        "--lock",
        str(tmp_path / "demo.lock.json"),
        "--json",
        "--out",
        str(tmp_path / "dist"),
        cwd=tmp_path,
        env=env,
    )
    assert built.returncode == 0, built.stderr
    lock = json.loads((tmp_path / "demo.lock.json").read_text())
    assert json.loads(built.stdout)["lock_hash"] == lock["lock_hash"]


def test_recipes_lists_and_shows_bundled_recipes(tmp_path: Path) -> None:
    listed = run("recipes", "--json", cwd=tmp_path)
    names = {r["name"] for r in json.loads(listed.stdout)["recipes"]}
    assert {"sklearn", "pandas", "numpy", "requests"} <= names
    shown = run("recipes", "show", "sklearn", cwd=tmp_path)
    assert shown.returncode == 0 and 'name = "sklearn"' in shown.stdout
    missing = run("recipes", "show", "sklarn", cwd=tmp_path)
    assert missing.returncode == 2 and "did you mean 'sklearn'" in missing.stderr


@pytest.mark.parametrize(
    "args", [("build", "sklearn", "--runtime", "python3.8"), ("build", "sklearn", "--arch", "arm")]
)
def test_unknown_runtime_or_arch_is_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    completed = run(*args, cwd=tmp_path)
    assert completed.returncode == 2
    assert "python3.11" in completed.stderr or "arm64" in completed.stderr


def test_python_m_layerforge_and_version(tmp_path: Path) -> None:
    completed = run("--version", cwd=tmp_path)
    assert completed.returncode == 0 and "layerforge" in completed.stdout


def test_with_no_interpreter_and_no_docker_engine_the_build_says_imports_were_not_verified(
    local_index: LocalIndex, tmp_path: Path
) -> None:
    local_index.add_wheel("purelib", "1.0")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("purelib\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    hidden = {
        "PATH": str(empty),  # no python3.13 on PATH
        "PYENV_ROOT": str(empty),
        "HOME": str(empty),  # no uv-managed interpreters either
        "XDG_DATA_HOME": str(empty),
        "UV_PYTHON_INSTALL_DIR": str(empty),
        "DOCKER_HOST": f"unix://{empty}/no-docker.sock",
        "LAYERFORGE_CACHE_DIR": str(tmp_path / "cache"),
    }
    completed = run(
        "build",
        str(requirements),
        "--name",
        "pure",
        "--runtime",
        "python3.13",
        "--index-url",
        local_index.url,
        "--out",
        str(tmp_path / "dist"),
        "--json",
        cwd=tmp_path,
        env=hidden,
    )
    assert completed.returncode == 0, completed.stderr
    payload = json.loads(completed.stdout)
    assert payload["verified"] is None
    assert payload["audit"]["findings"] == []
    stderr = " ".join(completed.stderr.split())
    assert "imports NOT verified" in stderr and "only the static audit" in stderr
    assert "Docker" in stderr


def test_every_command_is_listed_and_loads_from_the_module_named_for_it() -> None:
    import click
    from click.testing import CliRunner

    from layerforge.cli import main
    from layerforge.cli.commands import COMMAND_MODULES

    listed = CliRunner().invoke(main, ["--help"])
    assert listed.exit_code == 0, listed.output
    with click.Context(main) as context:
        for name in COMMAND_MODULES:
            assert name in listed.output
            command = main.get_command(context, name)
            assert command is not None and command.name == name


def test_a_command_does_not_load_the_others() -> None:
    # `layerforge build` in CI pays for neither boto3 (publish) nor the size report.
    probe = (
        "import sys; from click.testing import CliRunner; from layerforge.cli import main; "
        "result = CliRunner().invoke(main, ['build', '--help']); "
        "assert result.exit_code == 0, result.output; "
        "print(sorted(m for m in ('boto3', 'layerforge.cli.publish_cmd', 'layerforge.report.size_report') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_progress_is_drawn_only_on_a_terminal() -> None:
    """Off a terminal rich draws nothing, but a live display would still rebuild its table ten times a
    second in a thread of its own; a CI log gets the stage lines only."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from layerforge.cli.output import Output

    piped = Output(console=Console(file=io.StringIO()))
    with piped.progress() as progress:
        assert progress is None
    terminal = Output(console=Console(file=io.StringIO(), force_terminal=True))
    with terminal.progress() as progress:
        assert isinstance(progress, Progress)
    quiet = Output(quiet=True, console=Console(file=io.StringIO(), force_terminal=True))
    with quiet.progress() as progress:
        assert progress is None


def test_a_command_runs_with_a_young_generation_of_a_hundred_thousand_and_its_imports_frozen() -> None:
    """A build makes containers by the million, few in cycles: collecting every 700 allocations cost a
    cold sklearn build a second with the GIL held, and every 10,000 still 0.11 to 0.13 s. What importing the
    command made is frozen: no collection traverses it again."""
    program = (
        "import gc, sys\n"
        "from layerforge.cli import main\n"
        "before = gc.get_threshold()\n"
        "main(['recipes'], standalone_mode=False)\n"
        "print(gc.get_freeze_count() > 10_000, file=sys.stderr)\n"
        "print(before, gc.get_threshold(), file=sys.stderr)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    *_, frozen, thresholds = completed.stderr.strip().splitlines()
    before, after = thresholds.split(") (")
    assert before == "(700, 10, 10"
    assert after == "100000, 10, 10)"
    assert frozen == "True"


# Runs layerforge's entry as the console script does, noting for each pip fork server started whether click
# had been imported by then, and, at exit, whether each server has ended (one that ran nothing is killed
# then, by an exit handler registered after this one's, so that a failed command still ends at once).
_WATCH_THE_START = """
import atexit, subprocess, sys
started, servers = [], []
real = subprocess.Popen.__init__
def watching(self, args, *rest, **kwargs):
    if "pip's fork server" in " ".join(map(str, args)):
        started.append("click" in sys.modules)
        servers.append(self)
    real(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = watching
def report():
    ended = [server.wait(timeout=10) is not None for server in servers]
    print("servers started, click imported by then:", started, "ended:", ended, file=sys.__stderr__)
atexit.register(report)
sys.argv = ["layerforge", *sys.argv[1:]]
from layerforge.entry import run
run()
"""


@pytest.mark.parametrize(
    ("args", "started"),
    [
        (["lock", "missing.toml"], "[False] ended: [True]"),  # before the CLI imports click, not after
        (["build", "missing.toml"], "[False] ended: [True]"),
        (["build", "--help"], "[] ended: []"),
        (["lock", "-h"], "[] ended: []"),
        (["recipes"], "[] ended: []"),  # runs no pip
    ],
)
def test_a_command_that_resolves_starts_pips_server_before_the_cli_imports_itself(
    tmp_path: Path, args: list[str], started: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _WATCH_THE_START, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"servers started, click imported by then: {started}" in completed.stderr, completed.stderr
