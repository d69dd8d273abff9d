"""pip run from its fork server (resolve/pip_runner.py), against a real pip and test indexes on 127.0.0.1.

What it must show: each run sees exactly the environment it was given and nothing of an earlier run (two
indexes, one after the other and side by side, give each its own answer); pip's failures come back with
its exit status and its own message; the fork server and `python -m pip` give the same report; and a
run that dies is an error, not a hang.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pip
import pytest

from layerforge.resolve import pip_runner
from layerforge.resolve.lock import pip_arguments, resolve
from layerforge.target import Target
from tests.support.index import LocalIndex, offline_pip_env

TARGET = Target("python3.11", "x86_64")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not pip_runner.forkserver_enabled(), reason="the fork server is Linux-only")


def dry_run(index: LocalIndex, requirement: str, folder: Path) -> tuple[pip_runner.PipRun, dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.json"
    arguments = pip_arguments([requirement], TARGET, report, folder / "target")
    env = offline_pip_env()
    env["PIP_INDEX_URL"] = index.url
    run = pip_runner.run_pip(arguments, env)
    taken = json.loads(report.read_text())["install"] if run.returncode == 0 else []
    return run, {item["metadata"]["name"]: item["metadata"]["version"] for item in taken}


@pytest.fixture
def two_indexes(tmp_path: Path) -> tuple[LocalIndex, LocalIndex]:
    first = LocalIndex(tmp_path / "first").start()
    second = LocalIndex(tmp_path / "second").start()
    first.add_wheel("demo", "1.0")
    second.add_wheel("demo", "2.0")
    second.add_wheel("extra", "1.0")
    yield first, second
    first.stop()
    second.stop()


def test_each_run_reads_the_index_its_own_environment_names(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path
) -> None:
    first, second = two_indexes
    run, taken = dry_run(first, "demo", tmp_path / "a")
    assert run.returncode == 0, run.stderr
    assert taken == {"demo": "1.0"}
    run, taken = dry_run(second, "demo", tmp_path / "b")
    assert taken == {"demo": "2.0"}
    # Back to the first: nothing of the second run's environment or options stayed in the server.
    run, taken = dry_run(first, "demo", tmp_path / "c")
    assert taken == {"demo": "1.0"}
    assert first.hits("/simple/demo/") >= 2 and second.hits("/simple/demo/") >= 1


def test_runs_side_by_side_each_get_their_own_answer(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path
) -> None:
    first, second = two_indexes
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(lambda n: dry_run(first if n % 2 else second, "demo", tmp_path / f"run{n}")[1], range(6))
        )
    assert answers == [{"demo": "2.0" if n % 2 == 0 else "1.0"} for n in range(6)]


def test_a_failed_resolution_comes_back_with_pips_status_and_message(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path
) -> None:
    run, taken = dry_run(two_indexes[0], "extra", tmp_path / "a")
    assert run.returncode == 1 and taken == {}
    assert "No matching distribution found for extra" in run.stderr


def test_the_fork_server_and_python_m_pip_write_the_same_report(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, forked = dry_run(two_indexes[1], "demo", tmp_path / "forked")
    monkeypatch.setenv("LAYERFORGE_PIP_FORKSERVER", "0")
    assert not pip_runner.forkserver_enabled()
    alone, spawned = dry_run(two_indexes[1], "demo", tmp_path / "spawned")
    assert served.returncode == alone.returncode == 0
    assert forked == spawned == {"demo": "2.0"}

    def report(folder: str) -> dict[str, object]:
        data = json.loads((tmp_path / folder / "report.json").read_text())
        # Where pip ran from differs by design (the environment block names the interpreter, not the run).
        return {"install": data["install"], "version": data["version"]}

    assert report("forked") == report("spawned")


def test_a_run_that_dies_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """pip is killed while it waits on an index that never answers: run_pip returns, with the signal."""
    with LocalIndex(tmp_path / "slow") as index:
        index.add_wheel("demo", "1.0")
        index.latency(120.0)
        before = _forked_children()
        outcome: dict[str, pip_runner.PipRun] = {}
        runner = threading.Thread(
            target=lambda: outcome.setdefault("run", dry_run(index, "demo", tmp_path / "a")[0]), daemon=True
        )
        runner.start()
        deadline = time.monotonic() + 60
        while not (_forked_children() - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        children = _forked_children() - before
        assert children, "no pip process was forked"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        runner.join(timeout=60)
        assert not runner.is_alive(), "run_pip hung on a dead pip"
    run = outcome["run"]
    assert run.returncode == 1 and "killed by signal 9" in run.stderr


def _forked_children() -> set[int]:
    """The pip processes the fork server runs: the server's own children."""
    servers = _children(os.getpid())
    return {child for server in servers for child in _children(server)}


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found |= {int(x) for x in text.split()}
    return found


def _servers() -> set[int]:
    """This process's live fork servers (a killed one not yet reaped has no command line)."""
    return {
        pid for pid in _children(os.getpid()) if b"fork server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def _gone(pids: set[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pids & _servers():
            return True
        time.sleep(0.05)
    return False


def test_a_server_that_ran_nothing_is_killed_when_let_go_and_the_next_run_starts_another(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path
) -> None:
    """A build that reuses its lock lets go of the server the CLI started for it: killed at once, not
    left importing pip until the process exits; a resolution after that starts its own."""
    pip_runner.let_go()
    pip_runner.warm_up()
    server = pip_runner._Server._instance
    assert server is not None and not server.used
    pip_runner.let_go(if_unused=True)
    assert server._process.wait(timeout=30) == -signal.SIGKILL  # killed, not left to finish its imports
    assert pip_runner._Server._instance is None
    run, taken = dry_run(two_indexes[0], "demo", tmp_path / "a")
    assert run.returncode == 0 and taken == {"demo": "1.0"}


def test_a_server_that_ran_pip_is_kept_by_if_unused_and_ends_by_itself_when_let_go(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path
) -> None:
    pip_runner.let_go()
    before = _servers()
    assert dry_run(two_indexes[0], "demo", tmp_path / "a")[0].returncode == 0
    server = pip_runner._Server._instance
    assert server is not None and server.used
    pip_runner.let_go(if_unused=True)  # another caller of this process may be using it
    assert pip_runner._Server._instance is server
    pip_runner.let_go()
    assert server._process.wait(timeout=30) == 0  # it read the end of its input and exited
    assert _gone(_servers() - before)


def test_a_run_under_way_finishes_when_the_server_is_let_go(tmp_path: Path) -> None:
    with LocalIndex(tmp_path / "slow") as index:
        index.add_wheel("demo", "1.0")
        index.latency(0.5)
        pip_runner.let_go()
        pip_runner.warm_up()
        before = _forked_children()
        outcome: dict[str, tuple[pip_runner.PipRun, dict[str, str]]] = {}
        runner = threading.Thread(
            target=lambda: outcome.setdefault("run", dry_run(index, "demo", tmp_path / "a"))
        )
        runner.start()
        deadline = time.monotonic() + 60
        while not (_forked_children() - before) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _forked_children() - before, "no pip process was forked"
        pip_runner.let_go()
        runner.join(timeout=120)
    run, taken = outcome["run"]
    assert run.returncode == 0, run.stderr
    assert taken == {"demo": "1.0"}


def test_pip_is_given_a_user_agent_and_runs_nothing_to_work_one_out(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip runs `rustc --version` and `lsb_release -a` for its User-Agent, 0.19 s before the server could
    answer its first request. pip only sends it to layerforge's own local index: the server sets it, and
    nothing is run to work it out, in the server or in any resolution."""
    tools = tmp_path / "tools"
    tools.mkdir()
    calls = tmp_path / "calls"
    for tool in ("rustc", "lsb_release"):
        (tools / tool).write_text(f'#!/bin/sh\necho {tool} >> "{calls}"\necho "{tool} 1.0.0"\n')
        (tools / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    try:
        resolve_three_times_with_a_new_server(two_indexes[0], tmp_path)
        assert not calls.exists(), calls.read_text()
        agents = {record.user_agent for record in two_indexes[0].requests}
        assert len(agents) == 1 and str(agents.pop()).endswith("(layerforge's local index)"), agents
    finally:
        pip_runner.let_go()


def test_a_resolution_through_the_local_index_loads_no_ca_bundle_in_the_server_or_in_pip(
    two_indexes: tuple[LocalIndex, LocalIndex], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip reads only layerforge's local index, over plain http on 127.0.0.1, yet each pip session loads
    certifi's CA bundle into a TLS context (55 ms of CPU) unless told not to build one. A load anywhere in
    the server or in a child it forks is logged with its pid by a module the server's preload adds
    (tests/support/tls_log.py), which also logs its own import there: that line shows the log was in
    place in the very server that ran the three resolutions."""
    log = tmp_path / "loads"
    monkeypatch.setenv("LAYERFORGE_TEST_TLS_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(pip_runner, "PRELOAD", (*pip_runner.PRELOAD, "tests.support.tls_log"))
    pip_runner.let_go()
    try:
        for n in range(3):
            lock = resolve("demo", ["demo"], TARGET, index_url=two_indexes[0].url, scratch_in=tmp_path)
            assert [(p.name, p.version) for p in lock.packages] == [("demo", "1.0")], n
        server = pip_runner._Server._instance
        assert server is not None and server.used
        assert log.read_text().splitlines() == [f"imported {server._process.pid}"]
    finally:
        pip_runner.let_go()


def resolve_three_times_with_a_new_server(index: LocalIndex, tmp_path: Path) -> None:
    """Three resolutions, from a server started for them (with the test's environment, under its watch)."""
    pip_runner.let_go()
    for n in range(3):
        run, taken = dry_run(index, "demo", tmp_path / f"run{n}")
        assert run.returncode == 0, run.stderr
        assert taken == {"demo": "1.0"}


def test_pip_is_told_to_build_no_tls_context_only_when_its_option_table_knows_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown --use-deprecated choice would fail every resolution: a pip that has dropped
    `legacy-certs` from its option table gets no such setting (and builds its TLS context, as before)."""
    pip_runner.no_tls_context.cache_clear()
    assert dict(pip_runner.no_tls_context()) == {"PIP_USE_DEPRECATED": "legacy-certs"}  # this pip
    assert pip_runner._pip_option_table() == Path(pip.__file__).parent / "_internal" / "cli" / "cmdoptions.py"
    later = tmp_path / "cmdoptions.py"
    later.write_text('choices=["legacy-resolver"]\n')
    monkeypatch.setattr(pip_runner, "_pip_option_table", lambda: later)
    pip_runner.no_tls_context.cache_clear()
    try:
        assert dict(pip_runner.no_tls_context()) == {}
    finally:
        pip_runner.no_tls_context.cache_clear()
