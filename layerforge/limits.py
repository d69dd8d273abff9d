"""Lambda's size quotas, and how a build or a report measures itself against them."""

from __future__ import annotations

from dataclasses import dataclass

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
