"""BuildEvents that keep what a build warned about and noted, for tests that check them."""

from __future__ import annotations

from layerforge.events import SilentEvents


class Recorded(SilentEvents):
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)
