"""Lambda's size quotas, and how a build or a report measures itself against them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

# A function and all its layers, unzipped.
LAMBDA_UNZIPPED_BYTES = 262_144_000
# A zip uploaded in the request rather than through S3.
DIRECT_UPLOAD_ZIP_BYTES = 50 * 1024 * 1024
# The request body that carries a direct upload, base64 and all.
DIRECT_UPLOAD_REQUEST_BYTES = 70_167_211
# Layers on one function.
MAX_LAYERS = 5


@dataclass(frozen=True)
class LimitCheck:
    """One limit against one measured value."""

    name: str
    description: str
    limit: int
    actual: int
    hard: bool

    @property
    def headroom(self) -> int:
        return self.limit - self.actual

    @property
    def exceeded(self) -> bool:
        return self.actual > self.limit

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "value": self.limit,
            "actual": self.actual,
            "headroom": self.headroom,
            "exceeded": self.exceeded,
            "hard": self.hard,
        }


def unzipped_check(actual: int) -> LimitCheck:
    return LimitCheck(
        "lambda_unzipped",
        "function and all its layers, unzipped (Lambda's hard limit)",
        LAMBDA_UNZIPPED_BYTES,
        actual,
        hard=True,
    )


def budget_check(actual: int, budget: int) -> LimitCheck:
    return LimitCheck("budget_unzipped", "the recipe's own unzipped budget", budget, actual, hard=True)


def direct_upload_check(zipped: int) -> LimitCheck:
    # Exceeding it is not fatal for a layer: it must then be published through S3.
    return LimitCheck(
        "direct_upload_zip",
        "zip uploaded directly in the API request (above it, publish through S3)",
        DIRECT_UPLOAD_ZIP_BYTES,
        zipped,
        hard=False,
    )


def layer_count_check(count: int) -> LimitCheck:
    return LimitCheck("layer_count", "layers on one function", MAX_LAYERS, count, hard=True)


# Lambda's memory setting, in MB as the console and the API count them (1 MB = 2**20 bytes), in 1 MB steps.
LAMBDA_MEMORY_MB = (128, 10_240)
LAMBDA_DEFAULT_MEMORY_MB = LAMBDA_MEMORY_MB[0]
MB = 2**20
# The headroom rule, in one place. The measured peak is a bare interpreter importing the layer (and
# running the smoke code); on Lambda the runtime interface client, the handler's own modules and the data
# of each request come on top, and native pools (OpenBLAS buffers, one per thread) grow with the cores
# Lambda gives larger settings. Half again the measured peak covers that with room left over, and
# 64 MB steps keep the advice a round figure that overshoots by less than one step.
MEMORY_HEADROOM_FACTOR = Fraction(3, 2)
MEMORY_STEP_MB = 64


def recommended_memory_mb(peak_rss_bytes: int) -> int:
    """The smallest Lambda memory setting that leaves headroom over a measured peak resident memory."""
    steps = math.ceil(peak_rss_bytes * MEMORY_HEADROOM_FACTOR / (MEMORY_STEP_MB * MB))
    stepped = steps * MEMORY_STEP_MB
    return max(LAMBDA_MEMORY_MB[0], min(stepped, LAMBDA_MEMORY_MB[1]))


def over_default_memory(peak_rss_bytes: int) -> bool:
    """A function left at Lambda's default memory is killed while it imports this."""
    return peak_rss_bytes > LAMBDA_DEFAULT_MEMORY_MB * MB


def memory_advice(peak_rss_bytes: int) -> str:
    """The one sentence every command says about a measured peak."""
    return (
        f"the layer's import peaks at {peak_rss_bytes / MB:,.0f} MB resident; the smallest Lambda memory "
        f"setting that leaves headroom is {recommended_memory_mb(peak_rss_bytes)} MB "
        f"(Lambda's default: {LAMBDA_DEFAULT_MEMORY_MB} MB)"
    )
