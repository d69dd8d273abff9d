"""The audit cache: what the binary audit read of one ELF object, filed under the object's content.

`<root>/audits/<aa>/<key>`, where the key is the sha256 of the object's sha256 and of everything else that
decides the reading (binaries/audit.py composes it). The audit reads every shared object of a layer with
pyelftools, about 1.5 CPU-seconds on the sklearn stack, in a build whose checks need both cores; a
rebuild after one requirement or one strip rule changed has all but a few of those objects unchanged.

An entry is trusted only whole, as a member entry: a magic line, the sha256 of its key and body, then
JSON. A build killed mid-write leaves a `.part` file that no lookup reads and `cache prune` sweeps once its
owner is dead; an entry that fails its digest is removed when found. Reading needs no lock: a prune that
unlinks an entry while a build reads it leaves the build its open file, or a miss that reads the object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cache import touch
from .member_cache import TEMP_PREFIX, keyed_digest, read_json_entry, write_entry
from .staging import host_label

KIND = "audits"
_MAGIC = b"LFAUDIT1\n"


class AuditCache:
    def __init__(self, root: Path) -> None:
        self.folder = root / KIND
        self._temporary_prefix = f"{TEMP_PREFIX}{host_label()}-{os.getpid()}-"

    def path_for(self, key: str) -> Path:
        return self.folder / key[:2] / key

    def get(self, key: str) -> dict[str, Any] | None:
        """The facts filed under `key`, when the entry is whole and parses; a damaged one is removed."""
        path = self.path_for(key)
        facts = read_json_entry(path, _MAGIC, lambda raw: keyed_digest(key, raw))
        if facts is not None:
            touch(path)
        return facts

    def put(self, key: str, facts: Mapping[str, Any]) -> None:
        """File `facts` under `key`, atomically. A cache that cannot be written only costs time."""
        body = json.dumps(facts, sort_keys=True).encode()
        write_entry(self.path_for(key), _MAGIC, keyed_digest(key, body), body, self._temporary_prefix)
