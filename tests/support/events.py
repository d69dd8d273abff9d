"""BuildEvents that keep what a build warned about, for tests that check the warnings."""

from __future__ import annotations

from layerforge.events import SilentEvents


class Recorded(SilentEvents):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)
