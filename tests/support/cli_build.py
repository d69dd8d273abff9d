"""A real `layerforge build` in a subprocess, for tests that stop or kill it part way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.index import LocalIndex


def build_command(recipe: Path, lock: Path, index: LocalIndex, cache: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "layerforge",
        "build",
        str(recipe),
        "--lock",
        str(lock),
        "--index-url",
        index.url,
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--no-verify",
        "--quiet",
        "--json",
    ]


def run_build(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    payload: dict[str, Any] = json.loads(done.stdout)
    return payload


def group_members(group: int) -> list[int]:
    """The processes of a process group (the build and the children it started: its zip, its pip)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group and fields[0] not in "ZX":
                members.append(int(entry.name))
    return members


def stop_group(group: int) -> None:
    """SIGSTOP to the whole group, and wait until every thread of every member is stopped."""
    os.killpg(group, signal.SIGSTOP)
    for pid in group_members(group):
        try:
            wait_stopped(pid)
        except FileNotFoundError:  # it had ended
            continue


def wait_stopped(pid: int) -> None:
    """SIGSTOP is delivered asynchronously: wait until every thread of the process is stopped."""
    while True:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                continue
        if states and all(state in "TtZX" for state in states):  # an ended one stops nothing
            return
        time.sleep(0.0002)
