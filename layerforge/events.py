"""How the library reports progress without knowing about terminals: the CLI supplies a listener."""

from __future__ import annotations

from typing import Protocol


class BuildEvents(Protocol):
    def stage(self, name: str, total: int | None = None) -> None:
        """A new stage starts; `total` is its amount of work (bytes or files) when known."""

    def advance(self, amount: int) -> None:
        """Some of the current stage's work is done."""

    def note(self, message: str) -> None:
        """Something the user should read: a choice made and why."""

    def warn(self, message: str) -> None:
        """Something that may hurt later, though the build goes on."""


class SilentEvents:
    def stage(self, name: str, total: int | None = None) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def warn(self, message: str) -> None:
        return None
