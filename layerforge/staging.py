"""Staging folders for builds, and the clean-up of those whose build was killed outright.

A build unpacks, slims and zips in a staging folder inside the output folder: the same file system as
the finished zip (so it lands with one rename) and not /tmp, which may be a small tmpfs. A `finally`
removes the folder when the build ends, but nothing runs after SIGKILL, the OOM killer or a power cut.
So each staging folder is named after the host and process that own it,

    <out>/.<stem>.staging-<host>-<pid>-<random>

and the next build in the same output folder removes the folders of processes of this host that no
longer run, with the half-written zips and manifests (`.<stem>.zip.<random>.part`) such a build left.

What is never touched: a folder of a live process, a folder of another host (an output folder on a
shared or mounted file system), a folder this module did not name (no process to check), and any
half-written file of a stem that still has a live or unattributable staging folder. A recycled process
id can only keep a dead build's folder a while longer, never remove a live one. On Windows, where no
harmless liveness probe exists in the standard library, nothing is removed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

STAGING_MARK = ".staging-"
# mkdtemp's random part: 8 characters of [a-z0-9_].
_OWNED = re.compile(r"^\.(?P<stem>.+)\.staging-(?P<host>[A-Za-z0-9.-]+)-(?P<pid>\d+)-[a-z0-9_]{8}$")
_ANY = re.compile(r"^\.(?P<stem>.+)\.staging-")
# Written only while their build's staging folder exists (archive.write_zip, the manifest's atomic write).
_BUILD_PARTIALS = (".zip.", ".manifest.json.")


def host_label() -> str:
    """This host's name as it appears in staging folder names (letters, digits, '.', '-')."""
    label = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()).strip(".-")
    return label[:64] or "host"


def make_staging_dir(out_dir: Path, stem: str) -> Path:
    """A new, empty staging folder for a build of `stem` in `out_dir`, after sweeping dead builds' leftovers.

    The caller removes it when the build ends (`shutil.rmtree` in a `finally`), as before. Absolute: the
    build hands paths inside it to processes that run in other folders (pip's fork server), and makes
    file URLs of them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale(out_dir)
    prefix = f".{stem}{STAGING_MARK}{host_label()}-{os.getpid()}-"
    return Path(tempfile.mkdtemp(dir=out_dir.absolute(), prefix=prefix))


def sweep_stale(out_dir: Path) -> list[Path]:
    """Remove what builds killed outright left in `out_dir`: their staging folders and partial outputs.

    Returns the paths removed. Safe to run while other builds use the folder (see the module's notes).
    """
    try:
        entries = list(out_dir.iterdir())
    except OSError:
        return []
    removed: list[Path] = []
    busy: set[str] = set()  # stems with a staging folder of a live process, or of unknown owner
    host = host_label()
    for entry in entries:
        match = _ANY.match(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        owned = _OWNED.match(entry.name)
        if owned is None or owned["host"] != host or process_alive(int(owned["pid"])):
            busy.add(match["stem"])
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".part")) or not entry.is_file():
            continue
        stem = next((name[1 : name.index(kind)] for kind in _BUILD_PARTIALS if kind in name), None)
        if stem is None or stem in busy:
            continue
        entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as running)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
