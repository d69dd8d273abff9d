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

from pathlib import Path

from .member_cache import KeyedEntries

KIND = "audits"
_MAGIC = b"LFAUDIT1\n"


class AuditCache(KeyedEntries):
    """`get(key)` and `put(key, facts)`: a reading as a JSON object."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, KIND, _MAGIC)

    get = KeyedEntries.read_json
    put = KeyedEntries.write_json
