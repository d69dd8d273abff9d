"""The verification cache's store: what verify/proofs.py files for each check that passed.

`<root>/proofs/<context>/<entry>`: one folder per check context (the interpreter, the program, the smoke
code: everything but the files and the modules), one file per passed run. An entry is written to a
temporary name in its folder and renamed into place, and trusted only whole: a magic line, the sha256 of
the rest, then JSON. A build killed mid-write leaves a `.part` file that no lookup reads and `cache prune`
sweeps once its owner is dead; an entry that fails its digest or does not parse is removed when found.

Reading needs no lock: a prune that unlinks an entry while a build reads it leaves the build its open
file, or a miss that runs the check.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cache import touch
from .member_cache import TEMP_PREFIX, read_json_entry, write_entry
from .staging import host_label

KIND = "proofs"
_MAGIC = b"LFPROOF1\n"


class ProofFiles:
    def __init__(self, root: Path) -> None:
        self.folder = root / KIND

    def read_all(self, context: str) -> list[tuple[Path, dict[str, Any]]]:
        """Every whole entry filed under `context`, parsed; a damaged one is removed."""
        folder = self.folder / context
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return []
        found = []
        for name in names:
            if name.startswith("."):
                continue
            data = self._read(folder / name)
            if data is not None:
                found.append((folder / name, data))
        return found

    def discard(self, path: Path) -> None:
        """An entry whose content its reader refused: the next build files a good one."""
        path.unlink(missing_ok=True)

    def used(self, path: Path) -> None:
        touch(path)  # `cache prune` removes the least recently used first

    def put(self, context: str, data: Mapping[str, Any]) -> None:
        """File `data` under `context`, atomically. A cache that cannot be written only costs time."""
        body = json.dumps(data, sort_keys=True).encode()
        digest = hashlib.sha256(body)
        path = self.folder / context / digest.hexdigest()
        write_entry(path, _MAGIC, digest.digest(), body, f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-")

    def _read(self, path: Path) -> dict[str, Any] | None:
        return read_json_entry(path, _MAGIC, lambda raw: hashlib.sha256(raw).digest())
