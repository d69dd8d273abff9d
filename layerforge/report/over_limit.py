"""What would bring a layer that is over a size limit back under it, each way with its bytes.

Three ways, in the order they cost least: leave out what the target runtime already provides (their
versions then come from the runtime, on AWS's schedule), the aggressive strip profile (an estimate from a
dry run over the same tree), and the biggest distributions (to split into a second layer or drop).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SizeLimitError
from ..limits import LimitCheck
from ..recipe import Recipe
from ..target import Target
from ..tree.estimate import AggressiveEstimate, estimate_aggressive
from ..tree.unpack import LayerTree

BIGGEST = 3


@dataclass(frozen=True)
class WaysOut:
    """The gap (bytes over the limit) and what would close it."""

    check: LimitCheck
    target: Target
    runtime_provided: tuple[tuple[str, int], ...]  # (distribution, bytes in the layer), biggest first
    aggressive: AggressiveEstimate
    biggest: tuple[tuple[str, int], ...]

    @property
    def gap(self) -> int:
        return -self.check.headroom

    @property
    def runtime_provided_bytes(self) -> int:
        return sum(size for _, size in self.runtime_provided)

    def as_dict(self) -> dict[str, object]:
        return {
            "limit": self.check.as_dict(),
            "gap": self.gap,
            "runtime_provided": {
                "bytes": self.runtime_provided_bytes,
                "distributions": dict(self.runtime_provided),
            },
            "aggressive": self.aggressive.as_dict(),
            "biggest": dict(self.biggest),
        }

    def message(self) -> str:
        check = self.check
        lines = [
            f"the layer is {check.actual:,} bytes unzipped, over {check.description}: {check.limit:,} bytes "
            f"(by {self.gap:,}). What would close the gap:"
        ]
        lines += [f"  - {line}" for line in self._ways()]
        return "\n".join(lines)

    def _ways(self) -> list[str]:
        ways = []
        if self.runtime_provided:
            listed = ", ".join(f"{name} {size:,}" for name, size in self.runtime_provided)
            ways.append(
                f"leave out what the {self.target.runtime} runtime provides, {self.runtime_provided_bytes:,} "
                f"bytes ({listed}){self._closes(self.runtime_provided_bytes)}: their versions then come from "
                "the runtime, on AWS's schedule (`--exclude-runtime-provided`, or "
                "`exclude_runtime_provided = true` in the recipe)"
            )
        estimate = self.aggressive
        if not estimate.already_aggressive:
            parts = [f"{estimate.file_bytes:,} in {estimate.files:,} files"]
            if estimate.symbol_table_bytes:
                parts.append(f"{estimate.symbol_table_bytes:,} of symbol tables in shared objects")
            ways.append(
                f"the aggressive strip profile, about {estimate.total_bytes:,} bytes "
                f"({' and '.join(parts)}; an estimate from a dry run of its rules over this layer, "
                f"before its smaller bytecode){self._closes(estimate.total_bytes)} "
                '(`strip.profile = "aggressive"` in the recipe)'
            )
        if self.biggest:
            listed = ", ".join(f"{name} {size:,}" for name, size in self.biggest)
            ways.append(
                f"the biggest distributions: {listed} (leave one out, or split it into a second layer)"
            )
        return ways

    def _closes(self, saving: int) -> str:
        return ", enough on its own" if saving >= self.gap else f", {self.gap - saving:,} short on its own"


def ways_out(check: LimitCheck, tree: LayerTree, recipe: Recipe, target: Target) -> WaysOut:
    sizes = tree.bytes_by_distribution()
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    provided = tuple(item for item in ranked if item[0] in target.runtime_provided)
    return WaysOut(
        check,
        target,
        provided,
        estimate_aggressive(tree, recipe.strip),
        tuple(ranked[:BIGGEST]),
    )


def size_limit_error(check: LimitCheck, tree: LayerTree, recipe: Recipe, target: Target) -> SizeLimitError:
    return SizeLimitError(
        ways_out(check, tree, recipe, target).message(),
        hint="the ways above, alone or together; or move to a container image (up to 10 GB)",
    )
