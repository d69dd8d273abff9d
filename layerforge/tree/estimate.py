"""What the aggressive strip profile would save on a finished layer tree, counted without a second build.

A dry run over the same tree: the aggressive rules that the build's own profile does not have are matched
against the files that are there (guarded folders that staying code imports are spared, as in a build),
and the symbol tables (.symtab and its string table) that the aggressive binaries level cuts out of shared
objects are counted from their section headers. What it cannot count without building is left out and
said: the column tables an aggressive build leaves out of bytecode. So it is an estimate, and says so.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from ..binaries.elfheaders import SHT_STRTAB, SHT_SYMTAB, ElfHeaders, NotReadable, mapped_file
from ..recipe import StripConfig
from .slim import PROFILES, plan
from .unpack import LayerTree

AGGRESSIVE = "aggressive"
# The build compiles its own bytecode after slimming, whatever the profile: removing it is no saving.
_NOT_A_SAVING = frozenset({"safe:host-bytecode"})


@dataclass(frozen=True)
class AggressiveEstimate:
    """Bytes the aggressive profile would remove from this tree; all zero when the build already used it."""

    already_aggressive: bool
    by_rule: Mapping[str, int]
    files: int
    symbol_table_bytes: int  # .symtab and .strtab of the shared objects, when binaries are stripped

    @property
    def file_bytes(self) -> int:
        return sum(self.by_rule.values())

    @property
    def total_bytes(self) -> int:
        return self.file_bytes + self.symbol_table_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "estimate": True,
            "already_aggressive": self.already_aggressive,
            "bytes": self.total_bytes,
            "files": self.files,
            "file_bytes_by_rule": dict(self.by_rule),
            "symbol_table_bytes": self.symbol_table_bytes,
        }


def estimate_aggressive(tree: LayerTree, config: StripConfig) -> AggressiveEstimate:
    """Dry-run the aggressive profile over `tree`, a finished layer that `config` produced. Reads files,
    changes nothing: a finished tree has nothing held back for `plan` to write."""
    if config.profile == AGGRESSIVE:
        return AggressiveEstimate(True, {}, 0, 0)
    have = {rule.name for rule in PROFILES[config.profile]}
    extra = {rule.name for rule in PROFILES[AGGRESSIVE]} - have - _NOT_A_SAVING
    dry_run = plan(tree, dataclasses.replace(config, profile=AGGRESSIVE))
    by_rule: dict[str, int] = defaultdict(int)
    files = 0
    for removal in dry_run.removed:
        if removal.rule in extra:
            by_rule[removal.rule] += removal.size
            files += 1
    symbols = symbol_table_bytes(tree) if config.binaries else 0
    return AggressiveEstimate(False, dict(sorted(by_rule.items())), files, symbols)


def symbol_table_bytes(tree: LayerTree) -> int:
    """The bytes of .symtab and the string table it names, over every ELF shared object in the tree."""
    total = 0
    for path in tree.files:
        name = path.rsplit("/", 1)[-1]
        if not (name.endswith(".so") or ".so." in name):
            continue
        try:
            with mapped_file(tree.root / path) as data:
                elf = ElfHeaders.parse(data)
        except (OSError, NotReadable):
            continue
        for section in elf.sections:
            if section.type != SHT_SYMTAB or not section.occupies_file:
                continue
            total += section.size
            if 0 < section.link < len(elf.sections):
                names = elf.sections[section.link]
                if names.type == SHT_STRTAB and names.index != elf.shstrndx:
                    total += names.size
    return total
